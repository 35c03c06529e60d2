// Package store is the controller's durable state: nodes, their step
// timelines, operations and the hash-chained audit log. One implementation
// over database/sql speaks two engines: embedded SQLite (modernc.org/sqlite,
// WAL, the default) and PostgreSQL (pgx), chosen by the DSN.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Sentinel errors; wrap-checked with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict means the row changed under us (another writer moved the
	// node on); the caller re-reads and decides again.
	ErrConflict = errors.New("conflict: changed concurrently")
	// ErrInvalidName: node names must be usable in URLs, keys and hosts.
	ErrInvalidName = errors.New("invalid node name")
)

// DB is an open store.
type DB struct {
	w       *sql.DB // the writer: one connection on SQLite
	r       *sql.DB // readers: the same pool on PostgreSQL
	d       dialect
	dsn     string
	auditMu sync.Mutex // orders audit appends within this process
	now     func() time.Time
	batch   committer // group commit of the lifecycle writes (batch.go)
	stmts   stmts     // prepared statements of the SQLite writer
	rstmts  readStmts // prepared statements of the SQLite readers
	wakes   waiters   // in-process waiters for tasks and check-ins (wake.go)
}

// Options tunes Open. The zero value is the default.
type Options struct {
	// Now replaces the clock (tests).
	Now func() time.Time
	// RelaxedSync makes SQLite commits durable against a process crash but
	// not a power loss (synchronous=NORMAL): for tests on loaded machines,
	// where an fsync per commit dominates. Never for a real controller.
	RelaxedSync bool
}

// Open opens the store named by database: a postgres:// or postgresql:// URL
// selects PostgreSQL; empty selects SQLite in dataDir/rackstrap.db. It
// applies pending migrations before returning.
func Open(ctx context.Context, database, dataDir string, opt Options) (*DB, error) {
	db := &DB{now: opt.Now}
	if db.now == nil {
		db.now = time.Now
	}
	var err error
	switch {
	case strings.HasPrefix(database, "postgres://"), strings.HasPrefix(database, "postgresql://"):
		db.d = postgres
		db.dsn = redactDSN(database)
		db.w, err = sql.Open("pgx", database)
		if err != nil {
			return nil, fmt.Errorf("open postgres %s: %w", db.dsn, err)
		}
		db.w.SetMaxOpenConns(16)
		db.r = db.w
	case database == "" || strings.HasPrefix(database, "sqlite:"):
		db.d = sqlite
		path := strings.TrimPrefix(database, "sqlite:")
		if path == "" {
			if dataDir == "" {
				return nil, errors.New("open store: no --data-dir and no --database given; pass --data-dir DIR for the embedded SQLite store")
			}
			if err := os.MkdirAll(dataDir, 0o750); err != nil {
				return nil, fmt.Errorf("open store: create data dir: %w", err)
			}
			path = filepath.Join(dataDir, "rackstrap.db")
		}
		db.dsn = path
		// synchronous(FULL): a commit is on disk before the side effect it
		// announces; busy_timeout covers the writer/reader handoff.
		sync := "FULL"
		if opt.RelaxedSync {
			sync = "NORMAL"
		}
		// temp_store(MEMORY) keeps the savepoint journals of group commit
		// (batch.go) off the disk; a larger page cache keeps a fleet's hot
		// pages (node rows, index tops, the audit tail) out of pread calls.
		base := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)"
		db.w, err = sql.Open("sqlite", base+"&_pragma=cache_size(-65536)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db.w.SetMaxOpenConns(1)
		db.r, err = sql.Open("sqlite", base+"&_pragma=cache_size(-16384)")
		if err != nil {
			db.w.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db.r.SetMaxOpenConns(4)
	default:
		return nil, fmt.Errorf("open store: unsupported --database %q; use postgres://user@host:port/db or leave it empty for SQLite under --data-dir", redactDSN(database))
	}
	if err := db.w.PingContext(ctx); err != nil {
		db.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("open store %s: %w", db.dsn, ctx.Err()) // stopped, not unreachable
		}
		return nil, fmt.Errorf("open store %s: %w; check that the database is running and reachable", db.dsn, err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Engine names the engine: "sqlite" or "postgres".
func (db *DB) Engine() string { return db.d.name }

// Location is where the store lives, with any password removed.
func (db *DB) Location() string { return db.dsn }

// Close closes the store.
func (db *DB) Close() error {
	db.stopCommitter()
	db.closeStmts()
	db.closeReadStmts()
	var errs []error
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	if db.r != nil && db.r != db.w {
		errs = append(errs, db.r.Close())
	}
	return errors.Join(errs...)
}

// redactDSN hides the password of a URL DSN.
func redactDSN(dsn string) string {
	at := strings.Index(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	cred := dsn[scheme+3 : at]
	if i := strings.Index(cred, ":"); i >= 0 {
		return dsn[:scheme+3] + cred[:i] + ":xxxxx" + dsn[at:]
	}
	return dsn
}

// micros stores times as Unix microseconds: exact on both engines.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// tx runs fn in a write transaction and commits it.
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// q rewrites ? placeholders for the engine.
func (db *DB) q(query string) string { return db.d.rebind(query) }
