package lifecycle

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// HeldError refuses a side effect for now without failing it: the edge,
// or a wrapper around it (the local policy's no-power windows), did
// nothing, and the step is to be tried again later with the same
// idempotency key. The engine does not count it as a failed attempt: it
// leaves the step's intent open, holds the node where it is (audited as
// node.held naming the gate and the rule, listed by Holds), and tries the
// step again at Until, or on its next look when Until is zero.
//
// Return it only when nothing reached the machine: replaying the open
// intent after a restart must not do anything twice.
type HeldError struct {
	// Gate names who holds the node ("policy").
	Gate string
	// Rule is the rule that refused ("power-windows").
	Rule string
	// Reason says why, and what happens next.
	Reason string
	// Until is when to try again; zero: on the engine's next look.
	Until time.Time
	// Err is the refusal underneath, if any (errors.Is/As reach it).
	Err error
}

func (h *HeldError) Error() string {
	if h.Reason != "" {
		return h.Reason
	}
	if h.Err != nil {
		return h.Err.Error()
	}
	return "held by " + h.Gate
}

func (h *HeldError) Unwrap() error { return h.Err }

// RuledGate is a Gate that names the rule holding a node (a policy rule,
// the firmware baseline). The engine asks HoldRule instead of Hold and
// records the rule on the node's timeline and in Holds.
type RuledGate interface {
	Gate
	HoldRule(ctx context.Context, n model.Node, next model.State) (rule, reason string, err error)
}

// Hold is why a node is held where it is: by a gate before a guarded move
// (Next), or by a refused side effect inside a step (Step).
type Hold struct {
	Node   string      `json:"node"`
	Gate   string      `json:"gate"`
	Rule   string      `json:"rule,omitempty"`
	Reason string      `json:"reason"`
	Next   model.State `json:"next,omitempty"`
	Step   string      `json:"step,omitempty"`
	Since  time.Time   `json:"since"`
	// RetryAt is when the engine tries the held step again (step holds
	// with a known end); zero: on every look.
	RetryAt time.Time `json:"retryAt,omitzero"`
}

func (h Hold) same(o Hold) bool {
	return h.Gate == o.Gate && h.Rule == o.Rule && h.Reason == o.Reason && h.Next == o.Next && h.Step == o.Step
}

// WrapEdge replaces the engine's edge by wrap(edge): the local policy puts
// its power guard around every side effect the engine takes this way. Call
// it before Serve.
func (e *Engine) WrapEdge(wrap func(Edge) Edge) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w := wrap(e.edge); w != nil {
		e.edge = w
	}
}

// SetClock sets the clock hold retries are measured on (the one the
// refusing wrapper reads when it computes HeldError.Until). Call it
// before Serve.
func (e *Engine) SetClock(now func() time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now != nil {
		e.now = now
	}
}

func (e *Engine) clock() time.Time {
	e.mu.Lock()
	now := e.now
	e.mu.Unlock()
	return now()
}

func (e *Engine) getEdge() Edge {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.edge
}

// Holds lists the nodes this engine holds now, by node name.
func (e *Engine) Holds() []Hold {
	e.mu.Lock()
	out := make([]Hold, 0, len(e.holds))
	for _, h := range e.holds {
		out = append(out, h)
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Hold) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// ServeHolds answers GET /api/v1/holds (optionally ?node=NAME): the holds
// of Holds as JSON. It has the shape of an api.Route handler.
func (e *Engine) ServeHolds(w http.ResponseWriter, r *http.Request) error {
	holds := e.Holds()
	if node := r.URL.Query().Get("node"); node != "" {
		holds = slices.DeleteFunc(holds, func(h Hold) bool { return h.Node != node })
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(holds)
}

// setHold records h as n's hold; the timeline gets node.held when the hold
// is new or its reason changed, not on every pass.
func (e *Engine) setHold(ctx context.Context, h Hold) error {
	e.mu.Lock()
	last, had := e.holds[h.Node]
	if had && last.same(h) {
		last.RetryAt = h.RetryAt
		e.holds[h.Node] = last
		e.mu.Unlock()
		return nil
	}
	h.Since = e.now()
	e.holds[h.Node] = h
	e.mu.Unlock()
	if had {
		e.metrics.held.WithLabelValues(last.Gate, last.Rule).Dec()
	}
	e.metrics.held.WithLabelValues(h.Gate, h.Rule).Inc()
	detail := map[string]string{"gate": h.Gate, "reason": h.Reason}
	if h.Rule != "" {
		detail["rule"] = h.Rule
	}
	if h.Next != "" {
		detail["next"] = string(h.Next)
	}
	if h.Step != "" {
		detail["step"] = h.Step
	}
	if !h.RetryAt.IsZero() {
		detail["retryAt"] = h.RetryAt.UTC().Format(time.RFC3339)
	}
	if err := e.db.Audit(ctx, store.AuditInput{Actor: e.cfg.Actor, Action: "node.held", Node: h.Node, Outcome: "held", Detail: detail}); err != nil {
		return err
	}
	e.log.Info("node held", "node", h.Node, "gate", h.Gate, "rule", h.Rule, "reason", h.Reason, "before", h.Next, "step", h.Step)
	return nil
}

// clearHold ends n's hold, if it has one that keep does not keep, and
// records node.released.
func (e *Engine) clearHold(ctx context.Context, node string, keep func(Hold) bool) error {
	e.mu.Lock()
	last, had := e.holds[node]
	if !had || (keep != nil && keep(last)) {
		e.mu.Unlock()
		return nil
	}
	delete(e.holds, node)
	e.mu.Unlock()
	e.metrics.held.WithLabelValues(last.Gate, last.Rule).Dec()
	detail := map[string]string{"gate": last.Gate, "previous": last.Reason}
	if last.Rule != "" {
		detail["rule"] = last.Rule
	}
	if last.Next != "" {
		detail["next"] = string(last.Next)
	}
	if last.Step != "" {
		detail["step"] = last.Step
	}
	return e.db.Audit(ctx, store.AuditInput{Actor: e.cfg.Actor, Action: "node.released", Node: node, Outcome: "released", Detail: detail})
}

// due reports whether the engine should look at a held node now: a step
// hold waits for its RetryAt; every other node is due.
func (e *Engine) due(node string, now time.Time) bool {
	e.mu.Lock()
	h, ok := e.holds[node]
	e.mu.Unlock()
	return !ok || h.RetryAt.IsZero() || !now.Before(h.RetryAt)
}

// stepHeld carries a HeldError out of a step, naming the step.
type stepHeld struct {
	step string
	held *HeldError
}

func (s *stepHeld) Error() string { return "step " + s.step + " held: " + s.held.Error() }
func (s *stepHeld) Unwrap() error { return s.held }
