package lifecycle_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time                  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time)                 { c.ns.Store(t.UnixNano()) }
func newClock(t time.Time) *fakeClock                { c := &fakeClock{}; c.Set(t); return c }
func (c *fakeClock) after(d time.Duration) time.Time { return c.Now().Add(d) }

// windowEdge refuses power actions inside [from, to) of its clock with a
// HeldError, as the local policy's power guard does, and counts refusals.
type windowEdge struct {
	lifecycle.Edge
	clock    *fakeClock
	mu       sync.Mutex
	from, to time.Time
	refused  atomic.Int64
}

func (w *windowEdge) set(from, to time.Time) {
	w.mu.Lock()
	w.from, w.to = from, to
	w.mu.Unlock()
}

func (w *windowEdge) refuse() error {
	now := w.clock.Now()
	w.mu.Lock()
	from, to := w.from, w.to
	w.mu.Unlock()
	if now.Before(from) || !now.Before(to) {
		return nil
	}
	w.refused.Add(1)
	return &lifecycle.HeldError{Gate: "test-policy", Rule: "power-windows", Reason: "no power actions during \"maintenance\"", Until: to,
		Err: errors.New("maintenance window")}
}

func (w *windowEdge) Boot(ctx context.Context, n model.Node, key string) error {
	if err := w.refuse(); err != nil {
		return err
	}
	return w.Edge.Boot(ctx, n, key)
}

func (w *windowEdge) PowerOff(ctx context.Context, n model.Node, key string) error {
	if err := w.refuse(); err != nil {
		return err
	}
	return w.Edge.PowerOff(ctx, n, key)
}

