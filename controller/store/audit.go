package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
)

// genesisHash is the PrevHash of the first entry.
const genesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditInput is what a caller says of an action; the store adds the sequence,
// time and chain hashes.
type AuditInput struct {
	Actor   string
	Action  string
	Node    string
	Outcome string
	Detail  any // marshalled to JSON; maps come out with sorted keys
}

// auditBody is the canonical form that is hashed. Field order is fixed by
// the struct and maps marshal with sorted keys, so the bytes are stable.
type auditBody struct {
	Seq     int64           `json:"seq"`
	At      string          `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Node    string          `json:"node,omitempty"`
	Outcome string          `json:"outcome"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

func chainHash(prev, body string) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte(body))
	return hex.EncodeToString(h.Sum(nil))
}

// appendAudit appends one entry inside tx. Callers hold the transaction that
// makes the change the entry describes, so both land or neither does.
func (db *DB) appendAudit(ctx context.Context, tx *sql.Tx, in AuditInput) error {
	seq, prev, cached := db.cachedHead(tx)
	if !cached {
		if db.d.lockAudit != "" {
			if _, err := tx.ExecContext(ctx, db.d.lockAudit); err != nil {
				return fmt.Errorf("audit: lock: %w", err)
			}
		}
		prev = genesisHash
		err := db.queryRow(ctx, tx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("audit: read head: %w", err)
		}
	}
	var (
		detail json.RawMessage
		err    error
	)
	if in.Detail != nil {
		if detail, err = json.Marshal(in.Detail); err != nil {
			return fmt.Errorf("audit: encode detail: %w", err)
		}
	}
	body, err := json.Marshal(auditBody{
		Seq: seq + 1, At: db.now().UTC().Format(time.RFC3339Nano), Actor: in.Actor,
		Action: in.Action, Node: in.Node, Outcome: in.Outcome, Detail: detail,
	})
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	hash := chainHash(prev, string(body))
	_, err = db.exec(ctx, tx, `INSERT INTO audit (seq, node, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?)`,
		seq+1, in.Node, string(body), prev, hash)
	if err != nil {
		return fmt.Errorf("audit: append: %w", err)
	}
	db.setHead(tx, seq+1, hash)
	return nil
}

// Audit appends one entry on its own (an action with no state change).
func (db *DB) Audit(ctx context.Context, in AuditInput) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error { return db.appendAudit(ctx, tx, in) })
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Node  string
	After int64 // entries with seq > After
	Limit int   // 0: 1000
}

// ListAudit returns entries in chain order.
func (db *DB) ListAudit(ctx context.Context, f AuditFilter) ([]model.AuditEntry, error) {
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 1000
	}
	query, args := `SELECT seq, body, prev_hash, hash FROM audit WHERE seq > ?`, []any{f.After}
	if f.Node != "" {
		query += ` AND node = ?`
		args = append(args, f.Node)
	}
	query += ` ORDER BY seq LIMIT ?`
	args = append(args, f.Limit)
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []model.AuditEntry
	for rows.Next() {
		var (
			e    model.AuditEntry
			body string
		)
		if err := rows.Scan(&e.Seq, &body, &e.PrevHash, &e.Hash); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		var b auditBody
		if err := json.Unmarshal([]byte(body), &b); err != nil {
			return nil, fmt.Errorf("list audit: entry %d is not valid JSON (run 'rackstrap audit verify'): %w", e.Seq, err)
		}
		e.At, _ = time.Parse(time.RFC3339Nano, b.At)
		e.Actor, e.Action, e.Node, e.Outcome, e.Detail = b.Actor, b.Action, b.Node, b.Outcome, b.Detail
		out = append(out, e)
	}
	return out, rows.Err()
}

// ChainError names the first entry where the audit chain breaks.
type ChainError struct {
	Seq    int64 // the first bad entry (or where a missing one should be)
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at entry %d: %s", e.Seq, e.Reason)
}

// VerifyResult summarises an intact chain.
type VerifyResult struct {
	Entries int64  `json:"entries"`
	Head    string `json:"headHash"` // record it elsewhere to detect truncation later
}

// VerifyAudit walks the whole chain. It returns a *ChainError at the first
// entry whose bytes, order or predecessor do not match.
func (db *DB) VerifyAudit(ctx context.Context) (VerifyResult, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT seq, node, body, prev_hash, hash FROM audit ORDER BY seq`)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify audit: %w", err)
	}
	defer rows.Close()
	var (
		want = int64(1)
		prev = genesisHash
		res  VerifyResult
	)
	for rows.Next() {
		var (
			seq                        int64
			node, body, prevHash, hash string
		)
		if err := rows.Scan(&seq, &node, &body, &prevHash, &hash); err != nil {
			return res, fmt.Errorf("verify audit: %w", err)
		}
		switch {
		case seq != want:
			return res, &ChainError{Seq: want, Reason: fmt.Sprintf("entry %d is missing (next stored entry is %d)", want, seq)}
		case prevHash != prev:
			return res, &ChainError{Seq: seq, Reason: "its previous-hash does not match the entry before it (an entry was removed, reordered or altered)"}
		case chainHash(prevHash, body) != hash:
			return res, &ChainError{Seq: seq, Reason: "its content does not match its hash (the entry was altered)"}
		}
		var b auditBody
		if err := json.Unmarshal([]byte(body), &b); err != nil {
			return res, &ChainError{Seq: seq, Reason: "its body is not valid JSON"}
		}
		if b.Seq != seq {
			return res, &ChainError{Seq: seq, Reason: fmt.Sprintf("its body says it is entry %d (entries were swapped)", b.Seq)}
		}
		if b.Node != node {
			return res, &ChainError{Seq: seq, Reason: "its node column does not match its body"}
		}
		prev, want = hash, want+1
		res.Entries++
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("verify audit: %w", err)
	}
	res.Head = prev
	return res, nil
}
