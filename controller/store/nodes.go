package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/rackstrap/rackstrap/controller/model"
)

const nodeColumns = `name, serial, uuid, bmc, macs, rack, slot, profile, desired, state, seq,
	failure_class, failure_msg, failed_from, inventory, findings, created_at, updated_at`

type scanner interface{ Scan(...any) error }

func scanNode(s scanner) (model.Node, error) {
	var (
		n                   model.Node
		macs, inv, findings string
		class, from         string
		created, updated    int64
	)
	err := s.Scan(&n.Name, &n.Identity.Serial, &n.Identity.UUID, &n.Identity.BMC, &macs, &n.Identity.Rack,
		&n.Identity.Slot, &n.Profile, &n.Desired, &n.State, &n.Seq, &class, &n.FailureMsg, &from,
		&inv, &findings, &created, &updated)
	if err != nil {
		return n, err
	}
	if err := json.Unmarshal([]byte(macs), &n.Identity.MACs); err != nil {
		return n, fmt.Errorf("node %s: stored MAC list is corrupt: %w", n.Name, err)
	}
	n.FailureClass, n.FailedFrom = model.FailureClass(class), model.State(from)
	if inv != "" {
		n.Inventory = json.RawMessage(inv)
	}
	if findings != "" {
		n.Findings = json.RawMessage(findings)
	}
	n.CreatedAt, n.UpdatedAt = fromMicros(created), fromMicros(updated)
	return n, nil
}

// CreateNode adds a node in state Discovered (or n.State when set). It is
// idempotent by name: an existing node is returned unchanged with created
// false, so re-applying a manifest does nothing new.
func (db *DB) CreateNode(ctx context.Context, n model.Node, actor string) (model.Node, bool, error) {
	if err := validName(n.Name); err != nil {
		return n, false, err
	}
	if n.State == "" {
		n.State = model.Discovered
	}
	if n.Desired == "" {
		n.Desired = model.WantReady
	}
	macs, err := json.Marshal(nonNil(n.Identity.MACs))
	if err != nil {
		return n, false, err
	}
	now := db.now()
	created := false
	err = db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, `INSERT INTO nodes (`+nodeColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', '', '', '', '', ?, ?) ON CONFLICT (name) DO NOTHING`,
			n.Name, n.Identity.Serial, n.Identity.UUID, n.Identity.BMC, string(macs), n.Identity.Rack,
			n.Identity.Slot, n.Profile, n.Desired, n.State, micros(now), micros(now))
		if err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return nil
		}
		created = true
		if err := db.setMACs(ctx, tx, n.Name, n.Identity.MACs); err != nil {
			return err
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "node.create", Node: n.Name, Outcome: "ok",
			Detail: map[string]any{"state": n.State, "desired": n.Desired, "identity": n.Identity, "profile": n.Profile}})
	})
	if err != nil {
		return n, false, err
	}
	got, err := db.GetNode(ctx, n.Name)
	return got, created, err
}

// setMACs replaces a node's rows in the MAC index (inside tx).
func (db *DB) setMACs(ctx context.Context, tx *sql.Tx, node string, macs []string) error {
	if _, err := db.exec(ctx, tx, `DELETE FROM node_macs WHERE node = ?`, node); err != nil {
		return fmt.Errorf("index MACs of %s: %w", node, err)
	}
	for _, mac := range macs {
		if _, err := db.exec(ctx, tx, `INSERT INTO node_macs (mac, node) VALUES (?, ?) ON CONFLICT DO NOTHING`, mac, node); err != nil {
			return fmt.Errorf("index MACs of %s: %w", node, err)
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// validName keeps node names usable in URLs, keys and host names.
func validName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%w %q: use 1 to 63 characters of a-z, 0-9, '-', '.', '_'", ErrInvalidName, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return fmt.Errorf("%w %q: use only a-z, 0-9, '-', '.', '_'", ErrInvalidName, name)
		}
	}
	return nil
}

// FillIdentity completes an existing node with what a manifest or discovery
// declares about it, setting only fields that are still empty (a BMC address
// for a machine found by its own network boot, say): nothing learned is
// overwritten. It reports the fields it filled.
func (db *DB) FillIdentity(ctx context.Context, name string, id model.Identity, profile, actor string) ([]string, error) {
	var filled []string
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		filled = nil
		n, err := scanNode(db.queryRow(ctx, tx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		set, args := []string{}, []any{}
		fill := func(field, column, have, want string) {
			if have == "" && want != "" {
				set, args, filled = append(set, column+" = ?"), append(args, want), append(filled, field)
			}
		}
		fill("serial", "serial", n.Identity.Serial, id.Serial)
		fill("uuid", "uuid", n.Identity.UUID, id.UUID)
		fill("bmc", "bmc", n.Identity.BMC, id.BMC)
		fill("profile", "profile", n.Profile, profile)
		if n.Identity.Rack == "" && id.Rack != "" {
			set, args, filled = append(set, "rack = ?", "slot = ?"), append(args, id.Rack, id.Slot), append(filled, "rack", "slot")
		}
		if len(n.Identity.MACs) == 0 && len(id.MACs) > 0 {
			macs, _ := json.Marshal(id.MACs)
			set, args, filled = append(set, "macs = ?"), append(args, string(macs)), append(filled, "macs")
			if err := db.setMACs(ctx, tx, name, id.MACs); err != nil {
				return err
			}
		}
		if len(set) == 0 {
			return nil
		}
		args = append(args, micros(db.now()), name)
		if _, err := db.exec(ctx, tx, `UPDATE nodes SET `+strings.Join(set, ", ")+`, updated_at = ? WHERE name = ?`, args...); err != nil {
			return fmt.Errorf("fill identity of %s: %w", name, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "node.identity.fill", Node: name, Outcome: "ok",
			Detail: map[string]any{"filled": filled, "identity": id, "profile": profile}})
	})
	return filled, err
}

