package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

func testStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func bearer(path, tok string) *http.Request {
	r := httptest.NewRequest("GET", path, nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

// TestTokenLifetime: a token works until it expires, its last use is
// recorded at most once a minute, and the refusal names the remedy.
func TestTokenLifetime(t *testing.T) {
	t.Parallel()
	db := testStore(t)
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	a, err := New(Config{Store: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	out, err := CreateToken(ctx, db, TokenRequest{Name: "ci", Role: "operator", TTL: "2h"}, clk.now(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if caller, err := a.Authorize(bearer("/api/v1/nodes", out.Secret), api.PermOperate); err != nil || caller != "token:ci" {
		t.Fatalf("Authorize = %q, %v", caller, err)
	}
	first, _ := db.APITokenByHash(ctx, HashToken(out.Secret))
	if first.LastUsedAt == nil {
		t.Fatal("last use not recorded")
	}
	clk.add(30 * time.Second)
	a.Authorize(bearer("/api/v1/nodes", out.Secret), api.PermRead)
	if got, _ := db.APITokenByHash(ctx, HashToken(out.Secret)); !got.LastUsedAt.Equal(*first.LastUsedAt) {
		t.Error("last use rewritten within a minute")
	}
	clk.add(time.Minute)
	a.Authorize(bearer("/api/v1/nodes", out.Secret), api.PermRead)
	if got, _ := db.APITokenByHash(ctx, HashToken(out.Secret)); !got.LastUsedAt.After(*first.LastUsedAt) {
		t.Error("last use not updated after a minute")
	}
	clk.add(2 * time.Hour)
	_, err = a.Authorize(bearer("/api/v1/nodes", out.Secret), api.PermRead)
	if err == nil || !strings.Contains(err.Error(), "expired on") {
		t.Errorf("expired token: %v", err)
	}
}

// TestRefusalsAreSummarised: a flood of varied refused calls becomes one
// audit entry with the exact total and a bounded list.
func TestRefusalsAreSummarised(t *testing.T) {
	t.Parallel()
	db := testStore(t)
	ctx := context.Background()
	var logs strings.Builder
	var logMu sync.Mutex
	a, err := New(Config{Store: db, Log: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil)), SummaryEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	viewer, _ := CreateToken(ctx, db, TokenRequest{Name: "v", Role: "viewer"}, time.Now(), "test")
	const flood = 2000
	for i := range flood {
		r := bearer(fmt.Sprintf("/api/v1/nodes/n%d/actions", i), "")
		r.RemoteAddr = fmt.Sprintf("10.0.%d.%d:4000", i/250, i%250)
		if _, err := a.Authorize(r, api.PermOperate); err == nil {
			t.Fatal("a call without credentials was allowed")
		}
	}
	if _, err := a.Authorize(bearer("/api/v1/tokens", viewer.Secret), api.PermAdmin); err == nil || !strings.Contains(err.Error(), "role viewer") {
		t.Fatalf("viewer on an admin route: %v", err)
	}
	logMu.Lock()
	lines := strings.Count(logs.String(), "\n")
	logMu.Unlock()
	if lines != maxRefusalKeys+1 {
		t.Errorf("a flood of %d refusals logged %d lines, want %d", flood, lines, maxRefusalKeys+1)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Serve(sctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, _ := db.ListAudit(ctx, store.AuditFilter{})
		var got []json.RawMessage
		for _, e := range list {
			if e.Action == "auth.refused" {
				got = append(got, e.Detail)
			}
		}
		if len(got) == 1 {
			var d struct {
				Total         int
				Refusals      []Refusal
				Uncategorised int
			}
			json.Unmarshal(got[0], &d)
			if d.Total != flood+1 || len(d.Refusals) != maxRefusalKeys || d.Uncategorised != flood+1-maxRefusalKeys {
				t.Errorf("summary: total %d, %d kinds, %d uncategorised", d.Total, len(d.Refusals), d.Uncategorised)
			}
			if d.Refusals[0].Reason != "no-credentials" && d.Refusals[0].Reason != "role" {
				t.Errorf("first refusal kind = %+v", d.Refusals[0])
			}
			break
		}
		if len(got) > 1 || time.Now().After(deadline) {
			t.Fatalf("auth.refused entries: %d", len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	list, _ := db.ListAudit(ctx, store.AuditFilter{})
	n := 0
	for _, e := range list {
		if e.Action == "auth.refused" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("an idle window wrote a summary: %d entries", n)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
