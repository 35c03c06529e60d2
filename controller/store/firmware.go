package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Firmware runs (issue 9): a staged firmware update of many nodes, planned
// once and stored before the first effect, so that a controller killed at
// any instant resumes it without flashing anything twice. Each node's
// outcome, each package's step (with the BMC's task URI) and each node's
// last-read firmware inventory are rows here; every change is audited in
// its own transaction.
func init() {
	registerMigration(9, `CREATE TABLE firmware_runs (
		id {{serial}},
		baseline TEXT NOT NULL,
		rack TEXT NOT NULL DEFAULT '',
		policy TEXT NOT NULL,
		waves TEXT NOT NULL,
		status TEXT NOT NULL,
		reason TEXT NOT NULL DEFAULT '',
		actor TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		finished_at BIGINT
	);
	CREATE UNIQUE INDEX firmware_runs_one_running ON firmware_runs(status) WHERE status = 'running';
	CREATE TABLE firmware_run_nodes (
		run_id BIGINT NOT NULL,
		node TEXT NOT NULL,
		wave INTEGER NOT NULL,
		plan TEXT NOT NULL,
		outcome TEXT NOT NULL DEFAULT '',
		message TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (run_id, node)
	);
	CREATE INDEX firmware_run_nodes_node ON firmware_run_nodes(node, outcome);
	CREATE TABLE firmware_steps (
		idem_key TEXT PRIMARY KEY,
		run_id BIGINT NOT NULL,
		node TEXT NOT NULL,
		component TEXT NOT NULL,
		status TEXT NOT NULL,
		task TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL DEFAULT '',
		message TEXT NOT NULL DEFAULT '',
		started_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX firmware_steps_run ON firmware_steps(run_id, node);
	CREATE TABLE firmware_inventory (
		node TEXT PRIMARY KEY,
		components TEXT NOT NULL,
		read_at BIGINT NOT NULL
	)`)
}

// Firmware run statuses.
const (
	FirmwareRunning   = "running"
	FirmwareDone      = "done"      // every node has an outcome
	FirmwareStopped   = "stopped"   // failures reached the limit, or the canary failed
	FirmwareCancelled = "cancelled" // an operator cancelled it
)

// Firmware node outcomes ("" while the node waits or is being updated) and
// step statuses.
const (
	FirmwareSucceeded = "succeeded"
	FirmwareFailed    = "failed"
	FirmwareSkipped   = "skipped" // the node was not at rest when its turn came

	FirmwareStepStarted = "started" // recorded before the package is sent
	FirmwareStepDone    = "done"
	FirmwareStepFailed  = "failed"
)

// FirmwareRun is a staged firmware update as stored.
type FirmwareRun struct {
	ID       int64             `json:"id"`
	Baseline string            `json:"baseline"`
	Rack     string            `json:"rack,omitempty"`
	Policy   json.RawMessage   `json:"policy"`
	Waves    json.RawMessage   `json:"waves"`
	Status   string            `json:"status"`
	Reason   string            `json:"reason,omitempty"`
	Actor    string            `json:"actor"`
	Created  time.Time         `json:"createdAt"`
	Finished *time.Time        `json:"finishedAt,omitempty"`
	Nodes    []FirmwareRunNode `json:"nodes,omitempty"`
}

// FirmwareRunNode is one node of a run: its wave, its plan (the updates)
// and how it ended.
type FirmwareRunNode struct {
	Node    string          `json:"node"`
	Wave    int             `json:"wave"`
	Plan    json.RawMessage `json:"plan"`
	Outcome string          `json:"outcome,omitempty"`
	Message string          `json:"message,omitempty"`
	Updated time.Time       `json:"updatedAt"`
}

