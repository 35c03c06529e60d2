package lifecycle

import (
	"context"

	"github.com/rackstrap/rackstrap/controller/model"
)

// Gate may hold a node before a guarded move: from Validated into Imaging,
// and from Ready into the hand-off. Firmware compliance and local policy
// are gates. A held node stays where it is; the engine asks again on every
// pass, so the node moves once the gate opens (a firmware update landed, a
// policy changed).
type Gate interface {
	// Name names the gate on the node's timeline.
	Name() string
	// Hold returns a non-empty reason to keep n from moving to next. An
	// error holds the node too (a gate that cannot decide must not let it
	// through) and is logged.
	Hold(ctx context.Context, n model.Node, next model.State) (reason string, err error)
}

// AddGate adds g to the gates asked before guarded moves. Call it before
// Serve.
func (e *Engine) AddGate(g Gate) { e.gates = append(e.gates, g) }

// held asks the gates about moving n to next. It records a hold on the
// node's audit timeline when the reason changes, not on every pass.
func (e *Engine) held(ctx context.Context, n model.Node, next model.State) (bool, error) {
	var h *Hold
	for _, g := range e.gates {
		var rule, r string
		var err error
		if rg, ok := g.(RuledGate); ok {
			rule, r, err = rg.HoldRule(ctx, n, next)
		} else {
			r, err = g.Hold(ctx, n, next)
		}
		if err != nil {
			e.log.Warn("lifecycle: gate could not decide; holding the node", "gate", g.Name(), "node", n.Name, "err", err)
			r = "gate " + g.Name() + " could not decide: " + err.Error()
		}
		if r != "" {
			h = &Hold{Node: n.Name, Gate: g.Name(), Rule: rule, Reason: r, Next: next}
			break
		}
	}
	if h == nil {
		return false, e.clearHold(ctx, n.Name, nil)
	}
	return true, e.setHold(ctx, *h)
}
