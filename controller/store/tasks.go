package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
)

// Task statuses.
const (
	TaskPending = "pending" // waiting for the agent to take it
	TaskTaken   = "taken"   // handed to the agent
	TaskDone    = "done"
	TaskFailed  = "failed"
)

// Task is work the controller asks of a node's agent, keyed by the
// lifecycle step's idempotency key, so a resumed step finds its task.
type Task struct {
	Key     string          `json:"key"`
	Node    string          `json:"node"`
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Status  string          `json:"status"`
	Result  json.RawMessage `json:"result,omitempty"`
	Message string          `json:"message,omitempty"`
}

// PutTask records a task once: a second call with the same key changes
// nothing and reports created false.
func (db *DB) PutTask(ctx context.Context, t Task, actor string) (bool, error) {
	now := micros(db.now())
	created := false
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`INSERT INTO agent_tasks (idem_key, node, kind, payload, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING`), t.Key, t.Node, t.Kind, string(t.Payload), TaskPending, now, now)
		if err != nil {
			return fmt.Errorf("put task %s: %w", t.Key, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		created = true
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "agent.task.create", Node: t.Node, Outcome: "ok",
			Detail: map[string]any{"key": t.Key, "kind": t.Kind}})
	})
	if err == nil && created {
		db.wakes.wake(taskAddedKey(t.Node))
	}
	return created, err
}

func scanTask(s scanner) (Task, error) {
	var t Task
	var payload, result string
	if err := s.Scan(&t.Key, &t.Node, &t.Kind, &payload, &t.Status, &result, &t.Message); err != nil {
		return t, err
	}
	if payload != "" {
		t.Payload = json.RawMessage(payload)
	}
	if result != "" {
		t.Result = json.RawMessage(result)
	}
	return t, nil
}

const taskColumns = `idem_key, node, kind, payload, status, result, message`

// GetTask returns one task or ErrNotFound.
func (db *DB) GetTask(ctx context.Context, key string) (Task, error) {
	t, err := scanTask(db.read(ctx, `SELECT `+taskColumns+` FROM agent_tasks WHERE idem_key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("task %s: %w", key, ErrNotFound)
	}
	return t, err
}

// NextTask hands the node's oldest unfinished task to its agent (nil when
// there is none). A task already taken is handed out again: the agent may
// have rebooted mid-task, and tasks are idempotent by key at the agent too.
// An idle agent's poll is a read on the readers' pool: only handing out a
// pending task writes.
func (db *DB) NextTask(ctx context.Context, node string) (*Task, error) {
	for {
		t, err := scanTask(db.read(ctx, `SELECT `+taskColumns+` FROM agent_tasks WHERE node = ? AND status IN (?, ?) ORDER BY created_at, idem_key LIMIT 1`,
			node, TaskPending, TaskTaken))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("next task of %s: %w", node, err)
		}
		if t.Status == TaskTaken {
			return &t, nil
		}
		res, err := db.w.ExecContext(ctx, db.q(`UPDATE agent_tasks SET status = ?, updated_at = ? WHERE idem_key = ? AND status = ?`), TaskTaken, micros(db.now()), t.Key, TaskPending)
		if err != nil {
			return nil, fmt.Errorf("next task of %s: %w", node, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			t.Status = TaskTaken
			return &t, nil
		}
		// Finished or taken since the read: read again.
	}
}

// NodeState is the node's state alone: a cheap read for the agent's polls.
func (db *DB) NodeState(ctx context.Context, node string) (model.State, error) {
	var st model.State
	err := db.read(ctx, `SELECT state FROM nodes WHERE name = ?`, node).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("node %s: %w", node, ErrNotFound)
	}
	return st, err
}

// FinishTask records the agent's result. Only the node's own agent can
// finish its task; a finished task stays as it was (first result wins).
func (db *DB) FinishTask(ctx context.Context, node, key string, ok bool, result json.RawMessage, message, actor string) error {
	status := TaskDone
	if !ok {
		status = TaskFailed
	}
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE agent_tasks SET status = ?, result = ?, message = ?, updated_at = ? WHERE idem_key = ? AND node = ? AND status IN (?, ?)`),
			status, string(result), message, micros(db.now()), key, node, TaskPending, TaskTaken)
		if err != nil {
			return fmt.Errorf("finish task %s: %w", key, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			t, err := db.GetTask(ctx, key)
			if err != nil {
				return err
			}
			if t.Node != node {
				return fmt.Errorf("task %s of node %s: %w", key, node, ErrNotFound)
			}
			return nil // already finished: the agent retried its report
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "agent.task.finish", Node: node, Outcome: status,
			Detail: map[string]any{"key": key, "message": message}})
	})
	if err == nil {
		db.wakes.wake(taskFinishedKey(key))
	}
	return err
}

// Session returns the node an agent session token belongs to. Session
// tokens (phase "session") are issued at check-in, may be used many times
// until they expire, and authorise only that node's tasks.
func (db *DB) Session(ctx context.Context, token string) (string, error) {
	var (
		node    string
		expires int64
	)
	err := db.read(ctx, `SELECT node, expires_at FROM agent_tokens WHERE token_hash = ? AND phase = 'session'`, hashToken(token)).Scan(&node, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrTokenInvalid
	case err != nil:
		return "", fmt.Errorf("agent session: %w", err)
	case micros(db.now()) > expires:
		return "", ErrTokenExpired
	}
	return node, nil
}

// SessionTTL is how long an agent session lasts after check-in.
const SessionTTL = 6 * time.Hour

// MarkEffect records, durably, that an edge is about to apply the side
// effect with this key. It reports whether the key was marked before: then a
// previous controller got at least this far, and the edge must find out from
// the machine whether the effect took hold rather than apply it blindly.
func (db *DB) MarkEffect(ctx context.Context, key, node, action string) (bool, error) {
	res, err := db.w.ExecContext(ctx, db.q(`INSERT INTO edge_effects (idem_key, node, action, at) VALUES (?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING`),
		key, node, action, micros(db.now()))
	if err != nil {
		return false, fmt.Errorf("mark effect %s: %w", key, err)
	}
	n, _ := res.RowsAffected()
	return n == 0, nil
}
