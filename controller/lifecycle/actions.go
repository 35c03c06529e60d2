package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Action is what an operator asks of a node.
type Action string

const (
	// ActProvision drives the node to Ready (or HandedOff with
	// Request.HandOff).
	ActProvision Action = "provision"
	// ActRetry resumes a Failed node from the state it failed in.
	ActRetry Action = "retry"
	// ActRevalidate re-inspects a Quarantined node after a fix.
	ActRevalidate Action = "revalidate"
	// ActDecommission releases the node and powers it off.
	ActDecommission Action = "decommission"
)

// Actions lists every action, for help texts and the API document.
var Actions = []Action{ActProvision, ActRetry, ActRevalidate, ActDecommission}

// ErrNotAllowed means the action does not apply to the node's state;
// ErrUnknownAction that there is no such action.
var (
	ErrNotAllowed    = errors.New("action not allowed in this state")
	ErrUnknownAction = errors.New("unknown action")
)

// Request is one operator action.
type Request struct {
	Node    string
	Action  Action
	HandOff bool // provision: hand off to the cluster once Ready
	Actor   string
}

// Act applies an operator action atomically and wakes the engine. It returns
// the operation that tracks the node until it rests again.
func (e *Engine) Act(ctx context.Context, r Request) (model.Operation, error) {
	op, err := Act(ctx, e.db, r)
	if err == nil {
		e.enqueue(r.Node)
	}
	return op, err
}

// Act applies an operator action to the store (the engine picks it up on
// its next look). The action is decided on the node as read; when the
// engine moves the node in between (a step finished), it is decided again
// on the node as it is now, rather than refused: an operator asking to
// provision a node that is being enrolled means it.
func Act(ctx context.Context, db *store.DB, r Request) (model.Operation, error) {
	for attempt := 1; ; attempt++ {
		op, err := act(ctx, db, r)
		if !errors.Is(err, store.ErrConflict) || attempt == 20 || ctx.Err() != nil {
			return op, err
		}
	}
}

func act(ctx context.Context, db *store.DB, r Request) (model.Operation, error) {
	n, err := db.GetNode(ctx, r.Node)
	if err != nil {
		return model.Operation{}, err
	}
	c := store.Change{Node: n.Name, FromSeq: n.Seq, Actor: r.Actor, Action: "node." + string(r.Action), StartOp: string(r.Action)}
	switch r.Action {
	case ActProvision:
		switch n.State {
		case model.Failed, model.Quarantined, model.Decommissioning:
			return model.Operation{}, fmt.Errorf("node %s is %s; provision applies to nodes not Failed, Quarantined or Decommissioning: use retry, revalidate or wait: %w", n.Name, n.State, ErrNotAllowed)
		}
		c.Desired = model.WantReady
		if r.HandOff {
			c.Desired = model.WantHandedOff
		}
	case ActRetry:
		if n.State != model.Failed {
			return model.Operation{}, fmt.Errorf("node %s is %s; retry applies only to Failed nodes: %w", n.Name, n.State, ErrNotAllowed)
		}
		c.To = n.FailedFrom
		if c.To == "" {
			c.To = model.Discovered
		}
	case ActRevalidate:
		if n.State != model.Quarantined {
			return model.Operation{}, fmt.Errorf("node %s is %s; revalidate applies only to Quarantined nodes: %w", n.Name, n.State, ErrNotAllowed)
		}
		c.To = model.Inspecting
	case ActDecommission:
		c.Desired = model.WantDecommissioned
		if n.State == model.Failed || n.State == model.Quarantined {
			c.To = model.Decommissioning
		}
	default:
		return model.Operation{}, fmt.Errorf("%w %q; one of provision, retry, revalidate, decommission", ErrUnknownAction, r.Action)
	}
	// A node already where the action leads has nothing to do: the operation
	// is recorded and closed at once.
	to, desired := n.State, n.Desired
	if c.To != "" {
		to = c.To
	}
	if c.Desired != "" {
		desired = c.Desired
	}
	if resting(to, desired) {
		c.FinishOps = model.OpSucceeded
	}
	_, op, err := db.Apply(ctx, c)
	if err != nil {
		return model.Operation{}, err
	}
	return *op, nil
}
