package policy

import (
	"context"
	"errors"
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
		if c, ok := err.(lifecycle.Classified); !ok || c.FailureClass() != "policy-refused" {
			t.Errorf("%s: violation is not classified", name)
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
