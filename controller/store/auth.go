package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

func init() {
	// 11: API tokens (only a hash of the secret is kept) and the client
	// certificates the controller's CA issued or that were revoked.
	registerMigration(11, `CREATE TABLE api_tokens (
		id {{serial}},
		name TEXT NOT NULL,
		token_hash TEXT NOT NULL UNIQUE,
		role TEXT NOT NULL,
		created_by TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		revoked_at BIGINT,
		last_used_at BIGINT
	);
	CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;
	CREATE TABLE client_certs (
		serial TEXT PRIMARY KEY,
		user_name TEXT NOT NULL DEFAULT '',
		role TEXT NOT NULL DEFAULT '',
		sha256 TEXT NOT NULL DEFAULT '',
		issued_by TEXT NOT NULL DEFAULT '',
		issued_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		revoked_at BIGINT
	);`)
}

// ErrExists means a live record with that name already exists.
var ErrExists = errors.New("already exists")

// APIToken is an API token's record; the secret itself is never stored.
type APIToken struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	CreatedBy  string     `json:"createdBy"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  time.Time  `json:"expiresAt"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

const tokenCols = `id, name, role, created_by, created_at, expires_at, revoked_at, last_used_at`

func scanToken(sc interface{ Scan(...any) error }) (APIToken, error) {
	var (
		t                APIToken
		created, expires int64
		revoked, used    sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &created, &expires, &revoked, &used); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	if revoked.Valid {
		at := fromMicros(revoked.Int64)
		t.RevokedAt = &at
	}
	if used.Valid {
		at := fromMicros(used.Int64)
		t.LastUsedAt = &at
	}
	return t, nil
}

// CreateAPIToken records a token (name, role, expiry) under the hash of its
// secret, and audits it. A live (unrevoked) token of the same name is
// ErrExists.
func (db *DB) CreateAPIToken(ctx context.Context, name, role, hash string, expires time.Time, actor string) (APIToken, error) {
	now := db.now()
	var out APIToken
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM api_tokens WHERE name = ? AND revoked_at IS NULL`), name).Scan(&n); err != nil {
			return fmt.Errorf("create API token %s: %w", name, err)
		}
		if n > 0 {
			return fmt.Errorf("API token %q: %w", name, ErrExists)
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO api_tokens (name, token_hash, role, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`),
			name, hash, role, actor, micros(now), micros(expires)); err != nil {
			return fmt.Errorf("create API token %s: %w", name, err)
		}
		var err error
		out, err = scanToken(tx.QueryRowContext(ctx, db.q(`SELECT `+tokenCols+` FROM api_tokens WHERE token_hash = ?`), hash))
		if err != nil {
			return fmt.Errorf("create API token %s: %w", name, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "auth.token.create", Outcome: "ok",
			Detail: map[string]any{"name": name, "role": role, "id": out.ID, "expiresAt": expires.UTC().Format(time.RFC3339)}})
	})
	return out, err
}

