package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Token errors: the agent must not retry with the same token.
var (
	ErrTokenInvalid = errors.New("unknown enrolment token")
	ErrTokenUsed    = errors.New("enrolment token already used")
	ErrTokenExpired = errors.New("enrolment token expired")
	ErrWrongPhase   = errors.New("enrolment token is for another boot phase")
)

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// IssueToken makes a one-time enrolment token bound to a node and a boot
// phase, valid for ttl. Only its hash is stored; the token itself goes into
// the node's boot script or first-boot configuration and nowhere else.
func (db *DB) IssueToken(ctx context.Context, node, phase string, ttl time.Duration, actor string) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	now := db.now()
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO agent_tokens (token_hash, node, phase, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
			hashToken(token), node, phase, micros(now), micros(now.Add(ttl))); err != nil {
			return fmt.Errorf("issue token for %s: %w", node, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "agent.token.issue", Node: node, Outcome: "ok",
			Detail: map[string]any{"phase": phase, "expiresAt": now.Add(ttl).UTC().Format(time.RFC3339)}})
	})
	return token, err
}

// CheckIn is one agent check-in.
type CheckIn struct {
	Node         string          `json:"node"`
	Phase        string          `json:"phase"`
	At           time.Time       `json:"at"`
	AgentVersion string          `json:"agentVersion,omitempty"`
	Inventory    json.RawMessage `json:"inventory,omitempty"`
}

// RecordCheckIn spends a token and records the check-in it authorises. It
// returns the node the token is bound to: the agent is pinned to that node
// whatever it claims about itself.
func (db *DB) RecordCheckIn(ctx context.Context, token, phase, agentVersion string, inventory json.RawMessage, actor string) (string, error) {
	now := db.now()
	var node string
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var (
			tokPhase string
			expires  int64
			used     sql.NullInt64
		)
		err := tx.QueryRowContext(ctx, db.q(`SELECT node, phase, expires_at, used_at FROM agent_tokens WHERE token_hash = ?`), hashToken(token)).
			Scan(&node, &tokPhase, &expires, &used)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrTokenInvalid
		case err != nil:
			return fmt.Errorf("check in: %w", err)
		case used.Valid:
			return ErrTokenUsed
		case micros(now) > expires:
			return ErrTokenExpired
		case tokPhase != phase:
			return fmt.Errorf("%w: token is for %s, agent says %s", ErrWrongPhase, tokPhase, phase)
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE agent_tokens SET used_at = ? WHERE token_hash = ?`), micros(now), hashToken(token)); err != nil {
			return fmt.Errorf("check in: %w", err)
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO checkins (node, phase, at, agent_version, inventory) VALUES (?, ?, ?, ?, ?)`),
			node, phase, micros(now), agentVersion, string(inventory)); err != nil {
			return fmt.Errorf("check in: %w", err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "agent.checkin", Node: node, Outcome: "ok",
			Detail: map[string]any{"phase": phase, "agentVersion": agentVersion}})
	})
	if err != nil {
		return "", err
	}
	db.wakes.wake(checkedInKey(node))
	return node, nil
}

// LatestCheckIn returns the newest check-in of node for phase at or after
// since, or nil when there is none yet.
func (db *DB) LatestCheckIn(ctx context.Context, node, phase string, since time.Time) (*CheckIn, error) {
	var (
		c   = CheckIn{Node: node, Phase: phase}
		at  int64
		inv string
	)
	err := db.read(ctx, `SELECT at, agent_version, inventory FROM checkins WHERE node = ? AND phase = ? AND at >= ? ORDER BY at DESC LIMIT 1`,
		node, phase, micros(since)).Scan(&at, &c.AgentVersion, &inv)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latest check-in of %s: %w", node, err)
	}
	c.At = fromMicros(at)
	if inv != "" {
		c.Inventory = json.RawMessage(inv)
	}
	return &c, nil
}

// LastStepStart is when the newest attempt of any of steps began for node
// (zero when none did): a check-in counts only after the boot that caused it.
func (db *DB) LastStepStart(ctx context.Context, node string, steps ...string) (time.Time, error) {
	var latest time.Time
	for _, s := range steps {
		var v sql.NullInt64
		if err := db.read(ctx, `SELECT MAX(started_at) FROM steps WHERE node = ? AND step = ?`, node, s).Scan(&v); err != nil {
			return latest, fmt.Errorf("last %s of %s: %w", s, node, err)
		}
		if v.Valid && fromMicros(v.Int64).After(latest) {
			latest = fromMicros(v.Int64)
		}
	}
	return latest, nil
}
