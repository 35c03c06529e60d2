package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

func init() {
	registerMigration(10, `
	CREATE TABLE handoff_targets (
		node TEXT PRIMARY KEY REFERENCES nodes(name),
		target TEXT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE outbox (
		id {{serial}},
		event_key TEXT NOT NULL UNIQUE,
		sink TEXT NOT NULL,
		node TEXT NOT NULL DEFAULT '',
		kind TEXT NOT NULL,
		body TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_at BIGINT NOT NULL,
		delivered_at BIGINT,
		last_error TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX outbox_due ON outbox(sink, delivered_at, next_at);
	CREATE TABLE outbox_cursors (
		sink TEXT PRIMARY KEY,
		audit_seq BIGINT NOT NULL
	)`)
}

// SetHandOffTarget records which cluster a node is handed to ("slurm",
// "kubernetes"); an empty target removes the choice. Audited.
func (db *DB) SetHandOffTarget(ctx context.Context, node, target, actor string) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var old string
		err := db.queryRow(ctx, tx, `SELECT target FROM handoff_targets WHERE node = ?`, node).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("hand-off target of %s: %w", node, err)
		}
		if old == target {
			return nil
		}
		var n int
		if err := db.queryRow(ctx, tx, `SELECT COUNT(*) FROM nodes WHERE name = ?`, node).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("node %q: %w", node, ErrNotFound)
		}
		if _, err := db.exec(ctx, tx, `DELETE FROM handoff_targets WHERE node = ?`, node); err != nil {
			return err
		}
		if target != "" {
			if _, err := db.exec(ctx, tx, `INSERT INTO handoff_targets (node, target, updated_at) VALUES (?, ?, ?)`, node, target, micros(db.now())); err != nil {
				return fmt.Errorf("set hand-off target of %s: %w", node, err)
			}
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "handoff.target", Node: node, Outcome: "ok",
			Detail: map[string]string{"from": old, "to": target}})
	})
}

// HandOffTarget returns the node's recorded target ("" when none).
func (db *DB) HandOffTarget(ctx context.Context, node string) (string, error) {
	var t string
	err := db.r.QueryRowContext(ctx, db.q(`SELECT target FROM handoff_targets WHERE node = ?`), node).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("hand-off target of %s: %w", node, err)
	}
	return t, nil
}

