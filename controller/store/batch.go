package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Group commit.
//
// The lifecycle writes (step intents and outcomes, state changes, the audit
// entries that describe them) come from thousands of node goroutines at
// once. Committing each on its own costs one fsync per write, which bounds a
// SQLite store at a few hundred writes a second. Instead, each write is a job
// handed to one committer; the committer takes every job waiting, runs them
// in one transaction, each inside its own savepoint (a job that fails rolls
// back alone, the others commit), commits once, and only then answers every
// caller. Durability is unchanged: a caller returns after its write is on
// disk (synchronous=FULL on SQLite, a committed transaction on PostgreSQL).
// There is no added delay: while one batch commits, the next gathers.

// maxBatch bounds the jobs of one transaction, so that one batch never holds
// the writer long.
const maxBatch = 2048

// ErrClosed is returned for writes asked after Close.
var ErrClosed = errors.New("store closed")

// job is one write waiting for the committer.
type job struct {
	ctx  context.Context // the caller's: a job whose caller gave up is skipped
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error
}

// committer owns the batching of one DB.
type committer struct {
	once    sync.Once
	jobs    chan *job
	stop    chan struct{}
	stopped chan struct{}

	// head caches the audit chain's head within the transaction that holds
	// the audit lock, so a batch reads it once instead of once per entry.
	headMu sync.Mutex
	cur    *sql.Tx // the batch's transaction; only it caches the head
	head   *auditHead
}

type auditHead struct {
	tx   *sql.Tx
	seq  int64
	hash string
}

func (db *DB) startCommitter() {
	db.batch.once.Do(func() {
		db.batch.jobs = make(chan *job, 2*maxBatch)
		db.batch.stop = make(chan struct{})
		db.batch.stopped = make(chan struct{})
		go db.commitLoop()
	})
}

// stopCommitter ends the committer after the jobs already queued.
func (db *DB) stopCommitter() {
	db.startCommitter()
	select {
	case <-db.batch.stop:
	default:
		close(db.batch.stop)
	}
	<-db.batch.stopped
}

// write runs fn in a write transaction shared with other writers and
// returns once that transaction is durable (or fn's own error). fn must use
// the ctx it is given (the caller's may end while the batch runs, and a
// cancelled statement would break the whole transaction on PostgreSQL), and
// must not take db.auditMu.
func (db *DB) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db.startCommitter()
	j := &job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case db.batch.jobs <- j:
	case <-db.batch.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, wait for the answer even if ctx ends: the job may be in
	// a transaction being committed, and the caller must know.
	select {
	case err := <-j.done:
		return err
	case <-db.batch.stopped:
		select {
		case err := <-j.done:
			return err
		default:
			return ErrClosed // queued after the committer's last look
		}
	}
}

