package lifecycle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/test/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	if pg, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle tests need a real PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// onBoth runs a test body on SQLite and on PostgreSQL.
func onBoth(t *testing.T, body func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		body(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn, err := pg.NewDatabase("lifecycle")
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(context.Background(), dsn, "", store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		body(t, db)
	})
}

func fastConfig() lifecycle.Config {
	return lifecycle.Config{
		Workers: 8, RackLimit: 4, MaxAttempts: 3,
		BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		// Generous: a loaded CI machine must not turn a wait into a retry.
		DefaultDeadline: 30 * time.Second,
		Deadlines:       map[string]time.Duration{lifecycle.StepWaitNetboot: 30 * time.Second, lifecycle.StepWaitFirstBoot: 30 * time.Second},
		Poll:            10 * time.Millisecond,
	}
}

func openEdge(t *testing.T, faults map[string]simedge.Fault) *simedge.Edge {
	t.Helper()
	e, err := simedge.Open(simedge.Config{Journal: filepath.Join(t.TempDir(), "journal"), BootTime: 10 * time.Millisecond,
		ImageTime: 10 * time.Millisecond, BurnInTime: 5 * time.Millisecond, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runUntil runs the engine until every node rests, then stops it.
func runUntil(t *testing.T, db *store.DB, edge lifecycle.Edge, cfg lifecycle.Config, want map[string]model.State) *lifecycle.Engine {
	t.Helper()
	eng, err := lifecycle.New(cfg, db, edge, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	waitStates(t, db, want)
	return eng
}

func waitStates(t *testing.T, db *store.DB, want map[string]model.State) {
	t.Helper()
	deadline := time.Now().Add(180 * time.Second)
	for {
		got := map[string]model.State{}
		for name := range want {
			n, err := db.GetNode(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			got[name] = n.State
		}
		if cmp.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not reach their states (-want +got):\n%s", cmp.Diff(want, got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func create(t *testing.T, db *store.DB, nodes ...model.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, _, err := db.CreateNode(context.Background(), n, "test"); err != nil {
			t.Fatal(err)
		}
	}
}

// effects counts journalled side effects per node and action.
func effects(t *testing.T, e *simedge.Edge, journal string) map[string]int {
	t.Helper()
	list, err := simedge.ReadJournal(journal)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ef := range list {
		out[ef.Node+" "+ef.Action+" "+ef.Arg]++
	}
	return out
}

func stepNames(t *testing.T, db *store.DB, node string) []string {
	t.Helper()
	tl, err := db.Timeline(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range tl {
		out = append(out, fmt.Sprintf("%s#%d:%s", s.Name, s.Attempt, s.Outcome))
	}
	return out
}

func TestEveryTransitionToReadyAndHandedOff(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		journal := filepath.Join(t.TempDir(), "journal")
		edge, err := simedge.Open(simedge.Config{Journal: journal, BootTime: 10 * time.Millisecond, ImageTime: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer edge.Close()
		create(t, db, model.Node{Name: "a", Identity: model.Identity{Rack: "r1", Slot: 1}},
			model.Node{Name: "b", Desired: model.WantHandedOff, Identity: model.Identity{Rack: "r1", Slot: 2}})
		runUntil(t, db, edge, fastConfig(), map[string]model.State{"a": model.Ready, "b": model.HandedOff})

		want := []string{
			"enroll#1:succeeded", "set-boot-network#1:succeeded", "boot-network#1:succeeded",
			"wait-netboot-checkin#1:succeeded", "inspect#1:succeeded", "validate#1:succeeded",
			"image#1:succeeded", "set-boot-disk#1:succeeded", "boot-disk#1:succeeded",
			"wait-firstboot-checkin#1:succeeded", "burn-in#1:succeeded",
		}
		if diff := cmp.Diff(want, stepNames(t, db, "a")); diff != "" {
			t.Errorf("timeline of a (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(append(want, "hand-off#1:succeeded"), stepNames(t, db, "b")); diff != "" {
			t.Errorf("timeline of b (-want +got):\n%s", diff)
		}
		a, _ := db.GetNode(context.Background(), "a")
		if a.Identity.Serial == "" || len(a.Identity.MACs) == 0 || a.Inventory == nil {
			t.Errorf("enrolment/inspection not recorded on the node: %+v", a)
		}
		wantFx := map[string]int{
			"a set-boot network": 1, "a boot ": 2, "a image ": 1, "a set-boot disk": 1,
			"b set-boot network": 1, "b boot ": 2, "b image ": 1, "b set-boot disk": 1, "b hand-off ": 1,
		}
		if diff := cmp.Diff(wantFx, effects(t, edge, journal)); diff != "" {
			t.Errorf("side effects (-want +got):\n%s", diff)
		}
		// Every state change is audited and the chain verifies.
		entries, _ := db.ListAudit(context.Background(), store.AuditFilter{Node: "a"})
		var changes []string
		for _, e := range entries {
			if e.Action == "state.change" {
				var d struct{ To string }
				json.Unmarshal(e.Detail, &d)
				changes = append(changes, d.To)
			}
		}
		wantChanges := []string{"Enrolled", "Inspecting", "Validated", "Imaging", "FirstBoot", "BurnIn", "Ready"}
		if diff := cmp.Diff(wantChanges, changes); diff != "" {
			t.Errorf("audited state changes of a (-want +got):\n%s", diff)
		}
		if _, err := db.VerifyAudit(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

func TestRetriesDeadlinesAndFailureClasses(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		edge := openEdge(t, map[string]simedge.Fault{
			"flaky": simedge.FaultFlakyBMC, "dead": simedge.FaultBMCUnreachable,
			"nopxe": simedge.FaultNoPXE, "corrupt": simedge.FaultImageCorrupt,
		})
		create(t, db, model.Node{Name: "flaky"}, model.Node{Name: "dead"}, model.Node{Name: "nopxe"}, model.Node{Name: "corrupt"})
		cfg := fastConfig()
		cfg.Deadlines[lifecycle.StepWaitNetboot] = 1500 * time.Millisecond // the no-PXE node times out
		runUntil(t, db, edge, cfg, map[string]model.State{
			"flaky": model.Ready, "dead": model.Failed, "nopxe": model.Failed, "corrupt": model.Failed,
		})
		ctx := context.Background()
		for name, want := range map[string]struct {
			class model.FailureClass
			from  model.State
			step  string
		}{
			"dead":    {model.ClassBMCUnreachable, model.Discovered, "enroll"},
			"nopxe":   {model.ClassNoPXERequest, model.Inspecting, "wait-netboot-checkin"},
			"corrupt": {model.ClassImageVerifyFailed, model.Imaging, "image"},
		} {
			n, _ := db.GetNode(ctx, name)
			if n.FailureClass != want.class || n.FailedFrom != want.from || !strings.Contains(n.FailureMsg, want.step) {
				t.Errorf("%s failed with %s from %s: %q; want %s from %s in step %s", name, n.FailureClass, n.FailedFrom, n.FailureMsg, want.class, want.from, want.step)
			}
			h, _ := db.StepHistory(ctx, name, n.Seq-1, want.step)
			if h.Failures != 3 {
				t.Errorf("%s: %d failed attempts of %s, want 3 (MaxAttempts)", name, h.Failures, want.step)
			}
		}
		n, _ := db.GetNode(ctx, "nopxe")
		h, _ := db.StepHistory(ctx, "nopxe", n.Seq-1, "wait-netboot-checkin")
		if h.Last.Outcome != model.TimedOut {
			t.Errorf("no-PXE wait ended %s, want timed-out (deadline)", h.Last.Outcome)
		}
		tl := stepNames(t, db, "flaky")
		if tl[0] != "enroll#1:failed" || tl[1] != "enroll#2:succeeded" {
			t.Errorf("flaky BMC timeline starts %v; want a failed then a succeeded enroll", tl[:2])
		}
	})
}

func TestQuarantineRevalidateRetryDecommission(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		faults := map[string]simedge.Fault{"gpu": simedge.FaultBadGPU, "dead": simedge.FaultBMCUnreachable}
		edge := openEdge(t, faults)
		create(t, db, model.Node{Name: "gpu"}, model.Node{Name: "dead"}, model.Node{Name: "ok"})
		eng := runUntil(t, db, edge, fastConfig(), map[string]model.State{"gpu": model.Quarantined, "dead": model.Failed, "ok": model.Ready})
		n, _ := db.GetNode(ctx, "gpu")
		if !strings.Contains(string(n.Findings), "reseat GPU 0") {
			t.Errorf("quarantined node's findings = %s; want a hint to reseat GPU 0", n.Findings)
		}
		for name, act := range map[string]lifecycle.Action{"gpu": lifecycle.ActRetry, "dead": lifecycle.ActRevalidate, "ok": lifecycle.ActRetry} {
			if _, err := eng.Act(ctx, lifecycle.Request{Node: name, Action: act, Actor: "test"}); err == nil {
				t.Errorf("%s on %s was allowed", act, name)
			}
		}
		// The technician reseats the GPU and fixes the BMC cable.
		delete(faults, "gpu")
		delete(faults, "dead")
		edge2 := openEdge(t, nil)
		ops := map[string]model.Operation{}
		for name, act := range map[string]lifecycle.Action{"gpu": lifecycle.ActRevalidate, "dead": lifecycle.ActRetry, "ok": lifecycle.ActDecommission} {
			op, err := lifecycle.Act(ctx, db, lifecycle.Request{Node: name, Action: act, Actor: "test"})
			if err != nil {
				t.Fatalf("%s %s: %v", act, name, err)
			}
			ops[name] = op
		}
		runUntil(t, db, edge2, fastConfig(), map[string]model.State{"gpu": model.Ready, "dead": model.Ready, "ok": model.Enrolled})
		for name, op := range ops {
			got, _ := db.GetOperation(ctx, op.ID)
			if got.Status != model.OpSucceeded {
				t.Errorf("operation %s on %s = %s, want succeeded", op.Action, name, got.Status)
			}
		}
		tl := stepNames(t, db, "ok")
		if got := tl[len(tl)-2:]; !cmp.Equal(got, []string{"release#1:succeeded", "power-off#1:succeeded"}) {
			t.Errorf("decommission steps = %v", got)
		}
	})
}

// A controller that died after recording an intent resumes it with the same
// idempotency key, and does not redo steps already done in this pass.
func TestResumeUsesTheRecordedKey(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		journal := filepath.Join(t.TempDir(), "journal")
		edge, _ := simedge.Open(simedge.Config{Journal: journal, BootTime: 10 * time.Millisecond})
		defer edge.Close()
		create(t, db, model.Node{Name: "n", State: model.Inspecting})
		// set-boot-network done and applied; boot-network intent recorded,
		// applied at the edge, but the controller died before its outcome.
		s1, _ := db.BeginStep(ctx, "n", 0, lifecycle.StepSetBootNetwork, "dead-controller")
		edge.SetBoot(ctx, model.Node{Name: "n"}, lifecycle.BootNetwork, s1.Key)
		s1.Outcome = model.Succeeded
		db.FinishStep(ctx, s1, "dead-controller")
		s2, _ := db.BeginStep(ctx, "n", 0, lifecycle.StepBootNetwork, "dead-controller")
		edge.Boot(ctx, model.Node{Name: "n"}, s2.Key)

		runUntil(t, db, edge, fastConfig(), map[string]model.State{"n": model.Ready})
		fx := effects(t, edge, journal)
		if fx["n set-boot network"] != 1 || fx["n boot "] != 2 {
			t.Errorf("effects after resume = %v; want one network boot override and two boots (network, disk)", fx)
		}
		if edge.Replays() != 1 {
			t.Errorf("edge saw %d replays, want 1 (the resumed boot-network)", edge.Replays())
		}
		tl := stepNames(t, db, "n")
		if tl[0] != "set-boot-network#1:succeeded" || tl[1] != "boot-network#1:succeeded" {
			t.Errorf("timeline after resume starts %v; want both steps at attempt 1", tl[:2])
		}
	})
}

// limitEdge wraps the simulated edge and records the most BMC calls seen at
// once per BMC, per rack, and overall.
type limitEdge struct {
	*simedge.Edge
	mu              sync.Mutex
	perBMC, perRack map[string]int
	maxBMC, maxRack int
	total, maxTotal int
}

func (l *limitEdge) enter(n model.Node) func() {
	l.mu.Lock()
	l.perBMC[n.Identity.BMC]++
	l.perRack[n.Identity.Rack]++
	l.total++
	l.maxBMC = max(l.maxBMC, l.perBMC[n.Identity.BMC])
	l.maxRack = max(l.maxRack, l.perRack[n.Identity.Rack])
	l.maxTotal = max(l.maxTotal, l.total)
	l.mu.Unlock()
	time.Sleep(3 * time.Millisecond)
	return func() {
		l.mu.Lock()
		l.perBMC[n.Identity.BMC]--
		l.perRack[n.Identity.Rack]--
		l.total--
		l.mu.Unlock()
	}
}

func (l *limitEdge) SetBoot(ctx context.Context, n model.Node, d lifecycle.BootDevice, key string) error {
	defer l.enter(n)()
	return l.Edge.SetBoot(ctx, n, d, key)
}

func (l *limitEdge) Boot(ctx context.Context, n model.Node, key string) error {
	defer l.enter(n)()
	return l.Edge.Boot(ctx, n, key)
}

func TestConcurrencyLimits(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		le := &limitEdge{Edge: openEdge(t, nil), perBMC: map[string]int{}, perRack: map[string]int{}}
		want := map[string]model.State{}
		var nodes []model.Node
		for i := 0; i < 12; i++ {
			// Two nodes share each BMC (a twin chassis); three racks.
			name := fmt.Sprintf("n%02d", i)
			nodes = append(nodes, model.Node{Name: name, Identity: model.Identity{BMC: fmt.Sprintf("10.0.0.%d", i/2), Rack: fmt.Sprintf("r%d", i%3)}})
			want[name] = model.Ready
		}
		create(t, db, nodes...)
		cfg := fastConfig()
		cfg.Workers, cfg.RackLimit = 5, 2
		runUntil(t, db, le, cfg, want)
		if le.maxBMC != 1 || le.maxRack > 2 || le.maxTotal > 5 {
			t.Errorf("most concurrent BMC calls: per BMC %d (limit 1), per rack %d (limit 2), total %d (limit 5)", le.maxBMC, le.maxRack, le.maxTotal)
		}
		if le.maxRack < 2 {
			t.Errorf("per-rack concurrency never reached 2: the engine is serialising more than it must")
		}
	})
}

func TestActionErrorsAndStateList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The transition tests reach every state; here the unknown-action and
	// not-found paths must say what to do.
	create(t, db, model.Node{Name: "x"})
	if _, err := lifecycle.Act(ctx, db, lifecycle.Request{Node: "x", Action: "explode"}); err == nil || !strings.Contains(err.Error(), "one of provision") {
		t.Errorf("unknown action error = %v", err)
	}
	if _, err := lifecycle.Act(ctx, db, lifecycle.Request{Node: "nope", Action: lifecycle.ActRetry}); err == nil {
		t.Error("action on an unknown node succeeded")
	}
	states := map[model.State]bool{}
	for _, s := range model.States {
		states[s] = true
	}
	names := make([]string, 0, len(states))
	for s := range states {
		names = append(names, string(s))
	}
	sort.Strings(names)
	if len(names) != 12 {
		t.Errorf("model.States has %d states, want the 12 of the lifecycle: %v", len(names), names)
	}
}

// A machine found by its own network boot waits in Discovered until its BMC
// is known, then is enrolled.
func TestDiscoveredWithoutBMCWaits(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		create(t, db, model.Node{Name: "unknown-1", Desired: model.WantEnrolled, Identity: model.Identity{MACs: []string{"52:54:00:00:00:77"}}})
		eng, err := lifecycle.New(fastConfig(), db, openEdge(t, nil), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- eng.Serve(runCtx) }()
		defer func() { cancel(); <-done }()
		time.Sleep(300 * time.Millisecond) // many engine polls
		if tl := stepNames(t, db, "unknown-1"); len(tl) != 0 {
			t.Fatalf("the engine worked on a node with no BMC: %v", tl)
		}
		if _, err := db.FillIdentity(ctx, "unknown-1", model.Identity{BMC: "10.0.12.77"}, "", "test"); err != nil {
			t.Fatal(err)
		}
		eng.Wake()
		waitStates(t, db, map[string]model.State{"unknown-1": model.Enrolled})
	})
}

