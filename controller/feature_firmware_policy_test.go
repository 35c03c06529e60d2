package controller_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/fwrun"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/policy"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
)

// TestPolicyRequiresFirmwareCompliance: the policy's firmware-compliance
// rule holds a node behind the firmware baseline before imaging, though the
// firmware feature itself holds nothing (--firmware-hold none); the hold
// names the rule and the components behind, and the node moves on once a
// firmware run brings it to the baseline.
func TestPolicyRequiresFirmwareCompliance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data, fwDir, pub, sim := firmwareFixture(t)
	p := loadPolicy(t, "api_version: rackstrap.io/policy/v1\nrequire:\n  firmware_compliance: true\n  firmware_compliance_before: [imaging]\n")
	cfg := controller.Config{DataDir: data, APIListen: "127.0.0.1:0",
		Simulate: &controller.SimConfig{Nodes: 0, Edge: simedge.Config{BootTime: 50 * time.Millisecond, ImageTime: 50 * time.Millisecond, BurnInTime: 50 * time.Millisecond}},
		Engine:   lifecycle.Config{Poll: 100 * time.Millisecond, BackoffBase: 100 * time.Millisecond},
		Features: []controller.Feature{
			controller.NewPolicyFeature(p), // before the firmware feature: the order does not matter
			controller.NewFirmwareFeature(fwrun.Config{Dir: fwDir, Baseline: "fleet", Hold: fwrun.HoldNone,
				TrustedKeys: []ed25519.PublicKey{pub}, Poll: 50 * time.Millisecond,
				Client: firmware.Config{PollInterval: 20 * time.Millisecond, TaskTimeout: 30 * time.Second, VerifyTimeout: 30 * time.Second}}),
			openAPICheck{}}}
	ctl := startPolicyController(t, cfg)

	var h *lifecycle.Hold
	// The first look may find the BMC slow to answer (the gate then holds
	// the node as undecided): wait for the decided hold.
	fwWaitUntil(t, "the policy to hold the node before imaging", func() bool {
		h = policyHoldOf(t, ctl, "fw-n01")
		return h != nil && strings.Contains(h.Reason, "is behind baseline")
	})
	if h.Gate != "policy" || h.Rule != policy.RuleFirmwareCompliance || h.Next != model.Imaging ||
		!strings.Contains(h.Reason, "policy rule firmware-compliance: ") || !strings.Contains(h.Reason, "BIOS 2.1.7 is behind baseline 2.2.0") {
		t.Fatalf("hold = %+v, want the policy's firmware-compliance rule before imaging, naming what is behind", h)
	}
	if n, _ := ctl.Store.GetNode(ctx, "fw-n01"); n.State != model.Validated {
		t.Fatalf("held node is %s, want Validated", n.State)
	}
	c := fwrun.NewClient("http://"+ctl.API, http.DefaultClient, "")
	if _, err := c.Start(ctx, fwrun.RunRequest{}); err != nil {
		t.Fatal(err)
	}
	fwWaitUntil(t, "the node Ready once its firmware complies", func() bool {
		n, _ := ctl.Store.GetNode(ctx, "fw-n01")
		return n.State == model.Ready
	})
	if ups := sim.Updates(); len(ups) != 2 {
		t.Errorf("the BMC accepted %+v, want BMC and BIOS once each", ups)
	}
	entries, _ := ctl.Store.ListAudit(ctx, store.AuditFilter{Node: "fw-n01", Limit: 10000})
	rules := map[string]bool{}
	for _, e := range entries {
		if e.Action == "node.held" {
			for _, r := range []string{policy.RuleFirmwareCompliance, fwrun.RuleFirmwareRun} {
				if strings.Contains(string(e.Detail), `"rule":"`+r+`"`) {
					rules[r] = true
				}
			}
		}
	}
	if !rules[policy.RuleFirmwareCompliance] {
		t.Errorf("no node.held naming the firmware-compliance rule in the audit log")
	}
}

// TestPolicyFirmwareRuleNeedsABaseline: a policy requiring firmware
// compliance with the firmware feature on but no baseline refuses to start,
// naming the rule and the flag to add.
func TestPolicyFirmwareRuleNeedsABaseline(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, "api_version: rackstrap.io/policy/v1\nrequire: {firmware_compliance: true}\n")
	cfg := controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 0},
		Features: []controller.Feature{controller.NewFirmwareFeature(fwrun.Config{Dir: t.TempDir(), AllowUnsigned: true}), controller.NewPolicyFeature(p)}}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	err := controller.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(*controller.Controller) { t.Error("the controller started") })
	if err == nil || !strings.Contains(err.Error(), "policy rule firmware-compliance") || !strings.Contains(err.Error(), "--firmware-baseline") {
		t.Errorf("Run() = %v, want a firmware-compliance refusal naming --firmware-baseline", err)
	}
}
