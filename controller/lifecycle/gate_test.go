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

// switchGate holds nodes from one guarded state until opened.
type switchGate struct {
	guard model.State
	open  atomic.Bool
	asked atomic.Int64
}

func (g *switchGate) Name() string { return "test-gate" }

func (g *switchGate) Hold(_ context.Context, n model.Node, next model.State) (string, error) {
	g.asked.Add(1)
	if next == g.guard && !g.open.Load() {
		return "firmware BIOS 1.0 is behind baseline 2.0", nil
	}
	return "", nil
}

// TestGateHoldsThenReleases: a gate keeps a validated node out of Imaging,
// once on the timeline however many passes, and lets it go when it opens.
func TestGateHoldsThenReleases(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		create(t, db, model.Node{Name: "g1", Desired: model.WantHandedOff, Profile: "qemu-vm", Identity: model.Identity{Rack: "r1", Slot: 1, BMC: "sim-bmc-g1"}})
		eng, err := lifecycle.New(fastConfig(), db, openEdge(t, nil), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		imaging := &switchGate{guard: model.Imaging}
		handoff := &switchGate{guard: model.HandedOff}
		eng.AddGate(imaging)
		eng.AddGate(handoff)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- eng.Serve(runCtx) }()
		defer func() { cancel(); <-done }()

		waitStates(t, db, map[string]model.State{"g1": model.Validated})
		for start := imaging.asked.Load(); imaging.asked.Load() < start+5; {
			time.Sleep(10 * time.Millisecond)
		}
		if n, _ := db.GetNode(ctx, "g1"); n.State != model.Validated {
			t.Fatalf("a held node moved on to %s", n.State)
		}
		imaging.open.Store(true)
		waitStates(t, db, map[string]model.State{"g1": model.Ready})
		for start := handoff.asked.Load(); handoff.asked.Load() < start+3; {
			time.Sleep(10 * time.Millisecond)
		}
		if n, _ := db.GetNode(ctx, "g1"); n.State != model.Ready {
			t.Fatalf("a node held from hand-off moved on to %s", n.State)
		}
		handoff.open.Store(true)
		waitStates(t, db, map[string]model.State{"g1": model.HandedOff})

		entries, err := db.ListAudit(ctx, store.AuditFilter{Node: "g1"})
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, e := range entries {
			count[e.Action]++
		}
		if count["node.held"] != 2 || count["node.released"] != 2 {
			t.Errorf("want each hold and release audited once per gate, got held=%d released=%d", count["node.held"], count["node.released"])
		}
	})
}

// TestActRedecidesWhenTheNodeMoves: an operator's provision on a node that
// the engine is moving (enrolling it) is decided again on the moved node,
// not refused as a conflict.
func TestActRedecidesWhenTheNodeMoves(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var names []string
		for i := 1; i <= 12; i++ {
			n := model.Node{Name: "a" + string(rune('a'+i)), Desired: model.WantEnrolled, Profile: "qemu-vm",
				Identity: model.Identity{Rack: "r1", Slot: i, BMC: "sim-bmc"}}
			create(t, db, n)
			names = append(names, n.Name)
		}
		eng, err := lifecycle.New(fastConfig(), db, openEdge(t, nil), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- eng.Serve(runCtx) }()
		defer func() { cancel(); <-done }()
		// Ask while the engine enrols them: some asks land between a
		// node's read and its move.
		want := map[string]model.State{}
		for _, name := range names {
			if _, err := eng.Act(ctx, lifecycle.Request{Node: name, Action: lifecycle.ActProvision, Actor: "test"}); err != nil {
				t.Fatalf("provision %s while it is enrolled: %v", name, err)
			}
			want[name] = model.Ready
		}
		waitStates(t, db, want)
	})
}
