package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/cache"
	"github.com/rackstrap/rackstrap/controller/store"
)

// serve --role rack-cache registers with the controller of --server while
// it runs, serves blobs fetched once from --upstream, and removes its
// registration when stopped.
func TestServeRoleRackCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	api := freeTCPAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctlDone := make(chan error, 1)
	go func() {
		_, err := runCtx(ctx, "serve", "--data-dir", filepath.Join(dir, "data"), "--api-listen", api, "--simulate", "1", "--controller-id", "ctl-a", "--log-level", "warn")
		ctlDone <- err
	}()
	server := "http://" + api
	waitFor(t, ctlDone, func() bool { _, err := run(t, "--server", server, "nodes", "list"); return err == nil })

	blob := make([]byte, 1<<20)
	rand.Read(blob)
	sum := sha256.Sum256(blob)
	digest := hex.EncodeToString(sum[:])
	var upstreamGets atomic.Int64
	boot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamGets.Add(1)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}))
	defer boot.Close()

	listen := freeTCPAddr(t)
	g := &globals{server: server}
	cmd := newServeCmd(g)
	if err := cmd.ParseFlags([]string{"--role", "rack-cache", "--upstream", boot.URL, "--cache-dir", filepath.Join(dir, "cache"),
		"--cache-listen", listen, "--cache-url", "http://" + listen, "--cache-rack", "r9", "--cache-ttl", "30s"}); err != nil {
		t.Fatal(err)
	}
	cacheCtx, stopCache := context.WithCancel(ctx)
	cmd.SetContext(cacheCtx)
	cacheDone := make(chan error, 1)
	go func() {
		ran, err := runServeRole(cmd, g, slog.New(slog.DiscardHandler))
		if !ran {
			err = errors.New("runServeRole did not run the rack-cache role")
		}
		cacheDone <- err
	}()

	caches := func() []store.RackCache {
		out, err := run(t, "--server", server, "-o", "json", "status")
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		var st struct {
			Caches []store.RackCache `json:"rackCaches"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		return st.Caches
	}
	waitFor(t, cacheDone, func() bool { c := caches(); return len(c) == 1 && c[0].Live && c[0].URL == "http://"+listen })

	url, err := cache.BlobURL("http://"+listen, boot.URL+"/image.raw", digest)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(b, blob) {
			t.Fatalf("GET through the cache: %v, %d bytes", err, len(b))
		}
	}
	if n := upstreamGets.Load(); n != 1 {
		t.Errorf("boot server asked %d times, want once", n)
	}
	out, err := run(t, "--server", server, "status")
	if err != nil || !strings.Contains(out, "r9") || !strings.Contains(out, "http://"+listen) {
		t.Errorf("status shows no cache for r9: %v\n%s", err, out)
	}
	// The simulated rack is driven by this controller, holding its lease.
	if !strings.Contains(out, "RACK LEASE") || !strings.Contains(out, "sim-r1") || !strings.Contains(out, "ctl-a") {
		t.Errorf("status shows no lease of sim-r1 held by ctl-a:\n%s", out)
	}

	stopCache()
	select {
	case err := <-cacheDone:
		if err != nil {
			t.Fatalf("rack cache: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the rack cache did not stop")
	}
	if c := caches(); len(c) != 0 {
		t.Errorf("after the cache stopped, registrations = %+v, want none", c)
	}
}

// Bad role settings are refused before anything starts.
func TestServeRoleErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no upstream":   {[]string{"--role", "rack-cache"}, "--upstream"},
		"rack, no url":  {[]string{"--role", "rack-cache", "--upstream", "http://127.0.0.1:1", "--cache-rack", "r1"}, "--cache-url"},
		"bad listen":    {[]string{"--role", "rack-cache", "--upstream", "http://127.0.0.1:1", "--cache-listen", "nowhere"}, "--cache-listen"},
		"bad ttl":       {[]string{"--role", "rack-cache", "--upstream", "http://127.0.0.1:1", "--cache-rack", "r1", "--cache-url", "http://127.0.0.1:9", "--cache-ttl", "1s"}, "--cache-ttl"},
		"bad cache url": {[]string{"--role", "rack-cache", "--upstream", "http://127.0.0.1:1", "--cache-url", "10.0.0.1"}, "--cache-url"},
		"bad upstream":  {[]string{"--role", "rack-cache", "--upstream", "ftp://x", "--cache-dir", t.TempDir()}, "upstream"},
	} {
		g := &globals{server: "http://127.0.0.1:1"}
		cmd := newServeCmd(g)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ran, err := runServeRole(cmd, g, slog.New(slog.DiscardHandler))
		if !ran || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: runServeRole = %v, %v; want an error naming %s", name, ran, err, tc.want)
		}
	}
	g := &globals{}
	cmd := newServeCmd(g)
	cmd.ParseFlags([]string{"--simulate", "1"})
	if ran, _ := runServeRole(cmd, g, slog.New(slog.DiscardHandler)); ran {
		t.Error("runServeRole ran a role for a plain controller")
	}
	if _, err := run(t, "serve", "--role", "cache", "--simulate", "1", "--data-dir", t.TempDir(), "--api-listen", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("serve --role cache = %v, want an error naming --role", err)
	}
}