// flightEdge records the nodes between their enrolment and the end of
// their burn-in.
type flightEdge struct {
	*simedge.Edge
	mu        sync.Mutex
	active    map[string]bool
	maxActive int
	finished  []string
}

func (f *flightEdge) Enroll(ctx context.Context, n model.Node) (model.Identity, error) {
	f.mu.Lock()
	f.active[n.Name] = true
	f.maxActive = max(f.maxActive, len(f.active))
	f.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	return f.Edge.Enroll(ctx, n)
}

func (f *flightEdge) BurnIn(ctx context.Context, n model.Node, key string) (json.RawMessage, error) {
	out, err := f.Edge.BurnIn(ctx, n, key)
	f.mu.Lock()
	delete(f.active, n.Name)
	f.finished = append(f.finished, n.Name)
	f.mu.Unlock()
	return out, err
}

// At most MaxInFlight nodes are between enrolment and Ready at once; the
// rest wait in Discovered, and every node still reaches Ready.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	onBoth(t, func(t *testing.T, db *store.DB) {
		fe := &flightEdge{Edge: openEdge(t, nil), active: map[string]bool{}}
		want := map[string]model.State{}
		var nodes []model.Node
		for i := range 12 {
			name := fmt.Sprintf("n%02d", i)
			nodes = append(nodes, model.Node{Name: name, Identity: model.Identity{BMC: fmt.Sprintf("10.0.1.%d", i), Rack: fmt.Sprintf("r%d", i%2)}})
			want[name] = model.Ready
		}
		create(t, db, nodes...)
		cfg := fastConfig()
		cfg.MaxInFlight = 3
		runUntil(t, db, fe, cfg, want)
		fe.mu.Lock()
		defer fe.mu.Unlock()
		if fe.maxActive > 3 {
			t.Errorf("%d nodes were in flight at once; MaxInFlight is 3", fe.maxActive)
		}
		if fe.maxActive < 2 {
			t.Errorf("at most %d node in flight: the engine serialises more than MaxInFlight asks", fe.maxActive)
		}
		if len(fe.finished) != 12 {
			t.Errorf("%d burn-ins finished, want 12", len(fe.finished))
		}
	})
}
