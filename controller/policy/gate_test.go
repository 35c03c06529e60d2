package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
)

// behindFirmware says every node but "current" is behind its baseline.
type behindFirmware struct{ err error }

func (b behindFirmware) Behind(_ context.Context, n model.Node) (string, error) {
	if b.err != nil {
		return "", b.err
	}
	if n.Name == "current" {
		return "", nil
	}
	return "BIOS 1.0 is behind baseline 2.0: run 'rackstrap firmware apply --baseline fleet'", nil
}

// TestFirmwareComplianceRule: the policy's firmware-compliance rule holds a
// node behind its baseline before the moves it names, naming the rule; a
// firmware check that cannot decide holds the node too.
func TestFirmwareComplianceRule(t *testing.T) {
	t.Parallel()
	now := func() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }
	load := func(require string) *Policy {
		file, _ := writePolicy(t, "api_version: rackstrap.io/policy/v1\nrequire: "+require+"\n")
		p, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	both := load("{firmware_compliance: true}")
	handoff := load("{firmware_compliance: true, firmware_compliance_before: [handoff]}")
	off := load("{firmware_compliance: false}")
	if got := strings.Join(both.Rules(), ","); got != "validation,firmware-compliance" {
		t.Errorf("Rules() = %s", got)
	}
	ctx := context.Background()
	for name, tc := range map[string]struct {
		p    *Policy
		fw   Firmware
		node string
		next model.State
		rule string
	}{
		"behind before imaging":           {both, behindFirmware{}, "old", model.Imaging, RuleFirmwareCompliance},
		"behind before hand-off":          {both, behindFirmware{}, "old", model.HandedOff, RuleFirmwareCompliance},
		"compliant":                       {both, behindFirmware{}, "current", model.Imaging, ""},
		"hand-off only: imaging passes":   {handoff, behindFirmware{}, "old", model.Imaging, ""},
		"hand-off only: hand-off is held": {handoff, behindFirmware{}, "old", model.HandedOff, RuleFirmwareCompliance},
		"rule off":                        {off, behindFirmware{}, "old", model.Imaging, ""},
		"no baseline":                     {both, nil, "old", model.Imaging, RuleFirmwareCompliance},
	} {
		g := &gate{p: tc.p, env: Env{Firmware: tc.fw, Now: now}}
		rule, reason, err := g.HoldRule(ctx, model.Node{Name: tc.node}, tc.next)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if rule != tc.rule || (tc.rule == "") != (reason == "") {
			t.Errorf("%s: HoldRule = %q, %q; want rule %q", name, rule, reason, tc.rule)
		}
		if tc.rule != "" && !strings.HasPrefix(reason, "policy rule "+tc.rule+": ") {
			t.Errorf("%s: reason %q does not name the rule", name, reason)
		}
		if tc.fw != nil && tc.rule != "" && !strings.Contains(reason, "rackstrap firmware apply") {
			t.Errorf("%s: reason %q does not say what to do", name, reason)
		}
	}
	g := &gate{p: both, env: Env{Firmware: behindFirmware{err: errors.New("BMC 10.0.0.9 did not answer")}, Now: now}}
	if rule, _, err := g.HoldRule(ctx, model.Node{Name: "old"}, model.Imaging); err == nil || rule != RuleFirmwareCompliance {
		t.Errorf("undecidable firmware check = %q, %v; want an error under the firmware-compliance rule (the engine holds the node)", rule, err)
	}
}
