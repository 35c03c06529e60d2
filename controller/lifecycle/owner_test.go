package lifecycle_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
)

// An engine restricted to some racks leaves the others' nodes where they
// are, and picks them up once it owns their rack.
func TestEngineDrivesOnlyTheRacksItOwns(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		create(t, db,
			model.Node{Name: "mine", Identity: model.Identity{Rack: "r1", BMC: "b1"}, Desired: model.WantReady},
			model.Node{Name: "theirs", Identity: model.Identity{Rack: "r2", BMC: "b2"}, Desired: model.WantReady})
		eng, err := lifecycle.New(fastConfig(), db, openEdge(t, nil), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ownR2 atomic.Bool
		eng.OwnRacks(func(rack string) bool { return rack == "r1" || rack == "r2" && ownR2.Load() })
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Serve(ctx) }()
		defer func() { cancel(); <-done }()
		waitStates(t, db, map[string]model.State{"mine": model.Ready})
		// Several passes of the engine later, the other rack's node has not moved.
		time.Sleep(100 * time.Millisecond)
		if n, err := db.GetNode(ctx, "theirs"); err != nil || n.State != model.Discovered {
			t.Fatalf("node of a rack not owned: %s, %v; want it left Discovered", n.State, err)
		}
		ownR2.Store(true)
		eng.Wake()
		waitStates(t, db, map[string]model.State{"theirs": model.Ready})
	})
}

// Power-ons in one rack are at least PowerOnStagger apart (with image
// streams limited to one at a time per rack on the way).
func TestPowerOnStagger(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		path := filepath.Join(t.TempDir(), "journal")
		edge, err := simedge.Open(simedge.Config{Journal: path, BootTime: 10 * time.Millisecond, ImageTime: 10 * time.Millisecond, BurnInTime: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { edge.Close() })
		want := map[string]model.State{}
		for i := range 4 {
			name := "s" + string(rune('a'+i))
			create(t, db, model.Node{Name: name, Identity: model.Identity{Rack: "r1", BMC: "bmc-" + name}, Desired: model.WantReady})
			want[name] = model.Ready
		}
		cfg := fastConfig()
		cfg.PowerOnStagger = 150 * time.Millisecond
		cfg.RackStreams = 1
		start := time.Now()
		runUntil(t, db, edge, cfg, want)
		journal, err := simedge.ReadJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		var last time.Time
		boots := 0
		for _, ef := range journal {
			if ef.Action == "boot" {
				boots++
				if ef.At.After(last) {
					last = ef.At
				}
			}
		}
		// Eight power-ons, each turn at least 150ms after the one before:
		// the last cannot come before 7·150ms after the start (a bound
		// that only loosens on a slow machine).
		if boots != 8 || last.Sub(start) < 7*cfg.PowerOnStagger {
			t.Errorf("%d power-ons, the last %s after the start; want 8, the last at least %s after", boots, last.Sub(start), 7*cfg.PowerOnStagger)
		}
	})
}
