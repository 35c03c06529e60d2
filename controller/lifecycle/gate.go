package lifecycle

import (
	"context"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
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
	reason, gate := "", ""
	for _, g := range e.gates {
		r, err := g.Hold(ctx, n, next)
		if err != nil {
			e.log.Warn("lifecycle: gate could not decide; holding the node", "gate", g.Name(), "node", n.Name, "err", err)
			r = "gate " + g.Name() + " could not decide: " + err.Error()
		}
		if r != "" {
			reason, gate = r, g.Name()
			break
		}
	}
	e.mu.Lock()
	last := e.holds[n.Name]
	if reason == "" {
		delete(e.holds, n.Name)
	} else {
		e.holds[n.Name] = reason
	}
	e.mu.Unlock()
	if reason == last {
		return reason != "", nil
	}
	action, outcome := "node.held", "held"
	detail := map[string]string{"gate": gate, "reason": reason, "next": string(next)}
	if reason == "" {
		action, outcome = "node.released", "released"
		detail = map[string]string{"next": string(next), "previous": last}
	}
	if err := e.db.Audit(ctx, store.AuditInput{Actor: e.cfg.Actor, Action: action, Node: n.Name, Outcome: outcome, Detail: detail}); err != nil {
		return true, err
	}
	if reason != "" {
		e.log.Info("node held", "node", n.Name, "gate", gate, "reason", reason, "before", next)
	}
	return reason != "", nil
}
