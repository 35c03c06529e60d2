package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
)

// powerEdge records power actions; everything else is not used here.
type powerEdge struct {
	lifecycle.Edge
	boots, offs int
}

func (e *powerEdge) Boot(context.Context, model.Node, string) error     { e.boots++; return nil }
func (e *powerEdge) PowerOff(context.Context, model.Node, string) error { e.offs++; return nil }

func TestWrapEdgeRefusesPowerInWindow(t *testing.T) {
	t.Parallel()
	file, _ := writePolicy(t, "api_version: rackstrap.io/policy/v1\npower:\n  timezone: UTC\n  no_power_windows:\n    - {name: maintenance, days: [tue], from: \"10:00\", to: \"12:00\"}\n")
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 11, 0, 0, 0, time.UTC) // a Tuesday
	inner := &powerEdge{}
	e := p.WrapEdge(inner, func() time.Time { return now })
	ctx := context.Background()
	for name, act := range map[string]func() error{
		"boot":      func() error { return e.Boot(ctx, model.Node{Name: "n1"}, "k") },
		"power off": func() error { return e.PowerOff(ctx, model.Node{Name: "n1"}, "k") },
	} {
		err := act()
		var v *Violation
		if !errors.As(err, &v) || v.Rule != RulePowerWindows || !errors.Is(err, ErrViolation) {
			t.Errorf("%s inside the window = %v, want a power-windows violation", name, err)
		}
		// A hold, not a failure: the engine keeps the step's intent and
		// tries again when the window ends.
		var h *lifecycle.HeldError
		if !errors.As(err, &h) || h.Gate != "policy" || h.Rule != RulePowerWindows || !h.Until.Equal(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)) {
			t.Errorf("%s inside the window = %#v, want a HeldError until 12:00", name, err)
		}
	}
	if inner.boots+inner.offs != 0 {
		t.Fatalf("power reached the edge inside a no-power window: %d boots, %d power-offs", inner.boots, inner.offs)
	}
	now = now.Add(2 * time.Hour)
	if err := e.Boot(ctx, model.Node{Name: "n1"}, "k"); err != nil || inner.boots != 1 {
		t.Errorf("Boot after the window = %v (boots %d), want it passed through", err, inner.boots)
	}
}

// TestPowerResumes: when power actions may happen again, across chained,
// overlapping and midnight-wrapping windows, and in the policy's zone.
func TestPowerResumes(t *testing.T) {
	t.Parallel()
	file, _ := writePolicy(t, `api_version: rackstrap.io/policy/v1
power:
  timezone: Europe/Paris
  no_power_windows:
    - {name: day, days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
    - {name: evening, days: [tue], from: "17:00", to: "20:00"}
    - {name: night, days: [fri], from: "22:00", to: "06:00"}
    - {name: sunday, days: [sun], from: "00:00", to: "00:00"}
`)
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for when, want := range map[string]string{
		"2026-11-23 10:00": "2026-11-23 18:00", // Monday: day
		"2026-11-24 10:00": "2026-11-24 20:00", // Tuesday: day, then evening
		"2026-11-24 18:30": "2026-11-24 20:00", // evening alone
		"2026-11-24 08:00": "2026-11-24 08:00", // allowed now
		"2026-11-27 23:00": "2026-11-28 06:00", // Friday night into Saturday
		"2026-11-28 05:00": "2026-11-28 06:00",
		"2026-11-29 12:00": "2026-11-30 00:00", // Sunday, all day
	} {
		got, ok := p.PowerResumes(at(when))
		if !ok || !got.Equal(at(want)) {
			t.Errorf("PowerResumes(%s) = %s, %v; want %s", when, got.In(paris).Format("2006-01-02 15:04"), ok, want)
		}
		if v := p.PowerWindow(at(when)); (v == nil) != (when == want) {
			t.Errorf("PowerWindow(%s) = %v", when, v)
		} else if v != nil && !strings.Contains(v.Message, at(want).Format("15:04")) {
			t.Errorf("PowerWindow(%s) = %q, want it to say when power resumes (%s)", when, v.Message, want)
		}
	}
	// The message is the same throughout a window: a hold is audited once.
	if a, b := p.PowerWindow(at("2026-11-23 10:00")), p.PowerWindow(at("2026-11-23 17:59")); a.Message != b.Message {
		t.Errorf("window message changes within the window: %q vs %q", a.Message, b.Message)
	}
	frozen, _ := writePolicy(t, "api_version: rackstrap.io/policy/v1\npower:\n  no_power_windows: [{name: freeze, from: \"00:00\", to: \"00:00\"}]\n")
	pf, err := Load(frozen)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pf.PowerResumes(time.Now()); ok {
		t.Error("PowerResumes under a permanent freeze says power resumes")
	}
	if v := pf.PowerWindow(time.Now()); v == nil || !strings.Contains(v.Message, "when the policy allows it") {
		t.Errorf("permanent freeze message = %v", v)
	}
}