// FirmwareStep is one package applied to one component of one node.
type FirmwareStep struct {
	Key       string          `json:"key"`
	RunID     int64           `json:"runId"`
	Node      string          `json:"node"`
	Component string          `json:"component"`
	Status    string          `json:"status"`
	Task      string          `json:"task,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Message   string          `json:"message,omitempty"`
	Started   time.Time       `json:"startedAt"`
	Updated   time.Time       `json:"updatedAt"`
}

// ErrFirmwareRunActive means another firmware run is still running.
var ErrFirmwareRunActive = errors.New("another firmware run is running")

// CreateFirmwareRun stores a planned run and its nodes in one transaction
// (audited firmware.run.start). Only one run may be running at a time.
func (db *DB) CreateFirmwareRun(ctx context.Context, r FirmwareRun, nodes []FirmwareRunNode) (FirmwareRun, error) {
	now := micros(db.now())
	r.Status, r.Created = FirmwareRunning, fromMicros(now)
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var other int64
		err := tx.QueryRowContext(ctx, db.q(`SELECT id FROM firmware_runs WHERE status = ?`), FirmwareRunning).Scan(&other)
		if err == nil {
			return fmt.Errorf("firmware run %d: %w", other, ErrFirmwareRunActive)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("create firmware run: %w", err)
		}
		if err := tx.QueryRowContext(ctx, db.q(`INSERT INTO firmware_runs (baseline, rack, policy, waves, status, actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			r.Baseline, r.Rack, string(r.Policy), string(r.Waves), r.Status, r.Actor, now).Scan(&r.ID); err != nil {
			return fmt.Errorf("create firmware run: %w", err)
		}
		for _, n := range nodes {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO firmware_run_nodes (run_id, node, wave, plan, updated_at) VALUES (?, ?, ?, ?, ?)`),
				r.ID, n.Node, n.Wave, string(n.Plan), now); err != nil {
				return fmt.Errorf("create firmware run: node %s: %w", n.Node, err)
			}
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: r.Actor, Action: "firmware.run.start", Outcome: "ok",
			Detail: map[string]any{"run": r.ID, "baseline": r.Baseline, "rack": r.Rack, "policy": r.Policy, "waves": r.Waves}})
	})
	if err != nil {
		return FirmwareRun{}, err
	}
	return db.GetFirmwareRun(ctx, r.ID)
}

const firmwareRunColumns = `id, baseline, rack, policy, waves, status, reason, actor, created_at, finished_at`

func scanFirmwareRun(s scanner) (FirmwareRun, error) {
	var (
		r             FirmwareRun
		policy, waves string
		created       int64
		finished      sql.NullInt64
	)
	if err := s.Scan(&r.ID, &r.Baseline, &r.Rack, &policy, &waves, &r.Status, &r.Reason, &r.Actor, &created, &finished); err != nil {
		return r, err
	}
	r.Policy, r.Waves, r.Created = json.RawMessage(policy), json.RawMessage(waves), fromMicros(created)
	if finished.Valid {
		t := fromMicros(finished.Int64)
		r.Finished = &t
	}
	return r, nil
}

// GetFirmwareRun returns a run with its nodes in wave order, or ErrNotFound.
func (db *DB) GetFirmwareRun(ctx context.Context, id int64) (FirmwareRun, error) {
	r, err := scanFirmwareRun(db.r.QueryRowContext(ctx, db.q(`SELECT `+firmwareRunColumns+` FROM firmware_runs WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("firmware run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("firmware run %d: %w", id, err)
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT node, wave, plan, outcome, message, updated_at FROM firmware_run_nodes WHERE run_id = ? ORDER BY wave, node`), id)
	if err != nil {
		return r, fmt.Errorf("firmware run %d nodes: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			n       FirmwareRunNode
			plan    string
			updated int64
		)
		if err := rows.Scan(&n.Node, &n.Wave, &plan, &n.Outcome, &n.Message, &updated); err != nil {
			return r, fmt.Errorf("firmware run %d nodes: %w", id, err)
		}
		n.Plan, n.Updated = json.RawMessage(plan), fromMicros(updated)
		r.Nodes = append(r.Nodes, n)
	}
	return r, rows.Err()
}

// ListFirmwareRuns returns the newest runs first, without their nodes.
func (db *DB) ListFirmwareRuns(ctx context.Context, limit int) ([]FirmwareRun, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+firmwareRunColumns+` FROM firmware_runs ORDER BY id DESC LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("list firmware runs: %w", err)
	}
	defer rows.Close()
	var out []FirmwareRun
	for rows.Next() {
		r, err := scanFirmwareRun(rows)
		if err != nil {
			return nil, fmt.Errorf("list firmware runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RunningFirmwareRun returns the running run with its nodes, or nil.
func (db *DB) RunningFirmwareRun(ctx context.Context) (*FirmwareRun, error) {
	var id int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT id FROM firmware_runs WHERE status = ?`), FirmwareRunning).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("running firmware run: %w", err)
	}
	r, err := db.GetFirmwareRun(ctx, id)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// FinishFirmwareRun ends a running run (audited firmware.run.<status>).
func (db *DB) FinishFirmwareRun(ctx context.Context, id int64, status, reason, actor string) error {
	now := micros(db.now())
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE firmware_runs SET status = ?, reason = ?, finished_at = ? WHERE id = ? AND status = ?`),
			status, reason, now, id, FirmwareRunning)
		if err != nil {
			return fmt.Errorf("finish firmware run %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		outcome := "ok"
		if status != FirmwareDone {
			outcome = status
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "firmware.run." + status, Outcome: outcome,
			Detail: map[string]any{"run": id, "reason": reason}})
	})
}

// FinishFirmwareNode records how a node of a run ended, once (audited
// firmware.node.<outcome>).
func (db *DB) FinishFirmwareNode(ctx context.Context, run int64, node, outcome, message, actor string) error {
	now := micros(db.now())
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE firmware_run_nodes SET outcome = ?, message = ?, updated_at = ? WHERE run_id = ? AND node = ? AND outcome = ''`),
			outcome, message, now, run, node)
		if err != nil {
			return fmt.Errorf("firmware run %d: finish %s: %w", run, node, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "firmware.node." + outcome, Node: node, Outcome: outcome,
			Detail: map[string]any{"run": run, "message": message}})
	})
}

// FirmwareHold returns the running run that still has work on node (its
// outcome not yet recorded), or 0.
func (db *DB) FirmwareHold(ctx context.Context, node string) (int64, error) {
	var id int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT r.id FROM firmware_run_nodes n JOIN firmware_runs r ON r.id = n.run_id
		WHERE n.node = ? AND n.outcome = '' AND r.status = ?`), node, FirmwareRunning).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("firmware hold of %s: %w", node, err)
	}
	return id, nil
}

