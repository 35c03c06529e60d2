package fwrun

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// lab is a store with n Ready nodes whose BMCs are simulated, and a
// firmware directory with a signed baseline (BMC 1.5.0, BIOS 2.2.0; the
// simulated nodes run 1.4.2 and 2.1.7).
type lab struct {
	db    *store.DB
	bmcs  []*redfishsim.BMC
	nodes []string
	dir   string
	pub   ed25519.PublicKey
	priv  ed25519.PrivateKey
	log   *slog.Logger
}

func newLab(t *testing.T, n int, opts redfishsim.Options) *lab {
	t.Helper()
	ctx := context.Background()
	l := &lab{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(tWriter{t}, nil))}
	var err error
	if l.db, err = store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.db.Close() })
	var nodes []redfishsim.Node
	for i := 1; i <= n; i++ {
		nodes = append(nodes, redfishsim.SampleNode(i))
	}
	fleet, err := redfishsim.Start(redfishsim.Config{HTTP: true, Options: opts}, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	l.bmcs = fleet.BMCs()
	for i, b := range l.bmcs {
		name := fmt.Sprintf("r1-n%02d", i+1)
		if _, _, err := l.db.CreateNode(ctx, model.Node{Name: name, Identity: model.Identity{BMC: b.Endpoint(), Rack: "r1", Slot: i + 1}, Desired: model.WantReady}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.db.Apply(ctx, store.Change{Node: name, FromSeq: -1, To: model.Ready, Actor: "test", Action: "test"}); err != nil {
			t.Fatal(err)
		}
		l.nodes = append(l.nodes, name)
	}
	if l.pub, l.priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, p := range []struct{ id, file, version string }{{"BMC", "bmc-1.5.0.bin", "1.5.0"}, {"BIOS", "bios-2.2.0.bin", "2.2.0"}} {
		file := filepath.Join(l.dir, p.file)
		if err := os.WriteFile(file, []byte("firmware "+p.file), 0o644); err != nil {
			t.Fatal(err)
		}
		sig, sha, err := firmware.SignPackage(file, l.priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file+".sig", sig, 0o644); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, fmt.Sprintf("  - id: %s\n    version: %s\n    package: {file: %s, sha256: %s, signature: %s.sig}\n", p.id, p.version, p.file, sha, p.file))
	}
	if err := os.WriteFile(filepath.Join(l.dir, "fleet.yaml"), []byte("name: fleet-2026q4\ncomponents:\n"+strings.Join(rules, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *lab) runner(t *testing.T, mod func(*Config)) *Runner {
	t.Helper()
	cfg := Config{Dir: l.dir, Baseline: "fleet", TrustedKeys: []ed25519.PublicKey{l.pub}, ImageBase: "http://127.0.0.1:9", Poll: 50 * time.Millisecond, Parallel: 1,
		Client: firmware.Config{RequestTimeout: 5 * time.Second, TaskTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second, PollInterval: 20 * time.Millisecond}}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, Deps{Store: l.db, Log: l.log, DefaultUser: "admin", DefaultPassword: "password", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// serve runs r until the test ends.
func serve(t *testing.T, r *Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
}

// wait waits for run to end.
func (l *lab) wait(t *testing.T, id int64) store.FirmwareRun {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		run, err := l.db.GetFirmwareRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != store.FirmwareRunning {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d still running: %+v", id, run.Nodes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditSeq gives, per node, the sequence numbers of an action.
func (l *lab) auditSeq(t *testing.T, action, outcome string) map[string][]int64 {
	t.Helper()
	entries, err := l.db.ListAudit(context.Background(), store.AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int64{}
	for _, e := range entries {
		if e.Action == action && (outcome == "" || e.Outcome == outcome) {
			out[e.Node] = append(out[e.Node], e.Seq)
		}
	}
	return out
}

func TestWavesRunCanaryFirstAndEveryFlashIsAudited(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5, redfishsim.Options{UpdateDuration: 30 * time.Millisecond})
	r := l.runner(t, func(c *Config) { c.Parallel = 2 })
	serve(t, r)
	plan, err := r.Plan(context.Background(), RunRequest{Baseline: "fleet", Rack: "r1", WaveSize: 2, MaxFailures: 1}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"r1-n01"}, {"r1-n02", "r1-n03"}, {"r1-n04", "r1-n05"}}
	if plan.Run == nil || fmt.Sprint(plan.Waves) != fmt.Sprint(want) {
		t.Fatalf("Plan waves = %v (run %v), want %v", plan.Waves, plan.Run, want)
	}
	run := l.wait(t, plan.Run.ID)
	if run.Status != store.FirmwareDone {
		t.Fatalf("run = %+v, want done", run)
	}
	for i, b := range l.bmcs {
		ups := b.Updates()
		if len(ups) != 2 || ups[0].Target != "BMC" || ups[1].Target != "BIOS" {
			t.Errorf("%s: BMC accepted %+v, want BMC then BIOS once each", l.nodes[i], ups)
		}
	}
	// Every node of a wave has its outcome before the next wave's first
	// flash.
	begun, ended := l.auditSeq(t, "firmware.flash", "intent"), l.auditSeq(t, "firmware.node.succeeded", "")
	for w := 0; w+1 < len(want); w++ {
		var lastEnd, firstNext int64 = 0, 1 << 62
		for _, n := range want[w] {
			lastEnd = max(lastEnd, slices.Max(ended[n]))
		}
		for _, n := range want[w+1] {
			firstNext = min(firstNext, slices.Min(begun[n]))
		}
		if lastEnd > firstNext {
			t.Errorf("wave %d began (audit seq %d) before wave %d ended (seq %d)", w+1, firstNext, w, lastEnd)
		}
	}
	for _, action := range []string{"firmware.flash", "firmware.task", "firmware.verify"} {
		if got := l.auditSeq(t, action, ""); len(got) != 5 {
			t.Errorf("%s audited for %d nodes, want 5", action, len(got))
		}
	}
	if res, err := l.db.VerifyAudit(context.Background()); err != nil {
		t.Errorf("VerifyAudit = %+v, %v", res, err)
	}
	if n := counter(r.flashes.WithLabelValues("BIOS", "flashed")); n != 5 {
		t.Errorf("rackstrap_firmware_packages_total{BIOS,flashed} = %v, want 5", n)
	}
	if n := counter(r.nodes.WithLabelValues("succeeded")); n != 5 {
		t.Errorf("rackstrap_firmware_nodes_total{succeeded} = %v, want 5", n)
	}
	// Nodes at the baseline: a second plan finds nothing to do.
	again, err := r.Plan(context.Background(), RunRequest{Baseline: "fleet"}, "tester")
	if err != nil || again.Run != nil || len(again.Waves) != 0 {
		t.Errorf("second Plan = %+v, %v; want nothing to do", again, err)
	}
}

func TestRunStopsAtTheFailureLimitAndQuarantines(t *testing.T) {
	t.Parallel()
	t.Run("failures reach the limit", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 6, redfishsim.Options{})
		for _, i := range []int{2, 3, 4} { // r1-n03, n04, n05 of the second wave
			l.bmcs[i].SetUpdateFault(redfishsim.UpdateFault{TaskFails: true, FailMessage: "Image rejected by the BMC."})
		}
		r := l.runner(t, nil)
		serve(t, r)
		plan, err := r.Plan(context.Background(), RunRequest{WaveSize: 5, MaxFailures: 2}, "tester")
		if err != nil {
			t.Fatal(err)
		}
		run := l.wait(t, plan.Run.ID)
		if run.Status != store.FirmwareStopped || !strings.Contains(run.Reason, "2 node(s) failed (r1-n03, r1-n04), reaching the limit of 2") {
			t.Errorf("run = %s %q, want stopped at 2 failures", run.Status, run.Reason)
		}
		outcomes := map[string]string{}
		for _, n := range run.Nodes {
			outcomes[n.Node] = n.Outcome
		}
		wantOut := map[string]string{"r1-n01": "succeeded", "r1-n02": "succeeded", "r1-n03": "failed", "r1-n04": "failed", "r1-n05": "", "r1-n06": ""}
		if fmt.Sprint(outcomes) != fmt.Sprint(wantOut) {
			t.Errorf("outcomes = %v, want %v", outcomes, wantOut)
		}
		for _, i := range []int{4, 5} {
			if ups := l.bmcs[i].Updates(); len(ups) != 0 {
				t.Errorf("%s was flashed after the run stopped: %+v", l.nodes[i], ups)
			}
		}
		n, err := l.db.GetNode(context.Background(), "r1-n03")
		if err != nil {
			t.Fatal(err)
		}
		if n.State != model.Quarantined || !strings.Contains(n.FailureMsg, "Image rejected by the BMC.") || !strings.Contains(string(n.Findings), "firmware.update-failed") {
			t.Errorf("r1-n03 = %s %q %s; want Quarantined with the BMC's reason", n.State, n.FailureMsg, n.Findings)
		}
		if id, _ := l.db.FirmwareHold(context.Background(), "r1-n06"); id != 0 {
			t.Errorf("r1-n06 still held by stopped run %d", id)
		}
	})
	t.Run("canary fails", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, 3, redfishsim.Options{})
		l.bmcs[0].SetUpdateFault(redfishsim.UpdateFault{Unchanged: true})
		r := l.runner(t, nil)
		serve(t, r)
		plan, err := r.Plan(context.Background(), RunRequest{MaxFailures: 5}, "tester")
		if err != nil {
			t.Fatal(err)
		}
		run := l.wait(t, plan.Run.ID)
		if run.Status != store.FirmwareStopped || !strings.Contains(run.Reason, "canary r1-n01 failed") {
			t.Errorf("run = %s %q, want stopped by the canary", run.Status, run.Reason)
		}
		for _, b := range l.bmcs[1:] {
			if len(b.Updates()) != 0 {
				t.Errorf("a node after the canary was flashed: %+v", b.Updates())
			}
		}
		n, _ := l.db.GetNode(context.Background(), "r1-n01")
		if n.State != model.Quarantined || !strings.Contains(n.FailureMsg, `reports version "1.4.2", want 1.5.0`) {
			t.Errorf("canary = %s %q, want Quarantined: version unverified", n.State, n.FailureMsg)
		}
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3, redfishsim.Options{})
	r := l.runner(t, nil)
	ctx := context.Background()
	before, err := l.db.ListAudit(ctx, store.AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r.Plan(ctx, RunRequest{WaveSize: 1, DryRun: true}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Run != nil || len(plan.Waves) != 3 || len(plan.Nodes) != 3 || len(plan.Nodes[0].Updates) != 2 || plan.Nodes[0].Updates[0].From != "1.4.2" {
		t.Errorf("dry-run plan = %+v", plan)
	}
	after, _ := l.db.ListAudit(ctx, store.AuditFilter{Limit: 100000})
	runs, _ := l.db.ListFirmwareRuns(ctx, 10)
	if len(after) != len(before) || len(runs) != 0 {
		t.Errorf("a dry run wrote %d audit entries and %d runs, want none", len(after)-len(before), len(runs))
	}
	if _, _, err := l.db.FirmwareInventory(ctx, "r1-n01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a dry run stored an inventory: %v", err)
	}
	for _, b := range l.bmcs {
		if len(b.Updates()) != 0 || b.Firmware()[0].Version != "1.4.2" {
			t.Errorf("a dry run changed a BMC: %+v", b.Updates())
		}
	}
	for _, n := range l.nodes {
		if id, _ := l.db.FirmwareHold(ctx, n); id != 0 {
			t.Errorf("%s held by run %d after a dry run", n, id)
		}
	}
}

// A runner stopped in the middle of a task (a controller going down), and
// a new one over the same store: each package is flashed once.
func TestResumeAfterAStopDoesNotFlashTwice(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2, redfishsim.Options{UpdateDuration: 600 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	first := l.runner(t, nil)
	done := make(chan error, 1)
	go func() { done <- first.Serve(ctx) }()
	plan, err := first.Plan(context.Background(), RunRequest{WaveSize: 1}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	// Stop once the canary's first task is recorded, mid-flash.
	deadline := time.Now().Add(60 * time.Second)
	for {
		steps, _ := l.db.FirmwareSteps(context.Background(), plan.Run.ID)
		if len(steps) > 0 && steps[0].Task != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no task recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	serve(t, l.runner(t, nil))
	run := l.wait(t, plan.Run.ID)
	if run.Status != store.FirmwareDone {
		t.Fatalf("run = %+v", run)
	}
	for i, b := range l.bmcs {
		if ups := b.Updates(); len(ups) != 2 {
			t.Errorf("%s: %d updates, want 2 (BMC and BIOS once each): %+v", l.nodes[i], len(ups), ups)
		}
	}
}

func TestGate(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2, redfishsim.Options{UpdateDuration: time.Hour})
	ctx := context.Background()
	r := l.runner(t, func(c *Config) { c.Hold = HoldImaging })
	g := r.Gate()
	n, _ := l.db.GetNode(ctx, "r1-n01")
	reason, err := g.Hold(ctx, n, model.Imaging)
	if err != nil || reason != "BMC 1.4.2 is behind baseline 1.5.0; BIOS 2.1.7 is behind baseline 2.2.0: run 'rackstrap firmware apply --baseline fleet'" {
		t.Errorf("Hold(behind, Imaging) = %q, %v", reason, err)
	}
	if reason, _ := r.Gate().Hold(ctx, n, model.HandedOff); reason == "" {
		t.Error("Hold(behind, HandedOff) with hold=imaging let the node through")
	}
	handoff := l.runner(t, func(c *Config) { c.Hold = HoldHandoff })
	if reason, _ := handoff.Gate().Hold(ctx, n, model.Imaging); reason != "" {
		t.Errorf("Hold(behind, Imaging) with hold=handoff = %q, want none", reason)
	}
	none := l.runner(t, func(c *Config) { c.Hold = HoldNone })
	if reason, _ := none.Gate().Hold(ctx, n, model.HandedOff); reason != "" {
		t.Errorf("Hold with hold=none = %q, want none", reason)
	}
	// A node a run is updating is held whatever the policy.
	if _, err := none.Plan(ctx, RunRequest{}, "tester"); err != nil {
		t.Fatal(err)
	}
	if reason, _ := none.Gate().Hold(ctx, n, model.HandedOff); !strings.Contains(reason, "firmware run 1 is updating this node") {
		t.Errorf("Hold during a run = %q", reason)
	}
	if _, err := New(Config{Dir: l.dir, Hold: HoldImaging, AllowUnsigned: true}, Deps{Store: l.db, Log: l.log}); err == nil {
		t.Error("New accepted a hold without a baseline")
	}
}

func TestBadPackageRefusedBeforeAnythingIsSent(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2, redfishsim.Options{})
	// The BIOS package is replaced after it was signed.
	if err := os.WriteFile(filepath.Join(l.dir, "bios-2.2.0.bin"), []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := l.runner(t, nil)
	_, err := r.Plan(context.Background(), RunRequest{}, "tester")
	if !errors.Is(err, errBadRequest) || !strings.Contains(err.Error(), "the file is not the package the baseline names") {
		t.Errorf("Plan = %v, want the package refused", err)
	}
	runs, _ := l.db.ListFirmwareRuns(context.Background(), 10)
	for _, b := range l.bmcs {
		if len(b.Updates()) != 0 {
			t.Errorf("a BMC accepted %+v", b.Updates())
		}
	}
	if len(runs) != 0 {
		t.Errorf("a run was stored: %+v", runs)
	}
}

func TestAPI(t *testing.T) {
	t.Parallel()
	l := newLab(t, 1, redfishsim.Options{})
	r := l.runner(t, nil)
	srv, err := api.New(l.db, noActor{}, l.log, prometheus.NewRegistry(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Extend(r.Extension()); err != nil {
		t.Fatal(err)
	}
	if err := srv.CheckOpenAPI(); err != nil {
		t.Fatal(err)
	}
	for _, rt := range srv.Routes() {
		if rt.Method == "POST" && rt.Path == "/api/v1/firmware/runs" && rt.Perm != api.PermAdmin {
			t.Errorf("POST /api/v1/firmware/runs needs %s, want admin", rt.Perm)
		}
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := NewClient(ts.URL, ts.Client(), "")
	ctx := context.Background()
	comp, err := c.Compliance(ctx, "", "r1")
	if err != nil || len(comp) != 1 || comp[0].Summary[firmware.Behind] != 2 {
		t.Fatalf("Compliance = %+v, %v", comp, err)
	}
	if _, err := c.Start(ctx, RunRequest{Baseline: "nope"}); err == nil || !strings.Contains(err.Error(), `baseline "nope"`) {
		t.Errorf("Start(nope) = %v", err)
	}
	plan, err := c.Start(ctx, RunRequest{})
	if err != nil || plan.Run == nil {
		t.Fatalf("Start = %+v, %v", plan, err)
	}
	if _, err := c.Start(ctx, RunRequest{}); err == nil || !strings.Contains(err.Error(), "another firmware run is running") {
		t.Errorf("second Start = %v, want a conflict", err)
	}
	// The package route serves the run's packages, and nothing else.
	u := plan.Nodes[0].Updates[0]
	resp, err := http.Get(ts.URL + "/api/v1/firmware/packages/" + u.Package.SHA256 + "/" + filepath.Base(u.Package.File))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Packages are offered once the runner drives the run.
		r.offer(u.Package)
	}
	resp, err = http.Get(ts.URL + "/api/v1/firmware/packages/" + u.Package.SHA256 + "/" + filepath.Base(u.Package.File))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET package = %v, %v", resp, err)
	}
	resp.Body.Close()
	resp, _ = http.Get(ts.URL + "/api/v1/firmware/packages/" + u.Package.SHA256 + "/fleet.yaml")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET another file = %d, want 404", resp.StatusCode)
	}
	resp.Body.Close()
	v, err := c.Run(ctx, plan.Run.ID)
	if err != nil || v.Status != store.FirmwareRunning || len(v.Nodes) != 1 {
		t.Errorf("Run = %+v, %v", v, err)
	}
	var raw json.RawMessage
	if err := c.do(ctx, "GET", "/api/v1/firmware/runs", nil, &raw); err != nil || !strings.Contains(string(raw), `"status": "running"`) {
		t.Errorf("runs = %s, %v", raw, err)
	}
}

// noActor refuses node actions: the firmware API needs none.
type noActor struct{}

func (noActor) Act(context.Context, lifecycle.Request) (model.Operation, error) {
	return model.Operation{}, lifecycle.ErrNotAllowed
}

func TestCancelStartsNoOtherNode(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3, redfishsim.Options{UpdateDuration: 300 * time.Millisecond})
	r := l.runner(t, nil)
	serve(t, r)
	ctx := context.Background()
	plan, err := r.Plan(ctx, RunRequest{WaveSize: 1}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	for len(l.bmcs[0].Updates()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	run, err := r.Cancel(ctx, plan.Run.ID, "tester")
	if err != nil || run.Status != store.FirmwareCancelled || run.Reason != "cancelled by tester" {
		t.Fatalf("Cancel = %+v, %v", run, err)
	}
	if _, err := r.Cancel(ctx, plan.Run.ID, "tester"); !errors.Is(err, errConflict) {
		t.Errorf("Cancel again = %v, want a conflict", err)
	}
	// The canary, being updated, is finished; nobody else starts.
	deadline := time.Now().Add(60 * time.Second)
	for {
		run, _ = l.db.GetFirmwareRun(ctx, plan.Run.ID)
		if run.Nodes[0].Outcome != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if run.Nodes[0].Outcome != store.FirmwareSucceeded || len(l.bmcs[0].Updates()) != 2 {
		t.Errorf("canary = %q with %d updates, want finished with 2", run.Nodes[0].Outcome, len(l.bmcs[0].Updates()))
	}
	for _, b := range l.bmcs[1:] {
		if len(b.Updates()) != 0 {
			t.Errorf("a node started after the cancel: %+v", b.Updates())
		}
	}
}

// counter reads a counter's value.
func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// A node the lifecycle took between the plan and its turn is left alone
// and skipped with the reason; a node removed meanwhile is skipped too.
func TestNodeNotAtRestIsSkipped(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3, redfishsim.Options{})
	r := l.runner(t, nil)
	ctx := context.Background()
	plan, err := r.Plan(ctx, RunRequest{WaveSize: 1}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.db.Apply(ctx, store.Change{Node: "r1-n02", FromSeq: -1, To: model.Imaging, Actor: "test", Action: "test"}); err != nil {
		t.Fatal(err)
	}
	serve(t, r)
	run := l.wait(t, plan.Run.ID)
	if run.Status != store.FirmwareDone || run.Nodes[1].Outcome != store.FirmwareSkipped || !strings.Contains(run.Nodes[1].Message, "node is Imaging") {
		t.Errorf("run = %s, r1-n02 %s %q; want done with r1-n02 skipped", run.Status, run.Nodes[1].Outcome, run.Nodes[1].Message)
	}
	if len(l.bmcs[1].Updates()) != 0 || len(l.bmcs[2].Updates()) != 2 {
		t.Errorf("updates: r1-n02 %d (want 0), r1-n03 %d (want 2)", len(l.bmcs[1].Updates()), len(l.bmcs[2].Updates()))
	}
}
