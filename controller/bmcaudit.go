package controller

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/store"
)

// bmcAudit writes every side-effecting BMC operation (power, boot override,
// media, SEL clear, BMC reset) to the audit log, beside the lifecycle step
// that asked for it: what the BMC said before and after, and whether it
// changed anything. bmc.Client calls Record on its own goroutines, so records
// are queued (dropped and counted when the queue is full, never blocking a
// BMC operation) and written by Serve.
type bmcAudit struct {
	db      *store.DB
	log     *slog.Logger
	queue   chan bmc.Record
	learned chan bmc.LearnedQuirk
	dropped atomic.Int64
}

func newBMCAudit(db *store.DB, log *slog.Logger) *bmcAudit {
	return &bmcAudit{db: db, log: log, queue: make(chan bmc.Record, 4096), learned: make(chan bmc.LearnedQuirk, 256)}
}

// Learn is bmc.Config.OnLearn: the quirk is kept in the store, so that the
// next controller's client starts with it (learnedQuirks). A quirk dropped
// here is learned again on a later operation.
func (a *bmcAudit) Learn(q bmc.LearnedQuirk) {
	select {
	case a.learned <- q:
	default:
		a.dropped.Add(1)
	}
}

// learnedQuirks is what earlier controllers learned, for bmc.Config.Learned.
func learnedQuirks(ctx context.Context, db *store.DB) ([]bmc.LearnedQuirk, error) {
	kept, err := db.LearnedQuirks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]bmc.LearnedQuirk, 0, len(kept))
	for _, q := range kept {
		out = append(out, bmc.LearnedQuirk{Vendor: q.Vendor, Manufacturer: q.Manufacturer, Model: q.Model, Product: q.Product, Quirk: bmc.Quirk(q.Quirk)})
	}
	return out, nil
}

// Record is bmc.Config.OnOperation.
func (a *bmcAudit) Record(r bmc.Record) {
	if r.Key == "" {
		return // a read (power state, inventory): no side effect to audit
	}
	select {
	case a.queue <- r:
	default:
		a.dropped.Add(1)
	}
}

func (a *bmcAudit) Serve(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			if n := a.dropped.Load(); n > 0 {
				a.log.Warn("bmc audit: records dropped (queue full)", "dropped", n)
			}
			return nil
		case q := <-a.learned:
			kept := store.LearnedQuirk{Vendor: q.Vendor, Manufacturer: q.Manufacturer, Model: q.Model, Product: q.Product, Quirk: string(q.Quirk)}
			if err := a.db.LearnQuirk(ctx, kept, "controller"); err != nil && ctx.Err() == nil {
				a.log.Error("bmc quirks: keep a learned quirk", "quirk", q.String(), "err", err)
			}
		case r := <-a.queue:
			node, _, _ := strings.Cut(r.Key, "/") // keys are node/step/attempt
			outcome := "ok"
			if r.Class != "" {
				outcome = r.Class
			}
			detail := map[string]any{"op": r.Op, "bmc": r.Endpoint, "key": r.Key, "changed": r.Changed, "durationMs": r.Duration.Milliseconds()}
			if r.Note != "" {
				detail["note"] = r.Note
			}
			if r.Err != "" {
				detail["error"] = r.Err
			}
			if err := a.db.Audit(ctx, store.AuditInput{Actor: "controller", Action: "bmc." + strings.ReplaceAll(r.Op, " ", "-"), Node: node, Outcome: outcome, Detail: detail}); err != nil && ctx.Err() == nil {
				a.log.Error("bmc audit: write", "key", r.Key, "err", err)
			}
		}
	}
}
