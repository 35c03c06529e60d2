package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Migration 14: rack image caches (`rackstrap serve --role rack-cache`).
// A cache registers itself for its rack and renews the registration while
// it runs; while it is unexpired, the rack's nodes fetch their image from
// it instead of from the controller. A cache that stops renewing stops
// being used when its registration expires.
func init() {
	registerMigration(14, `CREATE TABLE rack_caches (
		rack TEXT PRIMARY KEY,
		url TEXT NOT NULL,
		registered_by TEXT NOT NULL,
		registered_at BIGINT NOT NULL,
		renewed_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	)`)
}

// RackCache is a rack image cache's registration.
type RackCache struct {
	Rack string `json:"rack"`
	// URL is where the rack's nodes reach the cache (http://10.1.0.5:8090).
	URL          string    `json:"url"`
	RegisteredBy string    `json:"registeredBy"`
	Registered   time.Time `json:"registered"`
	Renewed      time.Time `json:"renewed"`
	Expires      time.Time `json:"expires"`
	// Live: unexpired, so the rack's nodes are sent to it.
	Live bool `json:"live"`
}

// RegisterRackCache registers (or renews) the cache of rack at url until
// ttl from now. A new registration, a changed URL or the renewal of an
// expired one is audited as rack.cache.register; a plain renewal is not
// (caches renew every few seconds).
func (db *DB) RegisterRackCache(ctx context.Context, rack, url string, ttl time.Duration, actor string) (RackCache, error) {
	if rack == "" || url == "" || ttl <= 0 {
		return RackCache{}, errors.New("register rack cache: a rack, a URL and a positive lifetime are required")
	}
	var out RackCache
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := db.now()
		var (
			oldURL       string
			oldExp, oldR int64
		)
		err := db.queryRow(ctx, tx, `SELECT url, expires_at, registered_at FROM rack_caches WHERE rack = ?`, rack).Scan(&oldURL, &oldExp, &oldR)
		fresh := errors.Is(err, sql.ErrNoRows)
		if err != nil && !fresh {
			return fmt.Errorf("register rack cache %s: %w", rack, err)
		}
		changed := fresh || oldURL != url || oldExp < micros(now)
		registered := micros(now)
		if !changed {
			registered = oldR
		}
		if _, err := db.exec(ctx, tx, `INSERT INTO rack_caches (rack, url, registered_by, registered_at, renewed_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (rack) DO UPDATE SET url = excluded.url, registered_by = excluded.registered_by,
				registered_at = excluded.registered_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at`,
			rack, url, actor, registered, micros(now), micros(now.Add(ttl))); err != nil {
			return fmt.Errorf("register rack cache %s: %w", rack, err)
		}
		out = RackCache{Rack: rack, URL: url, RegisteredBy: actor, Registered: fromMicros(registered), Renewed: fromMicros(micros(now)),
			Expires: fromMicros(micros(now.Add(ttl))), Live: true}
		if !changed {
			return nil
		}
		detail := map[string]any{"rack": rack, "url": url, "ttlSeconds": ttl.Seconds()}
		if !fresh && oldURL != url {
			detail["previousURL"] = oldURL
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "rack.cache.register", Outcome: "ok", Detail: detail})
	})
	return out, err
}

// RemoveRackCache drops rack's cache registration (audited as
// rack.cache.remove); its nodes fetch from the controller again. It
// returns ErrNotFound when rack has none.
func (db *DB) RemoveRackCache(ctx context.Context, rack, actor string) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var url string
		err := db.queryRow(ctx, tx, `SELECT url FROM rack_caches WHERE rack = ?`, rack).Scan(&url)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("rack %s has no registered cache: %w", rack, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("remove rack cache %s: %w", rack, err)
		}
		if _, err := db.exec(ctx, tx, `DELETE FROM rack_caches WHERE rack = ?`, rack); err != nil {
			return fmt.Errorf("remove rack cache %s: %w", rack, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "rack.cache.remove", Outcome: "ok",
			Detail: map[string]any{"rack": rack, "url": url}})
	})
}

// RackCaches lists every registration, live or expired, by rack.
func (db *DB) RackCaches(ctx context.Context) ([]RackCache, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT rack, url, registered_by, registered_at, renewed_at, expires_at FROM rack_caches ORDER BY rack`)
	if err != nil {
		return nil, fmt.Errorf("list rack caches: %w", err)
	}
	defer rows.Close()
	now := db.now()
	out := []RackCache{}
	for rows.Next() {
		var (
			c            RackCache
			reg, ren, ex int64
		)
		if err := rows.Scan(&c.Rack, &c.URL, &c.RegisteredBy, &reg, &ren, &ex); err != nil {
			return nil, fmt.Errorf("list rack caches: %w", err)
		}
		c.Registered, c.Renewed, c.Expires = fromMicros(reg), fromMicros(ren), fromMicros(ex)
		c.Live = c.Expires.After(now)
		out = append(out, c)
	}
	return out, rows.Err()
}

// LiveRackCache returns the URL of rack's cache while its registration is
// unexpired; ok is false when the rack has none (its nodes fetch from the
// controller).
func (db *DB) LiveRackCache(ctx context.Context, rack string) (url string, ok bool, err error) {
	err = db.r.QueryRowContext(ctx, db.q(`SELECT url FROM rack_caches WHERE rack = ? AND expires_at > ?`), rack, micros(db.now())).Scan(&url)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("rack cache of %s: %w", rack, err)
	}
	return url, true, nil
}