// APITokenByHash finds a token by the hash of its secret (ErrNotFound).
func (db *DB) APITokenByHash(ctx context.Context, hash string) (APIToken, error) {
	t, err := scanToken(db.r.QueryRowContext(ctx, db.q(`SELECT `+tokenCols+` FROM api_tokens WHERE token_hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("API token: %w", ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("API token: %w", err)
	}
	return t, nil
}

// ListAPITokens lists every token, revoked ones included, oldest first.
func (db *DB) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+tokenCols+` FROM api_tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	defer rows.Close()
	out := []APIToken{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list API tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeAPIToken revokes the live token called name, and audits it.
func (db *DB) RevokeAPIToken(ctx context.Context, name, actor string) (APIToken, error) {
	now := db.now()
	var out APIToken
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = scanToken(tx.QueryRowContext(ctx, db.q(`SELECT `+tokenCols+` FROM api_tokens WHERE name = ? AND revoked_at IS NULL`), name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("API token %q (unrevoked): %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke API token %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE api_tokens SET revoked_at = ? WHERE id = ?`), micros(now), out.ID); err != nil {
			return fmt.Errorf("revoke API token %s: %w", name, err)
		}
		at := fromMicros(micros(now))
		out.RevokedAt = &at
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "auth.token.revoke", Outcome: "ok",
			Detail: map[string]any{"name": name, "role": out.Role, "id": out.ID}})
	})
	return out, err
}

// TouchAPIToken records that token id was used at at (not audited).
func (db *DB) TouchAPIToken(ctx context.Context, id int64, at time.Time) error {
	if _, err := db.w.ExecContext(ctx, db.q(`UPDATE api_tokens SET last_used_at = ? WHERE id = ?`), micros(at), id); err != nil {
		return fmt.Errorf("record use of API token %d: %w", id, err)
	}
	return nil
}

// ClientCert is a client certificate the controller issued, or a
// revocation of one it did not.
type ClientCert struct {
	Serial    string     `json:"serial"` // hex, lowercase
	User      string     `json:"user,omitempty"`
	Role      string     `json:"role,omitempty"`
	SHA256    string     `json:"sha256,omitempty"`
	IssuedBy  string     `json:"issuedBy,omitempty"`
	IssuedAt  time.Time  `json:"issuedAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

const certCols = `serial, user_name, role, sha256, issued_by, issued_at, expires_at, revoked_at`

func scanCert(sc interface{ Scan(...any) error }) (ClientCert, error) {
	var (
		c               ClientCert
		issued, expires int64
		revoked         sql.NullInt64
	)
	if err := sc.Scan(&c.Serial, &c.User, &c.Role, &c.SHA256, &c.IssuedBy, &issued, &expires, &revoked); err != nil {
		return c, err
	}
	c.IssuedAt, c.ExpiresAt = fromMicros(issued), fromMicros(expires)
	if revoked.Valid {
		at := fromMicros(revoked.Int64)
		c.RevokedAt = &at
	}
	return c, nil
}

// RecordClientCert records an issued certificate and audits it.
func (db *DB) RecordClientCert(ctx context.Context, c ClientCert) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO client_certs (serial, user_name, role, sha256, issued_by, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			c.Serial, c.User, c.Role, c.SHA256, c.IssuedBy, micros(c.IssuedAt), micros(c.ExpiresAt)); err != nil {
			return fmt.Errorf("record client certificate %s: %w", c.Serial, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: c.IssuedBy, Action: "auth.cert.issue", Outcome: "ok",
			Detail: map[string]any{"serial": c.Serial, "user": c.User, "role": c.Role, "sha256": c.SHA256, "expiresAt": c.ExpiresAt.UTC().Format(time.RFC3339)}})
	})
}

// ListClientCerts lists issued and revoked certificates, oldest first.
func (db *DB) ListClientCerts(ctx context.Context) ([]ClientCert, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+certCols+` FROM client_certs ORDER BY issued_at, serial`)
	if err != nil {
		return nil, fmt.Errorf("list client certificates: %w", err)
	}
	defer rows.Close()
	out := []ClientCert{}
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, fmt.Errorf("list client certificates: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RevokeClientCert revokes the certificate with serial (lowercase hex), and
// audits it. A serial the controller did not issue (a certificate from an
// operator-given CA) is recorded as revoked all the same. Revoking twice
// is ErrNotFound.
func (db *DB) RevokeClientCert(ctx context.Context, serial, actor string) (ClientCert, error) {
	now := db.now()
	var out ClientCert
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = scanCert(tx.QueryRowContext(ctx, db.q(`SELECT `+certCols+` FROM client_certs WHERE serial = ?`), serial))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			out = ClientCert{Serial: serial, IssuedAt: fromMicros(micros(now)), ExpiresAt: fromMicros(micros(now))}
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO client_certs (serial, issued_at, expires_at) VALUES (?, ?, ?)`), serial, micros(now), micros(now)); err != nil {
				return fmt.Errorf("revoke client certificate %s: %w", serial, err)
			}
		case err != nil:
			return fmt.Errorf("revoke client certificate %s: %w", serial, err)
		case out.RevokedAt != nil:
			return fmt.Errorf("client certificate %s is already revoked: %w", serial, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE client_certs SET revoked_at = ? WHERE serial = ?`), micros(now), serial); err != nil {
			return fmt.Errorf("revoke client certificate %s: %w", serial, err)
		}
		at := fromMicros(micros(now))
		out.RevokedAt = &at
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "auth.cert.revoke", Outcome: "ok",
			Detail: map[string]any{"serial": serial, "user": out.User, "role": out.Role}})
	})
	return out, err
}

// ClientCertRevoked says whether the certificate with serial was revoked.
func (db *DB) ClientCertRevoked(ctx context.Context, serial string) (bool, error) {
	var n int
	if err := db.r.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM client_certs WHERE serial = ? AND revoked_at IS NOT NULL`), serial).Scan(&n); err != nil {
		return false, fmt.Errorf("client certificate %s: %w", serial, err)
	}
	return n > 0, nil
}