// HandOffTargets returns every recorded target by node.
func (db *DB) HandOffTargets(ctx context.Context) (map[string]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT node, target FROM handoff_targets`)
	if err != nil {
		return nil, fmt.Errorf("hand-off targets: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return nil, err
		}
		out[n] = t
	}
	return out, rows.Err()
}

// OutboxEvent is one event waiting for (or past) delivery to a sink.
type OutboxEvent struct {
	ID       int64
	Key      string // unique: the same event is never queued twice
	Sink     string // the receiver ("webhook")
	Node     string
	Kind     string
	Body     []byte // sent exactly as recorded
	Created  time.Time
	Attempts int
	NextAt   time.Time
	// Delivered is zero until a receiver accepted the event.
	Delivered time.Time
	LastError string
}

// OutboxCursor returns the audit sequence a sink has read up to; ok is
// false when it has never read.
func (db *DB) OutboxCursor(ctx context.Context, sink string) (seq int64, ok bool, err error) {
	err = db.r.QueryRowContext(ctx, db.q(`SELECT audit_seq FROM outbox_cursors WHERE sink = ?`), sink).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("outbox cursor %s: %w", sink, err)
	}
	return seq, true, nil
}

// AuditHead returns the sequence of the newest audit entry (0: none).
func (db *DB) AuditHead(ctx context.Context) (int64, error) {
	var seq int64
	if err := db.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("audit head: %w", err)
	}
	return seq, nil
}

// Enqueue queues events for sink and moves its cursor from `from` (ok:
// whether the cursor existed) to `to`, in one transaction: an event is
// queued exactly when the audit entries it came from are marked read.
// ErrConflict means another controller moved the cursor first; events
// whose key is queued already are left as they are.
func (db *DB) Enqueue(ctx context.Context, sink string, from int64, existed bool, to int64, events []OutboxEvent) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var res sql.Result
		var err error
		if existed {
			res, err = db.exec(ctx, tx, `UPDATE outbox_cursors SET audit_seq = ? WHERE sink = ? AND audit_seq = ?`, to, sink, from)
		} else {
			res, err = db.exec(ctx, tx, `INSERT INTO outbox_cursors (sink, audit_seq) VALUES (?, ?) ON CONFLICT (sink) DO NOTHING`, sink, to)
		}
		if err != nil {
			return fmt.Errorf("outbox %s: move cursor: %w", sink, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("outbox %s: cursor moved past %d: %w", sink, from, ErrConflict)
		}
		now := micros(db.now())
		for _, e := range events {
			if _, err := db.exec(ctx, tx, `INSERT INTO outbox (event_key, sink, node, kind, body, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING`,
				e.Key, sink, e.Node, e.Kind, string(e.Body), now, now); err != nil {
				return fmt.Errorf("outbox %s: queue %s: %w", sink, e.Key, err)
			}
		}
		return nil
	})
}

const outboxColumns = `id, event_key, sink, node, kind, body, created_at, attempts, next_at, delivered_at, last_error`

func scanOutbox(s scanner) (OutboxEvent, error) {
	var (
		e             OutboxEvent
		body          string
		created, next int64
		delivered     sql.NullInt64
	)
	if err := s.Scan(&e.ID, &e.Key, &e.Sink, &e.Node, &e.Kind, &body, &created, &e.Attempts, &next, &delivered, &e.LastError); err != nil {
		return e, err
	}
	e.Body, e.Created, e.NextAt = []byte(body), fromMicros(created), fromMicros(next)
	if delivered.Valid {
		e.Delivered = fromMicros(delivered.Int64)
	}
	return e, nil
}

// DueOutbox returns up to limit undelivered events of sink whose next
// attempt is due at now, oldest first.
func (db *DB) DueOutbox(ctx context.Context, sink string, now time.Time, limit int) ([]OutboxEvent, error) {
	return db.listOutbox(ctx, db.q(`SELECT `+outboxColumns+` FROM outbox WHERE sink = ? AND delivered_at IS NULL AND next_at <= ? ORDER BY id LIMIT ?`), sink, micros(now), limit)
}

// ListOutbox returns sink's events, newest first; pending: undelivered only.
func (db *DB) ListOutbox(ctx context.Context, sink string, pending bool, limit int) ([]OutboxEvent, error) {
	q := `SELECT ` + outboxColumns + ` FROM outbox WHERE sink = ?`
	if pending {
		q += ` AND delivered_at IS NULL`
	}
	return db.listOutbox(ctx, db.q(q+` ORDER BY id DESC LIMIT ?`), sink, limit)
}

func (db *DB) listOutbox(ctx context.Context, q string, args ...any) ([]OutboxEvent, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxEvent
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ClaimOutbox takes an event for one delivery attempt: it moves NextAt
// from the value read to until (the attempt's deadline) and counts the
// attempt. false: another controller claimed it first, or it was
// delivered. An attempt cut short by a crash is retried after until.
func (db *DB) ClaimOutbox(ctx context.Context, e OutboxEvent, until time.Time) (bool, error) {
	claimed := false
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, `UPDATE outbox SET next_at = ?, attempts = attempts + 1 WHERE id = ? AND next_at = ? AND delivered_at IS NULL`,
			micros(until), e.ID, micros(e.NextAt))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		claimed = n == 1
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("outbox: claim %s: %w", e.Key, err)
	}
	return claimed, nil
}

// OutboxDelivered marks an event delivered, with an audit entry in the same
// transaction.
func (db *DB) OutboxDelivered(ctx context.Context, e OutboxEvent, attempts int, actor string) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, `UPDATE outbox SET delivered_at = ?, last_error = '' WHERE id = ? AND delivered_at IS NULL`, micros(db.now()), e.ID)
		if err != nil {
			return fmt.Errorf("outbox: mark %s delivered: %w", e.Key, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil // delivered already (by another controller)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: e.Sink + ".delivered", Node: e.Node, Outcome: "ok",
			Detail: map[string]any{"event": e.Key, "kind": e.Kind, "attempts": attempts}})
	})
}

// OutboxFailed records a failed attempt and when to try again.
func (db *DB) OutboxFailed(ctx context.Context, e OutboxEvent, next time.Time, msg string) error {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `UPDATE outbox SET next_at = ?, last_error = ? WHERE id = ? AND delivered_at IS NULL`, micros(next), msg, e.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: record failure of %s: %w", e.Key, err)
	}
	return nil
}
