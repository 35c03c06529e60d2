package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// migrations are applied in order, each once, each in its own transaction.
// Never edit a released migration: append a new one. {{serial}} is the
// engine's auto-increment key type. Versions 1-7 are listed here; later
// versions are registered by the file that owns the tables (registerMigration
// in an init), so features that land in parallel never edit one list.
// Each version is recorded on its own, so a gap is applied when it arrives.
var migrations = []string{
	// 1: nodes, their timeline, operations, the audit chain.
	`CREATE TABLE nodes (
		name TEXT PRIMARY KEY,
		serial TEXT NOT NULL DEFAULT '',
		uuid TEXT NOT NULL DEFAULT '',
		bmc TEXT NOT NULL DEFAULT '',
		macs TEXT NOT NULL DEFAULT '[]',
		rack TEXT NOT NULL DEFAULT '',
		slot INTEGER NOT NULL DEFAULT 0,
		profile TEXT NOT NULL DEFAULT '',
		desired TEXT NOT NULL,
		state TEXT NOT NULL,
		seq BIGINT NOT NULL DEFAULT 0,
		failure_class TEXT NOT NULL DEFAULT '',
		failure_msg TEXT NOT NULL DEFAULT '',
		failed_from TEXT NOT NULL DEFAULT '',
		inventory TEXT NOT NULL DEFAULT '',
		findings TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX nodes_state ON nodes(state);
	CREATE INDEX nodes_rack ON nodes(rack);
	CREATE TABLE steps (
		id {{serial}},
		node TEXT NOT NULL REFERENCES nodes(name),
		seq BIGINT NOT NULL,
		step TEXT NOT NULL,
		attempt INTEGER NOT NULL,
		idem_key TEXT NOT NULL UNIQUE,
		outcome TEXT NOT NULL,
		class TEXT NOT NULL DEFAULT '',
		message TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL DEFAULT '',
		started_at BIGINT NOT NULL,
		ended_at BIGINT
	);
	CREATE INDEX steps_node ON steps(node, seq, step);
	CREATE TABLE operations (
		id {{serial}},
		node TEXT NOT NULL,
		action TEXT NOT NULL,
		actor TEXT NOT NULL,
		status TEXT NOT NULL,
		message TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		finished_at BIGINT
	);
	CREATE INDEX operations_node ON operations(node, status);
	CREATE TABLE audit (
		seq BIGINT PRIMARY KEY,
		node TEXT NOT NULL DEFAULT '',
		body TEXT NOT NULL,
		prev_hash TEXT NOT NULL,
		hash TEXT NOT NULL
	);
	CREATE INDEX audit_node ON audit(node);`,
	// 2: one-time agent enrolment tokens and agent check-ins.
	`CREATE TABLE agent_tokens (
		token_hash TEXT PRIMARY KEY,
		node TEXT NOT NULL REFERENCES nodes(name),
		phase TEXT NOT NULL,
		issued_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		used_at BIGINT
	);
	CREATE INDEX agent_tokens_node ON agent_tokens(node);
	CREATE TABLE checkins (
		id {{serial}},
		node TEXT NOT NULL REFERENCES nodes(name),
		phase TEXT NOT NULL,
		at BIGINT NOT NULL,
		agent_version TEXT NOT NULL DEFAULT '',
		inventory TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX checkins_node ON checkins(node, phase, at);`,
	// 3: tasks for the in-band agent (image the disk, run burn-in).
	`CREATE TABLE agent_tasks (
		idem_key TEXT PRIMARY KEY,
		node TEXT NOT NULL REFERENCES nodes(name),
		kind TEXT NOT NULL,
		payload TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL,
		result TEXT NOT NULL DEFAULT '',
		message TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX agent_tasks_node ON agent_tasks(node, status);`,
	// 4: side effects an edge started, for replays that cannot ask the
	// machine whether they happened.
	`CREATE TABLE edge_effects (
		idem_key TEXT PRIMARY KEY,
		node TEXT NOT NULL,
		action TEXT NOT NULL,
		at BIGINT NOT NULL
	);`,
	// 5: DHCP leases, committed in batches before they are acknowledged.
	`CREATE TABLE leases (
		ip TEXT PRIMARY KEY,
		mac TEXT NOT NULL DEFAULT '',
		hostname TEXT NOT NULL DEFAULT '',
		state TEXT NOT NULL,
		expires BIGINT NOT NULL,
		updated BIGINT NOT NULL
	);
	CREATE INDEX leases_mac ON leases(mac);`,
	// 6: per-node BMC logins (password sealed by controller/secrets) and
	// the pinned BMC certificate.
	`CREATE TABLE bmc_credentials (
		node TEXT PRIMARY KEY REFERENCES nodes(name),
		username TEXT NOT NULL DEFAULT '',
		password_sealed TEXT NOT NULL DEFAULT '',
		cert_sha256 TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL
	);`,
	// 7: an index from host MAC to node, for the boot-script path.
	`CREATE TABLE node_macs (
		mac TEXT NOT NULL,
		node TEXT NOT NULL REFERENCES nodes(name),
		PRIMARY KEY (mac, node)
	);
	CREATE INDEX node_macs_mac ON node_macs(mac);`,
}

// registered holds the migrations after version 7, keyed by version.
var registered = map[int]string{}

// registerMigration adds migration version, once, from a package init.
// Reserved: 8 fleet/rack ownership, 9 firmware runs, 10 hand-off outbox
// and exports, 11 API tokens and access control, 12 BMC enlistment,
// 13 bundles. Pick the next free number above them for anything else.
func registerMigration(version int, sql string) {
	if version <= len(migrations) {
		panic(fmt.Sprintf("store: migration %d is in the built-in list", version))
	}
	if _, dup := registered[version]; dup {
		panic(fmt.Sprintf("store: migration %d registered twice", version))
	}
	registered[version] = sql
}

// allMigrations returns every known migration in version order.
func allMigrations() []versioned {
	out := make([]versioned, 0, len(migrations)+len(registered))
	for i, m := range migrations {
		out = append(out, versioned{i + 1, m})
	}
	extra := make([]int, 0, len(registered))
	for v := range registered {
		extra = append(extra, v)
	}
	sort.Ints(extra)
	for _, v := range extra {
		out = append(out, versioned{v, registered[v]})
	}
	return out
}

type versioned struct {
	version int
	sql     string
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	all := allMigrations()
	for _, mv := range all {
		version, m := mv.version, mv.sql
		err := db.tx(ctx, func(tx *sql.Tx) error {
			if db.d.lockAudit != "" {
				// Two controllers starting together migrate one at a time.
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(727270000)"); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(strings.ReplaceAll(m, "{{serial}}", db.d.serial), ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), version, micros(db.now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", version, err)
		}
	}
	var newest int
	if err := db.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if known := all[len(all)-1].version; newest > known {
		return fmt.Errorf("store schema is version %d but this rackstrap knows only %d: upgrade rackstrap before opening this store", newest, known)
	}
	return nil
}
