package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// RackLease says which controller drives a rack, until when.
type RackLease struct {
	Rack     string    `json:"rack"`
	Holder   string    `json:"holder"`
	Expires  time.Time `json:"expires"`
	Acquired time.Time `json:"acquired"`
	// Epoch counts the hand-overs of the rack from one holder to another.
	Epoch int64 `json:"epoch"`
}

// NodeRacks lists the racks that have nodes ("" for nodes with none).
func (db *DB) NodeRacks(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT rack FROM nodes ORDER BY rack`)
	if err != nil {
		return nil, fmt.Errorf("list racks: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("list racks: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// AcquireRacks takes or renews holder's lease on each of racks, for ttl
// from now: a rack is taken when nobody holds it, when holder already does,
// or when its holder's lease has expired (the holder died or lost the
// database). It returns the racks holder holds afterwards. Leases of
// several controllers are only as exact as their clocks agree: keep them
// synchronised (NTP), and ttl well above the skew.
func (db *DB) AcquireRacks(ctx context.Context, holder string, racks []string, ttl time.Duration) ([]string, error) {
	var held []string
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		held = held[:0]
		now := db.now()
		for _, rack := range racks {
			res, err := db.exec(ctx, tx, `INSERT INTO rack_leases (rack, holder, expires_at, acquired_at, renewed_at, epoch)
				VALUES (?, ?, ?, ?, ?, 1)
				ON CONFLICT (rack) DO UPDATE SET
					epoch = CASE WHEN rack_leases.holder = excluded.holder THEN rack_leases.epoch ELSE rack_leases.epoch + 1 END,
					acquired_at = CASE WHEN rack_leases.holder = excluded.holder THEN rack_leases.acquired_at ELSE excluded.acquired_at END,
					holder = excluded.holder, expires_at = excluded.expires_at, renewed_at = excluded.renewed_at
				WHERE rack_leases.holder = excluded.holder OR rack_leases.expires_at < ?`,
				rack, holder, micros(now.Add(ttl)), micros(now), micros(now), micros(now))
			if err != nil {
				return fmt.Errorf("lease rack %q: %w", rack, err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				held = append(held, rack)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return held, nil
}

// ReleaseRacks gives up every lease of holder (a clean shutdown), so a
// survivor need not wait for them to expire.
func (db *DB) ReleaseRacks(ctx context.Context, holder string) error {
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `UPDATE rack_leases SET expires_at = 0 WHERE holder = ?`, holder)
		if err != nil {
			return fmt.Errorf("release the racks of %s: %w", holder, err)
		}
		return nil
	})
}

// RackLeases lists every rack lease.
func (db *DB) RackLeases(ctx context.Context) ([]RackLease, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT rack, holder, expires_at, acquired_at, epoch FROM rack_leases ORDER BY rack`)
	if err != nil {
		return nil, fmt.Errorf("list rack leases: %w", err)
	}
	defer rows.Close()
	var out []RackLease
	for rows.Next() {
		var (
			l                 RackLease
			expires, acquired int64
		)
		if err := rows.Scan(&l.Rack, &l.Holder, &expires, &acquired, &l.Epoch); err != nil {
			return nil, fmt.Errorf("list rack leases: %w", err)
		}
		l.Expires, l.Acquired = fromMicros(expires), fromMicros(acquired)
		out = append(out, l)
	}
	return out, rows.Err()
}
