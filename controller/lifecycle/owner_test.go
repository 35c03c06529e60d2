package lifecycle_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
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
