package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BMCLogin is a node's stored BMC login. The password is sealed (see
// controller/secrets); the store never sees it in clear.
type BMCLogin struct {
	Username       string
	PasswordSealed string
	CertSHA256     string
}

// SetBMCLogin stores a node's BMC login (and audits that it changed, never
// what it is). An existing certificate pin is kept.
func (db *DB) SetBMCLogin(ctx context.Context, node, username, sealed, actor string) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO bmc_credentials (node, username, password_sealed, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (node) DO UPDATE SET username = excluded.username, password_sealed = excluded.password_sealed, updated_at = excluded.updated_at`),
			node, username, sealed, micros(db.now())); err != nil {
			return fmt.Errorf("set BMC login of %s: %w", node, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "bmc.credentials.set", Node: node, Outcome: "ok",
			Detail: map[string]any{"username": username}})
	})
}

// BMCLogin returns a node's stored login, or ErrNotFound.
func (db *DB) BMCLogin(ctx context.Context, node string) (BMCLogin, error) {
	var l BMCLogin
	err := db.r.QueryRowContext(ctx, db.q(`SELECT username, password_sealed, cert_sha256 FROM bmc_credentials WHERE node = ?`), node).
		Scan(&l.Username, &l.PasswordSealed, &l.CertSHA256)
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("BMC login of %s: %w", node, ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("BMC login of %s: %w", node, err)
	}
	return l, nil
}

// PinBMCCert records the certificate a node's BMC presented the first time
// (trust on first use); a pin already there is never replaced here.
func (db *DB) PinBMCCert(ctx context.Context, node, sha256hex, actor string) error {
	if sha256hex == "" {
		return nil
	}
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`INSERT INTO bmc_credentials (node, cert_sha256, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (node) DO UPDATE SET cert_sha256 = excluded.cert_sha256, updated_at = excluded.updated_at WHERE bmc_credentials.cert_sha256 = ''`),
			node, sha256hex, micros(db.now()))
		if err != nil {
			return fmt.Errorf("pin BMC certificate of %s: %w", node, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "bmc.cert.pin", Node: node, Outcome: "ok",
			Detail: map[string]any{"sha256": sha256hex}})
	})
}
