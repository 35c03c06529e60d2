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
	m  map[string]*waitEntry
}

// waitEntry is one key's channel and how many waiters hold it: the entry
// goes when it is woken or its last waiter stops, so keys nobody wakes
// again (a finished task's) do not pile up.
type waitEntry struct {
	ch chan struct{}
	n  int
}

// wait returns a channel closed at the next wake of key, and stop, which
// the waiter calls when it no longer waits. Take it before reading the
// store, so that a change between the read and the wait is not missed.
func (w *waiters) wait(key string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]*waitEntry{}
	}
	e := w.m[key]
	if e == nil {
		e = &waitEntry{ch: make(chan struct{})}
		w.m[key] = e
	}
	e.n++
	var once sync.Once
	return e.ch, func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if e.n--; e.n == 0 && w.m[key] == e {
				delete(w.m, key)
			}
		})
	}
}

func (w *waiters) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.m[key]; ok {
		close(e.ch)
		delete(w.m, key)
	}
}

// The keys waiters wait on.
func taskAddedKey(node string) string   { return "task-added\x00" + node }
func taskFinishedKey(key string) string { return "task-finished\x00" + key }
func checkedInKey(node string) string   { return "checked-in\x00" + node }

// TaskAdded returns a channel closed when this process next adds a task
// for node (PutTask), and stop, to call once no longer waiting.
func (db *DB) TaskAdded(node string) (<-chan struct{}, func()) {
	return db.wakes.wait(taskAddedKey(node))
}

// TaskFinished returns a channel closed when this process next records
// the result of the task with key (FinishTask), and stop.
func (db *DB) TaskFinished(key string) (<-chan struct{}, func()) {
	return db.wakes.wait(taskFinishedKey(key))
}

// CheckedIn returns a channel closed when this process next records a
// check-in of node (RecordCheckIn), and stop.
func (db *DB) CheckedIn(node string) (<-chan struct{}, func()) {
	return db.wakes.wait(checkedInKey(node))
}

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
