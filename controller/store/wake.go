package store

import (
	"context"
	"database/sql"
	"sync"
)

// waiters wake the goroutines of this process that wait for a row to
// appear or change: an agent's long poll for its next task, the lifecycle
// waiting for a check-in or a task result. Without them each waiter polls
// the store, and thousands of idle waiters cost more than the work. They
// only shorten waits: with several controllers on one database, a change
// another controller makes wakes nobody here, so waiters still re-read the
// store now and then.
type waiters struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// wait returns a channel closed at the next wake of key. Take it before
// reading the store, so that a change between the read and the wait is not
// missed.
func (w *waiters) wait(key string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]chan struct{}{}
	}
	ch, ok := w.m[key]
	if !ok {
		ch = make(chan struct{})
		w.m[key] = ch
	}
	return ch
}

func (w *waiters) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.m[key]; ok {
		close(ch)
		delete(w.m, key)
	}
}

// TaskAdded returns a channel closed when this process next adds a task
// for node (PutTask).
func (db *DB) TaskAdded(node string) <-chan struct{} { return db.wakes.wait("task-added\x00" + node) }

// TaskFinished returns a channel closed when this process next records
// the result of the task with key (FinishTask).
func (db *DB) TaskFinished(key string) <-chan struct{} {
	return db.wakes.wait("task-finished\x00" + key)
}

// CheckedIn returns a channel closed when this process next records a
// check-in of node (RecordCheckIn).
func (db *DB) CheckedIn(node string) <-chan struct{} { return db.wakes.wait("checked-in\x00" + node) }

// readStmts caches prepared statements of the SQLite readers' pool for
// the reads every waiting agent and node repeats (its session, its next
// task, its latest check-in): parsing them again on each poll cost more
// than running them. PostgreSQL (pgx) caches prepared statements itself.
type readStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// read runs a one-row read on the readers' pool, through the cache
// on SQLite.
func (db *DB) read(ctx context.Context, query string, args ...any) *sql.Row {
	query = db.q(query)
	if db.d.dollar {
		return db.r.QueryRowContext(ctx, query, args...)
	}
	db.rstmts.mu.Lock()
	st, ok := db.rstmts.m[query]
	db.rstmts.mu.Unlock()
	if !ok {
		var err error
		if st, err = db.r.PrepareContext(ctx, query); err != nil {
			return db.r.QueryRowContext(ctx, query, args...) // reports the error
		}
		db.rstmts.mu.Lock()
		if prev, ok := db.rstmts.m[query]; ok {
			st.Close()
			st = prev
		} else {
			if db.rstmts.m == nil {
				db.rstmts.m = map[string]*sql.Stmt{}
			}
			db.rstmts.m[query] = st
		}
		db.rstmts.mu.Unlock()
	}
	return st.QueryRowContext(ctx, args...)
}

func (db *DB) closeReadStmts() {
	db.rstmts.mu.Lock()
	defer db.rstmts.mu.Unlock()
	for _, st := range db.rstmts.m {
		st.Close()
	}
	db.rstmts.m = nil
}