const firmwareStepColumns = `idem_key, run_id, node, component, status, task, result, message, started_at, updated_at`

func scanFirmwareStep(s scanner) (FirmwareStep, error) {
	var (
		st               FirmwareStep
		result           string
		started, updated int64
	)
	if err := s.Scan(&st.Key, &st.RunID, &st.Node, &st.Component, &st.Status, &st.Task, &result, &st.Message, &started, &updated); err != nil {
		return st, err
	}
	if result != "" {
		st.Result = json.RawMessage(result)
	}
	st.Started, st.Updated = fromMicros(started), fromMicros(updated)
	return st, nil
}

// BeginFirmwareStep records the intent to apply a package before anything
// is sent (audited firmware.flash with detail). A step already recorded
// (a resumed run) is returned as it stands, with created false.
func (db *DB) BeginFirmwareStep(ctx context.Context, s FirmwareStep, actor string, detail any) (FirmwareStep, bool, error) {
	now := micros(db.now())
	created := false
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`INSERT INTO firmware_steps (idem_key, run_id, node, component, status, started_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING`), s.Key, s.RunID, s.Node, s.Component, FirmwareStepStarted, now, now)
		if err != nil {
			return fmt.Errorf("begin firmware step %s: %w", s.Key, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		created = true
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "firmware.flash", Node: s.Node, Outcome: "intent", Detail: detail})
	})
	if err != nil {
		return FirmwareStep{}, false, err
	}
	st, err := db.FirmwareStep(ctx, s.Key)
	return st, created, err
}

