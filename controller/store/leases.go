package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// LeaseRow is one DHCP address binding as stored.
type LeaseRow struct {
	IP, MAC, Hostname, State string
	Expires, Updated         time.Time
}

// LoadLeases returns every stored lease.
func (db *DB) LoadLeases(ctx context.Context) ([]LeaseRow, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT ip, mac, hostname, state, expires, updated FROM leases ORDER BY ip`)
	if err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	defer rows.Close()
	var out []LeaseRow
	for rows.Next() {
		var (
			l                LeaseRow
			expires, updated int64
		)
		if err := rows.Scan(&l.IP, &l.MAC, &l.Hostname, &l.State, &expires, &updated); err != nil {
			return nil, fmt.Errorf("load leases: %w", err)
		}
		l.Expires, l.Updated = fromMicros(expires), fromMicros(updated)
		out = append(out, l)
	}
	return out, rows.Err()
}

// CommitLeases upserts a batch of leases in one transaction: one fsync for
// the whole batch (group commit), which is what keeps DHCP throughput up.
func (db *DB) CommitLeases(ctx context.Context, batch []LeaseRow) error {
	if len(batch) == 0 {
		return nil
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, db.q(`INSERT INTO leases (ip, mac, hostname, state, expires, updated) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, hostname = excluded.hostname, state = excluded.state, expires = excluded.expires, updated = excluded.updated`))
		if err != nil {
			return fmt.Errorf("commit leases: %w", err)
		}
		defer stmt.Close()
		for _, l := range batch {
			if _, err := stmt.ExecContext(ctx, l.IP, l.MAC, l.Hostname, l.State, micros(l.Expires), micros(l.Updated)); err != nil {
				return fmt.Errorf("commit lease %s: %w", l.IP, err)
			}
		}
		return nil
	})
}

// NodeByMAC finds the node with a host MAC (lower-case colon form).
func (db *DB) NodeByMAC(ctx context.Context, mac string) (string, error) {
	var name string
	err := db.r.QueryRowContext(ctx, db.q(`SELECT node FROM node_macs WHERE mac = ? ORDER BY node LIMIT 1`), mac).Scan(&name)
	if err == sql.ErrNoRows {
		return "", fmt.Errorf("no node has MAC %s: %w", mac, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("node by MAC %s: %w", mac, err)
	}
	return name, nil
}

// BoundIP is the address bound to one of macs, or "" when none is.
func (db *DB) BoundIP(ctx context.Context, macs []string) (string, error) {
	for _, mac := range macs {
		var ip string
		err := db.r.QueryRowContext(ctx, db.q(`SELECT ip FROM leases WHERE mac = ? AND state = 'bound' ORDER BY updated DESC LIMIT 1`), mac).Scan(&ip)
		if err == nil {
			return ip, nil
		}
		if err != sql.ErrNoRows {
			return "", fmt.Errorf("lease of %s: %w", mac, err)
		}
	}
	return "", nil
}