// GetNode returns one node or ErrNotFound.
func (db *DB) GetNode(ctx context.Context, name string) (model.Node, error) {
	n, err := scanNode(db.r.QueryRowContext(ctx, db.q(`SELECT `+nodeColumns+` FROM nodes WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return n, fmt.Errorf("get node %s: %w", name, err)
	}
	return n, nil
}

// NodeFilter selects nodes; zero fields match everything.
type NodeFilter struct {
	States []model.State
	Rack   string
}

// ListNodes returns nodes ordered by rack, slot and name.
func (db *DB) ListNodes(ctx context.Context, f NodeFilter) ([]model.Node, error) {
	query, args := `SELECT `+nodeColumns+` FROM nodes WHERE 1=1`, []any{}
	if len(f.States) > 0 {
		query += ` AND state IN (` + strings.TrimSuffix(strings.Repeat("?,", len(f.States)), ",") + `)`
		for _, s := range f.States {
			args = append(args, s)
		}
	}
	if f.Rack != "" {
		query += ` AND rack = ?`
		args = append(args, f.Rack)
	}
	query += ` ORDER BY rack, slot, name`
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []model.Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// ListWork returns the nodes in states, with only what deciding their next
// move needs (name, state, desired, seq, BMC, rack): the lifecycle's scan for
// work reads thousands of these a second, so it skips inventories and JSON.
func (db *DB) ListWork(ctx context.Context, states []model.State) ([]model.Node, error) {
	query, args := `SELECT name, state, desired, seq, bmc, rack FROM nodes`, []any{}
	if len(states) > 0 {
		query += ` WHERE state IN (` + strings.TrimSuffix(strings.Repeat("?,", len(states)), ",") + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list work: %w", err)
	}
	defer rows.Close()
	var out []model.Node
	for rows.Next() {
		var n model.Node
		if err := rows.Scan(&n.Name, &n.State, &n.Desired, &n.Seq, &n.Identity.BMC, &n.Identity.Rack); err != nil {
			return nil, fmt.Errorf("list work: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// CountByState counts nodes per state (for metrics and summaries).
func (db *DB) CountByState(ctx context.Context) (map[model.State]int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM nodes GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count nodes: %w", err)
	}
	defer rows.Close()
	out := map[model.State]int{}
	for rows.Next() {
		var (
			s model.State
			n int
		)
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("count nodes: %w", err)
		}
		out[s] = n
	}
	return out, rows.Err()
}

// Racks summarises every rack (nodes with no rack are under "").
func (db *DB) Racks(ctx context.Context) ([]model.RackSummary, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT rack, state, COUNT(*) FROM nodes GROUP BY rack, state`)
	if err != nil {
		return nil, fmt.Errorf("list racks: %w", err)
	}
	defer rows.Close()
	byRack := map[string]*model.RackSummary{}
	for rows.Next() {
		var (
			rack string
			s    model.State
			n    int
		)
		if err := rows.Scan(&rack, &s, &n); err != nil {
			return nil, fmt.Errorf("list racks: %w", err)
		}
		r := byRack[rack]
		if r == nil {
			r = &model.RackSummary{Rack: rack, States: map[model.State]int{}}
			byRack[rack] = r
		}
		r.States[s] += n
		r.Nodes += n
	}
	out := make([]model.RackSummary, 0, len(byRack))
	for _, r := range byRack {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rack < out[j].Rack })
	return out, rows.Err()
}

// Change is one atomic update of a node, with the audit entry that records it
// and, optionally, the API operation it starts or the operations it ends.
type Change struct {
	Node string
	// FromSeq guards against a concurrent writer: the change applies only
	// while the node's Seq is still FromSeq. Negative skips the check.
	FromSeq int64
	To      model.State   // empty: state unchanged
	Desired model.Desired // empty: unchanged
	// Failure is set when To is Failed; any other transition clears it.
	Failure *Failure
	// Identity, when set, replaces what the BMC reported: serial, UUID and
	// MACs (rack, slot and BMC endpoint stay as enrolled when empty).
	Identity *model.Identity
	// Rack and Slot, when Rack is set, record where the node sits (learned
	// from DHCP relay information or the rack manifest).
	Rack      string
	Slot      int
	Inventory json.RawMessage // non-nil: replaces the stored inventory
	Findings  json.RawMessage // non-nil: replaces the stored findings
	Actor     string
	Action    string // audit action, e.g. "state.change", "node.retry"
	Detail    any
	// StartOp records an API operation on the node.
	StartOp string
	// FinishOps ends the node's running operations with this status.
	FinishOps string
}

// Failure is why a node failed and where a retry resumes.
type Failure struct {
	Class   model.FailureClass
	Message string
	From    model.State
}

// Apply makes a Change atomically. It returns ErrConflict when FromSeq no
// longer matches, and the operation it started, if any.
func (db *DB) Apply(ctx context.Context, c Change) (model.Node, *model.Operation, error) {
	var (
		op  *model.Operation
		out model.Node
	)
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		op = nil
		n, err := scanNode(db.queryRow(ctx, tx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, c.Node))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %q: %w", c.Node, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("apply to %s: %w", c.Node, err)
		}
		if c.FromSeq >= 0 && n.Seq != c.FromSeq {
			return fmt.Errorf("node %s moved on (seq %d, expected %d): %w", c.Node, n.Seq, c.FromSeq, ErrConflict)
		}
		from := n.State
		now := micros(db.now())
		detail := map[string]any{}
		set, args := []string{"updated_at = ?"}, []any{now}
		if c.To != "" {
			set = append(set, "state = ?", "seq = seq + 1", "failure_class = ?", "failure_msg = ?", "failed_from = ?")
			f := Failure{}
			if c.Failure != nil {
				f = *c.Failure
			}
			args = append(args, c.To, f.Class, f.Message, f.From)
		}
		if c.Desired != "" {
			set = append(set, "desired = ?")
			args = append(args, c.Desired)
		}
		if id := c.Identity; id != nil {
			macs, err := json.Marshal(nonNil(id.MACs))
			if err != nil {
				return err
			}
			set = append(set, "serial = ?", "uuid = ?", "macs = ?")
			args = append(args, id.Serial, id.UUID, string(macs))
			if err := db.setMACs(ctx, tx, c.Node, id.MACs); err != nil {
				return err
			}
		}
		if c.Rack != "" {
			set = append(set, "rack = ?", "slot = ?")
			args = append(args, c.Rack, c.Slot)
			detail["location"] = fmt.Sprintf("%s/%d", c.Rack, c.Slot)
		}
		if c.Inventory != nil {
			set = append(set, "inventory = ?")
			args = append(args, string(c.Inventory))
		}
		if c.Findings != nil {
			set = append(set, "findings = ?")
			args = append(args, string(c.Findings))
		}
		args = append(args, c.Node)
		if _, err := db.exec(ctx, tx, `UPDATE nodes SET `+strings.Join(set, ", ")+` WHERE name = ?`, args...); err != nil {
			return fmt.Errorf("apply to %s: %w", c.Node, err)
		}
		if c.To != "" {
			detail["from"], detail["to"] = from, c.To
		}
		if c.Desired != "" {
			detail["desired"] = c.Desired
		}
		if c.Failure != nil {
			detail["failureClass"], detail["failureMessage"] = c.Failure.Class, c.Failure.Message
		}
		if c.Detail != nil {
			detail["detail"] = c.Detail
		}
		if c.FinishOps != "" {
			if _, err := db.exec(ctx, tx, `UPDATE operations SET status = ?, finished_at = ?, message = ? WHERE node = ? AND status = ?`,
				c.FinishOps, now, fmt.Sprintf("node reached %s", stateOr(c.To, from)), c.Node, model.OpRunning); err != nil {
				return fmt.Errorf("finish operations of %s: %w", c.Node, err)
			}
		}
		if c.StartOp != "" {
			o := model.Operation{Node: c.Node, Action: c.StartOp, Actor: c.Actor, Status: model.OpRunning, Created: fromMicros(now)}
			var finished *int64
			if c.FinishOps != "" {
				// The change itself brings the node to rest: the new
				// operation is over as soon as it starts.
				o.Status, o.Message, o.Finished, finished = c.FinishOps, "nothing to do: node already there", &o.Created, &now
			}
			if err := db.queryRow(ctx, tx, `INSERT INTO operations (node, action, actor, status, message, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				o.Node, o.Action, o.Actor, o.Status, o.Message, now, finished).Scan(&o.ID); err != nil {
				return fmt.Errorf("record operation on %s: %w", c.Node, err)
			}
			detail["operation"] = o.ID
			op = &o
		}
		outcome := "ok"
		if c.To == model.Failed {
			outcome = "failed"
		}
		if err := db.appendAudit(ctx, tx, AuditInput{Actor: c.Actor, Action: c.Action, Node: c.Node, Outcome: outcome, Detail: detail}); err != nil {
			return err
		}
		// The node as committed, read in the same transaction: the caller
		// needs no second round trip.
		if out, err = scanNode(db.queryRow(ctx, tx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, c.Node)); err != nil {
			return fmt.Errorf("apply to %s: read back: %w", c.Node, err)
		}
		return nil
	})
	if err != nil {
		return model.Node{}, nil, err
	}
	return out, op, nil
}

func stateOr(a, b model.State) model.State {
	if a != "" {
		return a
	}
	return b
}