func (db *DB) commitLoop() {
	defer close(db.batch.stopped)
	batch := make([]*job, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case j := <-db.batch.jobs:
			batch = append(batch, j)
		case <-db.batch.stop:
			// Answer what is left, then stop.
			for {
				select {
				case j := <-db.batch.jobs:
					j.done <- ErrClosed
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case j := <-db.batch.jobs:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		db.runBatch(batch)
	}
}

// runBatch commits batch in one transaction and answers every job.
func (db *DB) runBatch(batch []*job) {
	ctx := context.Background()
	live := batch[:0:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	db.prepareWanted(ctx)
	errs := make([]error, len(live))
	fail := func(err error) {
		for _, j := range live {
			j.done <- err
		}
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	db.batch.headMu.Lock()
	db.batch.cur, db.batch.head = tx, nil
	db.batch.headMu.Unlock()
	defer db.dropHead(tx)
	single := len(live) == 1
	for i, j := range live {
		jctx := context.WithoutCancel(j.ctx)
		if single {
			errs[i] = j.fn(jctx, tx)
			continue
		}
		saved := db.saveHead(tx)
		if _, err := tx.ExecContext(ctx, "SAVEPOINT job"); err != nil {
			tx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		if errs[i] = j.fn(jctx, tx); errs[i] != nil {
			db.restoreHead(tx, saved)
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT job"); err != nil {
				tx.Rollback()
				fail(fmt.Errorf("roll back one write of a batch (%v): %w", errs[i], err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT job"); err != nil {
			tx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if single && errs[0] != nil {
		tx.Rollback()
		live[0].done <- errs[0]
		return
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, j := range live {
		j.done <- errs[i]
	}
}

// cachedHead returns the audit head cached for tx, if any.
func (db *DB) cachedHead(tx *sql.Tx) (seq int64, hash string, ok bool) {
	db.batch.headMu.Lock()
	defer db.batch.headMu.Unlock()
	if h := db.batch.head; h != nil && h.tx == tx && db.batch.cur == tx {
		return h.seq, h.hash, true
	}
	return 0, "", false
}

// setHead records the head tx just appended.
func (db *DB) setHead(tx *sql.Tx, seq int64, hash string) {
	db.batch.headMu.Lock()
	defer db.batch.headMu.Unlock()
	if db.batch.cur == tx {
		db.batch.head = &auditHead{tx: tx, seq: seq, hash: hash}
	}
}

func (db *DB) saveHead(tx *sql.Tx) *auditHead {
	db.batch.headMu.Lock()
	defer db.batch.headMu.Unlock()
	if h := db.batch.head; h != nil && h.tx == tx {
		cp := *h
		return &cp
	}
	return nil
}

func (db *DB) restoreHead(tx *sql.Tx, saved *auditHead) {
	db.batch.headMu.Lock()
	defer db.batch.headMu.Unlock()
	if db.batch.cur == tx {
		db.batch.head = saved
	}
}

func (db *DB) dropHead(tx *sql.Tx) {
	db.batch.headMu.Lock()
	defer db.batch.headMu.Unlock()
	if db.batch.cur == tx {
		db.batch.cur, db.batch.head = nil, nil
	}
}

// stmts caches prepared statements of the SQLite writer: the lifecycle's
// writes are a handful of statements run hundreds of thousands of times, and
// parsing them each time was a quarter of the committer's CPU. PostgreSQL
// (pgx) caches prepared statements itself.
type stmts struct {
	mu     sync.Mutex
	m      map[string]*sql.Stmt // nil value: wanted, not prepared yet
	wanted bool
}

// prepared returns tx's handle on the cached statement for query, or nil
// when there is none yet (or the engine needs none). A statement is
// prepared between transactions (prepareWanted): on SQLite the writer's one
// connection is held by tx, and preparing on the pool now would wait for it
// forever.
func (db *DB) prepared(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if db.d.dollar {
		return nil
	}
	db.stmts.mu.Lock()
	st, ok := db.stmts.m[query]
	if !ok {
		if db.stmts.m == nil {
			db.stmts.m = map[string]*sql.Stmt{}
		}
		db.stmts.m[query] = nil // wanted
		db.stmts.wanted = true
	}
	db.stmts.mu.Unlock()
	if st == nil {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

// prepareWanted prepares the statements asked for since the last call. It
// runs while the committer holds no transaction, and waits for the
// writer's connection without holding stmts.mu: a db.tx transaction that
// holds the connection may be asking prepared() for a statement meanwhile.
func (db *DB) prepareWanted(ctx context.Context) {
	db.stmts.mu.Lock()
	if !db.stmts.wanted {
		db.stmts.mu.Unlock()
		return
	}
	db.stmts.wanted = false
	var queries []string
	for q, st := range db.stmts.m {
		if st == nil {
			queries = append(queries, q)
		}
	}
	db.stmts.mu.Unlock()
	for _, q := range queries {
		st, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			continue // the plain path runs it, and reports its error
		}
		db.stmts.mu.Lock()
		if db.stmts.m != nil && db.stmts.m[q] == nil {
			db.stmts.m[q] = st
			st = nil
		}
		db.stmts.mu.Unlock()
		if st != nil {
			st.Close()
		}
	}
}

// exec runs query in tx through the statement cache.
func (db *DB) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	query = db.q(query)
	if st := db.prepared(ctx, tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// queryRow runs query in tx through the statement cache.
func (db *DB) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	query = db.q(query)
	if st := db.prepared(ctx, tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

func (db *DB) closeStmts() {
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	for _, st := range db.stmts.m {
		if st != nil {
			st.Close()
		}
	}
	db.stmts.m = nil
}
