package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rackstrap/rackstrap/controller/model"
)

const stepColumns = `id, node, seq, step, attempt, idem_key, outcome, class, message, result, started_at, ended_at`

func scanStep(s scanner) (model.Step, error) {
	var (
		st            model.Step
		class, result string
		started       int64
		ended         sql.NullInt64
	)
	if err := s.Scan(&st.ID, &st.Node, &st.Seq, &st.Name, &st.Attempt, &st.Key, &st.Outcome, &class,
		&st.Message, &result, &started, &ended); err != nil {
		return st, err
	}
	st.Class = model.FailureClass(class)
	if result != "" {
		st.Result = json.RawMessage(result)
	}
	st.Started = fromMicros(started)
	if ended.Valid {
		t := fromMicros(ended.Int64)
		st.Ended = &t
	}
	return st, nil
}

// StepHistory is what the store knows of one step in one pass.
type StepHistory struct {
	Last     *model.Step // the newest attempt in this pass, if any
	Failures int         // failed or timed-out attempts in this pass
}

// StepHistory reads the attempts of step for node in pass seq.
func (db *DB) StepHistory(ctx context.Context, node string, seq int64, step string) (StepHistory, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+stepColumns+` FROM steps WHERE node = ? AND seq = ? AND step = ? ORDER BY attempt`), node, seq, step)
	if err != nil {
		return StepHistory{}, fmt.Errorf("step history %s/%s: %w", node, step, err)
	}
	defer rows.Close()
	var h StepHistory
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return h, fmt.Errorf("step history %s/%s: %w", node, step, err)
		}
		if st.Outcome == model.FailedOut || st.Outcome == model.TimedOut {
			h.Failures++
		}
		h.Last = &st
	}
	return h, rows.Err()
}

// PassHistory reads the attempts of every step of node in pass seq at once
// (one query per transition instead of one per step).
func (db *DB) PassHistory(ctx context.Context, node string, seq int64) (map[string]StepHistory, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+stepColumns+` FROM steps WHERE node = ? AND seq = ? ORDER BY step, attempt`), node, seq)
	if err != nil {
		return nil, fmt.Errorf("step history %s: %w", node, err)
	}
	defer rows.Close()
	out := map[string]StepHistory{}
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("step history %s: %w", node, err)
		}
		h := out[st.Name]
		if st.Outcome == model.FailedOut || st.Outcome == model.TimedOut {
			h.Failures++
		}
		h.Last = &st
		out[st.Name] = h
	}
	return out, rows.Err()
}

// BeginStep records the intent of a new attempt, durably, before its side
// effect runs: the returned step carries the idempotency key the edge gets.
func (db *DB) BeginStep(ctx context.Context, node string, seq int64, step, actor string) (model.Step, error) {
	var st model.Step
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var attempt int
		if err := db.queryRow(ctx, tx, `SELECT COALESCE(MAX(attempt), 0) FROM steps WHERE node = ? AND step = ?`, node, step).Scan(&attempt); err != nil {
			return fmt.Errorf("begin step %s/%s: %w", node, step, err)
		}
		attempt++
		now := db.now()
		st = model.Step{Node: node, Seq: seq, Name: step, Attempt: attempt, Key: model.IdempotencyKey(node, step, attempt),
			Outcome: model.Running, Started: fromMicros(micros(now))}
		if err := db.queryRow(ctx, tx, `INSERT INTO steps (node, seq, step, attempt, idem_key, outcome, started_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			node, seq, step, attempt, st.Key, st.Outcome, micros(now)).Scan(&st.ID); err != nil {
			return fmt.Errorf("begin step %s/%s: %w", node, step, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "step.begin", Node: node, Outcome: string(model.Running),
			Detail: map[string]any{"step": step, "attempt": attempt, "key": st.Key}})
	})
	return st, err
}

// FinishStep records how an attempt ended.
func (db *DB) FinishStep(ctx context.Context, st model.Step, actor string) (model.Step, error) {
	end := fromMicros(micros(db.now()))
	st.Ended = &end
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, `UPDATE steps SET outcome = ?, class = ?, message = ?, result = ?, ended_at = ? WHERE id = ? AND outcome = ?`,
			st.Outcome, st.Class, st.Message, string(st.Result), micros(end), st.ID, model.Running)
		if err != nil {
			return fmt.Errorf("finish step %s: %w", st.Key, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("finish step %s: it is no longer running: %w", st.Key, ErrConflict)
		}
		detail := map[string]any{"step": st.Name, "attempt": st.Attempt, "key": st.Key, "durationMs": end.Sub(st.Started).Milliseconds()}
		if st.Class != "" {
			detail["failureClass"] = st.Class
		}
		if st.Message != "" {
			detail["message"] = st.Message
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "step.end", Node: st.Node, Outcome: string(st.Outcome), Detail: detail})
	})
	return st, err
}

// Timeline returns every step attempt of a node, oldest first.
func (db *DB) Timeline(ctx context.Context, node string) ([]model.Step, error) {
	if _, err := db.GetNode(ctx, node); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+stepColumns+` FROM steps WHERE node = ? ORDER BY id`), node)
	if err != nil {
		return nil, fmt.Errorf("timeline %s: %w", node, err)
	}
	defer rows.Close()
	var out []model.Step
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("timeline %s: %w", node, err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

const opColumns = `id, node, action, actor, status, message, created_at, finished_at`

func scanOp(s scanner) (model.Operation, error) {
	var (
		o        model.Operation
		created  int64
		finished sql.NullInt64
	)
	if err := s.Scan(&o.ID, &o.Node, &o.Action, &o.Actor, &o.Status, &o.Message, &created, &finished); err != nil {
		return o, err
	}
	o.Created = fromMicros(created)
	if finished.Valid {
		t := fromMicros(finished.Int64)
		o.Finished = &t
	}
	return o, nil
}

// GetOperation returns one operation or ErrNotFound.
func (db *DB) GetOperation(ctx context.Context, id int64) (model.Operation, error) {
	o, err := scanOp(db.r.QueryRowContext(ctx, db.q(`SELECT `+opColumns+` FROM operations WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("operation %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get operation %d: %w", id, err)
	}
	return o, nil
}

// ListOperations returns the newest operations first, optionally of one node.
func (db *DB) ListOperations(ctx context.Context, node string, limit int) ([]model.Operation, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	query, args := `SELECT `+opColumns+` FROM operations`, []any{}
	if node != "" {
		query += ` WHERE node = ?`
		args = append(args, node)
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	defer rows.Close()
	var out []model.Operation
	for rows.Next() {
		o, err := scanOp(rows)
		if err != nil {
			return nil, fmt.Errorf("list operations: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