// FirmwareStep returns one step by key, or ErrNotFound.
func (db *DB) FirmwareStep(ctx context.Context, key string) (FirmwareStep, error) {
	st, err := scanFirmwareStep(db.r.QueryRowContext(ctx, db.q(`SELECT `+firmwareStepColumns+` FROM firmware_steps WHERE idem_key = ?`), key))
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("firmware step %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return st, fmt.Errorf("firmware step %s: %w", key, err)
	}
	return st, nil
}

// FirmwareSteps returns a run's steps in the order they began.
func (db *DB) FirmwareSteps(ctx context.Context, run int64) ([]FirmwareStep, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+firmwareStepColumns+` FROM firmware_steps WHERE run_id = ? ORDER BY started_at, idem_key`), run)
	if err != nil {
		return nil, fmt.Errorf("firmware steps of run %d: %w", run, err)
	}
	defer rows.Close()
	var out []FirmwareStep
	for rows.Next() {
		st, err := scanFirmwareStep(rows)
		if err != nil {
			return nil, fmt.Errorf("firmware steps of run %d: %w", run, err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// SetFirmwareTask records the BMC's task URI of a step the moment the BMC
// accepted the package (audited firmware.task).
func (db *DB) SetFirmwareTask(ctx context.Context, key, node, task, actor string) error {
	now := micros(db.now())
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE firmware_steps SET task = ?, updated_at = ? WHERE idem_key = ?`), task, now, key); err != nil {
			return fmt.Errorf("firmware step %s: record task: %w", key, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "firmware.task", Node: node, Outcome: "accepted",
			Detail: map[string]any{"key": key, "task": task}})
	})
}

// FinishFirmwareStep records a step's end, with the audit entries that
// describe it (the flash's outcome, the reset, the verification), in one
// transaction.
func (db *DB) FinishFirmwareStep(ctx context.Context, key, status string, result json.RawMessage, message string, audits []AuditInput) error {
	now := micros(db.now())
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE firmware_steps SET status = ?, result = ?, message = ?, updated_at = ? WHERE idem_key = ?`),
			status, string(result), message, now, key); err != nil {
			return fmt.Errorf("finish firmware step %s: %w", key, err)
		}
		for _, a := range audits {
			if err := db.appendAudit(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutFirmwareInventory stores the firmware a node's BMC reported last.
func (db *DB) PutFirmwareInventory(ctx context.Context, node string, components json.RawMessage) error {
	_, err := db.w.ExecContext(ctx, db.q(`INSERT INTO firmware_inventory (node, components, read_at) VALUES (?, ?, ?)
		ON CONFLICT (node) DO UPDATE SET components = excluded.components, read_at = excluded.read_at`), node, string(components), micros(db.now()))
	if err != nil {
		return fmt.Errorf("store firmware inventory of %s: %w", node, err)
	}
	return nil
}

// FirmwareInventory returns the firmware a node's BMC reported last and
// when, or ErrNotFound.
func (db *DB) FirmwareInventory(ctx context.Context, node string) (json.RawMessage, time.Time, error) {
	var (
		comps string
		at    int64
	)
	err := db.r.QueryRowContext(ctx, db.q(`SELECT components, read_at FROM firmware_inventory WHERE node = ?`), node).Scan(&comps, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, fmt.Errorf("firmware inventory of %s: %w", node, ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("firmware inventory of %s: %w", node, err)
	}
	return json.RawMessage(comps), fromMicros(at), nil
}
