package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/cache"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
)

// A rack whose image cache is registered takes its image through the
// cache: the cache fetches the signed image once from the controller's
// boot server, every node of the rack streams it from the cache, and every
// node reaches Ready with the digest the controller checks.
func TestRackCacheThroughTheController(t *testing.T) {
	t.Parallel()
	const nodes = 5
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	l, err := Prepare(Config{Rack: "rc", Nodes: nodes, Dir: filepath.Join(dir, "artifacts"), ImageSize: 4 << 20, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := controller.Config{DataDir: filepath.Join(dir, "data"), APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: l.Boot,
		Features: []controller.Feature{controller.FleetAPI{}},
		Engine: lifecycle.Config{MaxAttempts: 2, BackoffBase: 50 * time.Millisecond, Poll: 50 * time.Millisecond,
			Deadlines: map[string]time.Duration{lifecycle.StepWaitNetboot: 2 * time.Minute, lifecycle.StepWaitFirstBoot: 2 * time.Minute}}}
	ctl, done := startController(ctx, t, cfg, log)

	c, err := cache.New(cache.Config{Upstream: l.Boot.BootBase, Dir: filepath.Join(dir, "cache"), Addr: netip.MustParseAddrPort("127.0.0.1:0"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- c.Serve(ctx) }()
	<-c.Ready()
	if _, err := ctl.Store.RegisterRackCache(ctx, "rc", "http://"+c.Addr().String(), time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		if _, _, err := ctl.Store.CreateNode(ctx, n, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		ready := 0
		var states []string
		for _, n := range l.Nodes {
			got, err := ctl.Store.GetNode(ctx, n.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got.State == model.Ready {
				ready++
			}
			states = append(states, fmt.Sprintf("%s %s %s", got.Name, got.State, got.FailureMsg))
		}
		if ready == nodes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes Ready: %v (hosts by stage %v, cache %+v)", ready, nodes, states, l.Stages(), c.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
	size := uint64(4 << 20) // the raw artifact is ImageSize bytes
	s := c.Stats()
	if s.Fetches != 1 || s.UpstreamBytes != size || s.ServedBytes < nodes*size {
		t.Errorf("cache Stats() = %+v, want 1 upstream fetch of %d bytes and at least %d bytes served", s, size, nodes*size)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("controller stopped with %v", err)
	}
	if err := <-cacheDone; err != nil {
		t.Errorf("cache: %v", err)
	}
}