func waitHold(t *testing.T, eng *lifecycle.Engine, node, step string) lifecycle.Hold {
	t.Helper()
	deadline := time.Now().Add(180 * time.Second)
	for {
		for _, h := range eng.Holds() {
			if h.Node == node && h.Step == step {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was never held at step %s; holds: %+v", node, step, eng.Holds())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func serve(t *testing.T, eng *lifecycle.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Serve(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func auditCount(t *testing.T, db *store.DB, node string) (map[string]int, []model.AuditEntry) {
	t.Helper()
	entries, err := db.ListAudit(context.Background(), store.AuditFilter{Node: node, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range entries {
		count[e.Action]++
	}
	return count, entries
}

// TestPowerHoldWaitsOutTheWindow: a power action refused by a no-power
// window holds the node (not Failed, no attempt spent), audited with the
// rule, listed by Holds; a controller killed meanwhile resumes the same
// intent (same key) and is held again; when the window ends the node moves
// on, each side effect done once. An operator's decommission inside a
// window is held at its power-off the same way.
func TestPowerHoldWaitsOutTheWindow(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		journal := filepath.Join(t.TempDir(), "journal")
		sim, err := simedge.Open(simedge.Config{Journal: journal, BootTime: 10 * time.Millisecond, ImageTime: 10 * time.Millisecond, BurnInTime: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
		clock := newClock(t0.Add(10 * time.Minute))
		we := &windowEdge{Edge: sim, clock: clock}
		we.set(t0, t0.Add(time.Hour))
		create(t, db, model.Node{Name: "w1", Desired: model.WantReady, Identity: model.Identity{Rack: "r1", Slot: 1, BMC: "sim-bmc-w1"}})

		reg := prometheus.NewRegistry()
		heldGauge := func() float64 {
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "rackstrap_nodes_held" {
					continue
				}
				for _, m := range mf.GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["gate"] == "test-policy" && labels["rule"] == "power-windows" {
						return m.GetGauge().GetValue()
					}
				}
			}
			return 0
		}
		newEngine := func(metrics *lifecycle.Metrics) *lifecycle.Engine {
			eng, err := lifecycle.New(fastConfig(), db, sim, testLogger(t), metrics)
			if err != nil {
				t.Fatal(err)
			}
			eng.SetClock(clock.Now)
			eng.WrapEdge(func(e lifecycle.Edge) lifecycle.Edge { we.Edge = e; return we })
			return eng
		}

		// A: held at the network boot.
		engA := newEngine(nil)
		stopA := serve(t, engA)
		h := waitHold(t, engA, "w1", lifecycle.StepBootNetwork)
		if h.Gate != "test-policy" || h.Rule != "power-windows" || !h.RetryAt.Equal(t0.Add(time.Hour)) || !strings.Contains(h.Reason, "maintenance") {
			t.Errorf("hold = %+v, want the test policy's power-windows rule, retried at the window's end", h)
		}
		// Nothing more happens while the window lasts: no retry before
		// RetryAt (a wait that can only make this check weaker, never fail).
		time.Sleep(200 * time.Millisecond)
		if n := we.refused.Load(); n != 1 {
			t.Errorf("the refused power action was tried %d times inside the window, want once (retry at the window's end)", n)
		}
		if n, _ := db.GetNode(ctx, "w1"); n.State != model.Inspecting {
			t.Errorf("held node is %s, want Inspecting", n.State)
		}
		stopA() // killed while held

		// B: the same intent, still refused: held again, no attempt spent.
		engB := newEngine(lifecycle.NewMetrics(reg))
		stopB := serve(t, engB)
		defer stopB()
		waitHold(t, engB, "w1", lifecycle.StepBootNetwork)
		if g := heldGauge(); g != 1 {
			t.Errorf("rackstrap_nodes_held{power-windows} = %v while held, want 1", g)
		}
		if got := stepNames(t, db, "w1"); !slices.Contains(got, "boot-network#1:running") {
			t.Errorf("timeline while held = %v, want boot-network#1 open (its intent kept)", got)
		}
		clock.Set(t0.Add(2 * time.Hour))
		waitStates(t, db, map[string]model.State{"w1": model.Ready})
		want := []string{
			"enroll#1:succeeded", "set-boot-network#1:succeeded", "boot-network#1:succeeded",
			"wait-netboot-checkin#1:succeeded", "inspect#1:succeeded", "validate#1:succeeded",
			"image#1:succeeded", "set-boot-disk#1:succeeded", "boot-disk#1:succeeded",
			"wait-firstboot-checkin#1:succeeded", "burn-in#1:succeeded",
		}
		if diff := cmp.Diff(want, stepNames(t, db, "w1")); diff != "" {
			t.Errorf("timeline (-want +got):\n%s", diff)
		}
		if len(engB.Holds()) != 0 || heldGauge() != 0 {
			t.Errorf("holds after the window: %+v (gauge %v)", engB.Holds(), heldGauge())
		}

		// An operator's decommission inside a window: held at power-off.
		we.set(clock.after(time.Hour), clock.after(2*time.Hour))
		clock.Set(clock.after(61 * time.Minute))
		if _, err := engB.Act(ctx, lifecycle.Request{Node: "w1", Action: lifecycle.ActDecommission, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		h = waitHold(t, engB, "w1", lifecycle.StepPowerOff)
		if n, _ := db.GetNode(ctx, "w1"); n.State != model.Decommissioning {
			t.Errorf("node held at power-off is %s, want Decommissioning", n.State)
		}
		clock.Set(h.RetryAt)
		waitStates(t, db, map[string]model.State{"w1": model.Enrolled})

		count, entries := auditCount(t, db, "w1")
		if count["node.held"] != 3 || count["node.released"] != 2 {
			t.Errorf("audit: held=%d released=%d, want 3 holds (A, B, power-off) and 2 releases (by B)", count["node.held"], count["node.released"])
		}
		for _, e := range entries {
			if e.Action == "node.held" && (!strings.Contains(string(e.Detail), `"rule":"power-windows"`) || !strings.Contains(string(e.Detail), `"step":`)) {
				t.Errorf("node.held detail %s lacks the rule and step", e.Detail)
			}
		}
		fx := effects(t, sim, journal)
		if fx["w1 boot "] != 2 || fx["w1 power-off "] != 1 {
			t.Errorf("side effects %v: want 2 boots and 1 power-off, each once", fx)
		}
	})
}
