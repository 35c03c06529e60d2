// Package outbox turns node events of the audit chain (hand-off,
// quarantine, release) into webhook deliveries that survive a controller
// restart.
//
// Collect reads the audit chain past the sink's cursor and queues one event
// per matching state change; the events and the cursor move in one
// transaction, so an event is queued exactly once, even across a crash or
// several controllers on one PostgreSQL. Deliver sends each queued body,
// byte for byte as recorded, until the receiver answers 2xx, waiting
// webhook.Config.Backoff between attempts; a delivery is claimed first so
// only one controller sends it at a time, and marked delivered (audited)
// after. Delivery is therefore at least once: receivers deduplicate on the
// event id.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/cluster/webhook"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Sink is the outbox sink name of the webhook.
const Sink = "webhook"

// Config configures the webhook outbox.
type Config struct {
	Sender *webhook.Sender
	// Poll is how often the audit chain and the queue are looked at
	// (default 1s).
	Poll time.Duration
	// Actor names the controller in audit entries (default "controller").
	Actor string
	// Batch bounds the audit entries read and events sent per pass
	// (default 200).
	Batch int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Outbox collects and delivers webhook events.
type Outbox struct {
	cfg Config
	db  *store.DB
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config, db *store.DB, log *slog.Logger) (*Outbox, error) {
	if cfg.Sender == nil || db == nil || log == nil {
		return nil, errors.New("outbox: New needs a webhook sender, a store and a logger")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Actor == "" {
		cfg.Actor = "controller"
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 200
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Outbox{cfg: cfg, db: db, log: log}, nil
}

// Serve collects and delivers until ctx ends. Store errors are logged and
// retried on the next pass: a webhook never stops the controller.
func (o *Outbox) Serve(ctx context.Context) error {
	for {
		if _, err := o.Collect(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("webhook outbox: collect", "err", err)
		}
		if _, err := o.Deliver(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("webhook outbox: deliver", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.cfg.Poll):
		}
	}
}

// kindOf maps a state change to an event kind ("" for none).
func kindOf(to model.State) string {
	switch to {
	case model.HandedOff:
		return webhook.HandedOff
	case model.Quarantined:
		return webhook.Quarantined
	case model.Decommissioning:
		return webhook.Released
	}
	return ""
}

// Init starts a new sink's cursor at the audit chain's head: events
// before the webhook was configured are not sent. A sink that has a cursor
// keeps it. Call it before the lifecycle runs (Serve and Collect call it
// too).
func (o *Outbox) Init(ctx context.Context) error {
	if _, existed, err := o.db.OutboxCursor(ctx, Sink); err != nil || existed {
		return err
	}
	head, err := o.db.AuditHead(ctx)
	if err != nil {
		return err
	}
	if err := o.db.Enqueue(ctx, Sink, 0, false, head, nil); err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	o.log.Info("webhook outbox: starts after audit entry", "seq", head)
	return nil
}

// Collect queues the events of the audit entries past the cursor and
// returns how many it queued.
func (o *Outbox) Collect(ctx context.Context) (int, error) {
	if err := o.Init(ctx); err != nil {
		return 0, err
	}
	queued := 0
	for {
		from, existed, err := o.db.OutboxCursor(ctx, Sink)
		if err != nil {
			return queued, err
		}
		if !existed {
			return queued, errors.New("outbox: cursor vanished")
		}
		entries, err := o.db.ListAudit(ctx, store.AuditFilter{After: from, Limit: o.cfg.Batch})
		if err != nil {
			return queued, err
		}
		if len(entries) == 0 {
			return queued, nil
		}
		var events []store.OutboxEvent
		for _, e := range entries {
			ev, ok, err := o.event(ctx, e)
			if err != nil {
				return queued, err
			}
			if ok {
				events = append(events, ev)
			}
		}
		to := entries[len(entries)-1].Seq
		if err := o.db.Enqueue(ctx, Sink, from, true, to, events); err != nil {
			if errors.Is(err, store.ErrConflict) {
				continue // another controller read these entries first
			}
			return queued, err
		}
		queued += len(events)
		if len(entries) < o.cfg.Batch {
			return queued, nil
		}
	}
}

// event builds the webhook event of one audit entry, if it is one.
func (o *Outbox) event(ctx context.Context, e model.AuditEntry) (store.OutboxEvent, bool, error) {
	if e.Action != "state.change" || e.Node == "" {
		return store.OutboxEvent{}, false, nil
	}
	var d struct {
		From           model.State `json:"from"`
		To             model.State `json:"to"`
		FailureMessage string      `json:"failureMessage"`
	}
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		return store.OutboxEvent{}, false, nil // not a state change this code knows
	}
	kind := kindOf(d.To)
	if kind == "" || !o.cfg.Sender.Config().Wants(kind) {
		return store.OutboxEvent{}, false, nil
	}
	ev := webhook.Event{ID: fmt.Sprintf("audit-%d", e.Seq), Kind: kind, At: e.At, Node: e.Node,
		From: string(d.From), To: string(d.To), AuditSeq: e.Seq, Reason: d.FailureMessage}
	n, err := o.db.GetNode(ctx, e.Node)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return store.OutboxEvent{}, false, err
	default:
		ev.Rack, ev.Slot, ev.Serial, ev.Profile = n.Identity.Rack, n.Identity.Slot, n.Identity.Serial, n.Profile
		if inv, err := inventory.Parse(n.Inventory); err == nil && len(inv.GPUs) > 0 {
			ev.GPUCount = len(inv.GPUs)
			ev.GPUModel, _ = slurm.GresType(inv.GPUs[0].Name)
		}
		if t, err := o.db.HandOffTarget(ctx, n.Name); err == nil {
			ev.Target = t
		}
	}
	switch kind {
	case webhook.Quarantined:
		if ev.Reason == "" {
			ev.Reason = "validation found errors"
		}
	case webhook.Released:
		ev.Reason = "decommissioned"
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return store.OutboxEvent{}, false, err
	}
	return store.OutboxEvent{Key: Sink + "/" + ev.ID, Node: e.Node, Kind: kind, Body: body}, true, nil
}

// Deliver sends the events that are due and returns how many were
// delivered.
func (o *Outbox) Deliver(ctx context.Context) (int, error) {
	due, err := o.db.DueOutbox(ctx, Sink, o.cfg.Now(), o.cfg.Batch)
	if err != nil {
		return 0, err
	}
	cfg := o.cfg.Sender.Config()
	delivered := 0
	var errs []error
	for _, e := range due {
		if ctx.Err() != nil {
			break
		}
		// The claim lasts past the delivery's own timeout: a controller
		// killed mid-delivery leaves the event due again after it.
		ok, err := o.db.ClaimOutbox(ctx, e, o.cfg.Now().Add(cfg.Timeout+cfg.MinBackoff))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		attempt := e.Attempts + 1
		id := e.Key[len(Sink)+1:]
		if err := o.cfg.Sender.Send(ctx, id, e.Kind, e.Body, attempt); err != nil {
			wait := cfg.Backoff(attempt)
			o.log.Warn("webhook: delivery failed; will retry", "event", id, "node", e.Node, "attempt", attempt, "retry in", wait, "err", err)
			if ferr := o.db.OutboxFailed(context.WithoutCancel(ctx), e, o.cfg.Now().Add(wait), err.Error()); ferr != nil {
				errs = append(errs, ferr)
			}
			continue
		}
		if err := o.db.OutboxDelivered(context.WithoutCancel(ctx), e, attempt, o.cfg.Actor); err != nil {
			errs = append(errs, err)
			continue
		}
		o.log.Info("webhook: delivered", "event", id, "kind", e.Kind, "node", e.Node, "attempt", attempt)
		delivered++
	}
	return delivered, errors.Join(errs...)
}
