package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
)

func TestOutbox(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if _, _, err := db.CreateNode(ctx, model.Node{Name: "n1"}, "test"); err != nil {
				t.Fatal(err)
			}
			// Targets: set, read, unchanged, cleared; unknown node refused.
			if err := db.SetHandOffTarget(ctx, "n1", "kubernetes", "test"); err != nil {
				t.Fatal(err)
			}
			if got, err := db.HandOffTarget(ctx, "n1"); err != nil || got != "kubernetes" {
				t.Fatalf("HandOffTarget = %q, %v", got, err)
			}
			if err := db.SetHandOffTarget(ctx, "ghost", "slurm", "test"); !errors.Is(err, ErrNotFound) {
				t.Errorf("SetHandOffTarget(ghost) = %v, want ErrNotFound", err)
			}
			if all, err := db.HandOffTargets(ctx); err != nil || all["n1"] != "kubernetes" || len(all) != 1 {
				t.Errorf("HandOffTargets = %v, %v", all, err)
			}
			entries, _ := db.ListAudit(ctx, AuditFilter{Node: "n1"})
			if last := entries[len(entries)-1]; last.Action != "handoff.target" {
				t.Errorf("last audit entry = %+v, want handoff.target", last)
			}

			// Cursor and queue move together; a stale cursor conflicts.
			if _, ok, err := db.OutboxCursor(ctx, "webhook"); ok || err != nil {
				t.Fatalf("OutboxCursor before any read = %v, %v", ok, err)
			}
			ev := []OutboxEvent{{Key: "audit-1", Node: "n1", Kind: "node.handed-off", Body: []byte(`{"id":"audit-1"}`)}}
			if err := db.Enqueue(ctx, "webhook", 0, false, 5, ev); err != nil {
				t.Fatal(err)
			}
			if err := db.Enqueue(ctx, "webhook", 0, false, 5, ev); !errors.Is(err, ErrConflict) {
				t.Errorf("second first-read Enqueue = %v, want ErrConflict", err)
			}
			if err := db.Enqueue(ctx, "webhook", 4, true, 6, nil); !errors.Is(err, ErrConflict) {
				t.Errorf("Enqueue from a stale cursor = %v, want ErrConflict", err)
			}
			if err := db.Enqueue(ctx, "webhook", 5, true, 7, ev); err != nil { // same key again: kept once
				t.Fatal(err)
			}
			if seq, ok, _ := db.OutboxCursor(ctx, "webhook"); !ok || seq != 7 {
				t.Errorf("cursor = %d, %v, want 7", seq, ok)
			}
			now := time.Now()
			due, err := db.DueOutbox(ctx, "webhook", now, 10)
			if err != nil || len(due) != 1 || string(due[0].Body) != `{"id":"audit-1"}` {
				t.Fatalf("DueOutbox = %+v, %v", due, err)
			}
			// Claim once; a second claim of the same read loses.
			if ok, err := db.ClaimOutbox(ctx, due[0], now.Add(time.Minute)); !ok || err != nil {
				t.Fatalf("ClaimOutbox = %v, %v", ok, err)
			}
			if ok, _ := db.ClaimOutbox(ctx, due[0], now.Add(time.Minute)); ok {
				t.Error("a second claim of the same attempt succeeded")
			}
			if due, _ := db.DueOutbox(ctx, "webhook", now, 10); len(due) != 0 {
				t.Errorf("claimed event still due: %+v", due)
			}
			e := mustOne(t, db)
			if err := db.OutboxFailed(ctx, e, now.Add(-time.Second), "receiver answered 503"); err != nil {
				t.Fatal(err)
			}
			e = mustOne(t, db)
			if e.Attempts != 1 || e.LastError != "receiver answered 503" {
				t.Errorf("after a failure: %+v", e)
			}
			due, _ = db.DueOutbox(ctx, "webhook", now, 10)
			if len(due) != 1 {
				t.Fatalf("failed event not due again: %+v", due)
			}
			if err := db.OutboxDelivered(ctx, due[0], 2, "test"); err != nil {
				t.Fatal(err)
			}
			if pending, _ := db.ListOutbox(ctx, "webhook", true, 10); len(pending) != 0 {
				t.Errorf("pending after delivery: %+v", pending)
			}
			entries, _ = db.ListAudit(ctx, AuditFilter{Node: "n1"})
			if last := entries[len(entries)-1]; last.Action != "webhook.delivered" {
				t.Errorf("last audit entry = %+v, want webhook.delivered", last)
			}
			if res, err := db.VerifyAudit(ctx); err != nil {
				t.Errorf("VerifyAudit = %+v, %v", res, err)
			}
		})
	}
}

func mustOne(t *testing.T, db *DB) OutboxEvent {
	t.Helper()
	all, err := db.ListOutbox(context.Background(), "webhook", false, 10)
	if err != nil || len(all) != 1 {
		t.Fatalf("ListOutbox = %+v, %v", all, err)
	}
	return all[0]
}
