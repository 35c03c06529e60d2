package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rackstrap/rackstrap/cluster/kubernetes"
	"github.com/rackstrap/rackstrap/cluster/webhook"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/outbox"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var join = kubernetes.Join{APIEndpoint: "10.0.0.5:6443", Token: "abcdef.0123456789abcdef",
	CACertHashes: []string{"sha256:0a4f6d0e3c4b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a291"}}

// recorder is a hand-written edge.Cluster standing in for Slurm (the real
// one is tested against slurmctld in test/cluster).
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) HandOff(_ context.Context, n model.Node, _ *inventory.Inventory, key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "handoff "+n.Name)
	return nil
}

func (r *recorder) Release(_ context.Context, n model.Node, reason, key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "release "+n.Name)
	return nil
}

// TestDispatcherRoutesPerNode: a node goes to the cluster its target
// names; without a target, to the default; with none, an error that says
// what to do.
func TestDispatcherRoutesPerNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range []string{"k8s-01", "slurm-01", "plain-01"} {
		if _, _, err := db.CreateNode(ctx, model.Node{Name: name, Identity: model.Identity{Rack: "r1"}, Profile: "dgx-h100"}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	db.SetHandOffTarget(ctx, "k8s-01", "kubernetes", "test")
	db.SetHandOffTarget(ctx, "slurm-01", "slurm", "test")

	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "k8s-01"},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: kubernetes.TaintPending, Value: "hand-off", Effect: corev1.TaintEffectNoSchedule}}}})
	feat, err := NewClusterFeature(ClusterConfig{Kubernetes: &KubernetesConfig{Nodes: cs.CoreV1().Nodes(), Join: join, JoinWait: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := newHandOff(Config{Features: []Feature{feat}}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	d := cl.(*Dispatcher)
	rec := &recorder{}
	d.clusters["slurm"] = rec // the Slurm stand-in
	d.def = ""                // two clusters, no default

	inv := &inventory.Inventory{GPUs: []inventory.GPU{{Name: "NVIDIA H100 80GB HBM3"}, {Index: 1, Name: "NVIDIA H100 80GB HBM3"}}}
	get := func(name string) model.Node { n, _ := db.GetNode(ctx, name); return n }
	if err := d.HandOff(ctx, get("k8s-01"), inv, "key-k"); err != nil {
		t.Fatal(err)
	}
	kn, _ := cs.CoreV1().Nodes().Get(ctx, "k8s-01", metav1.GetOptions{})
	if kn.Labels[kubernetes.LabelGPUModel] != "h100" || kn.Labels[kubernetes.LabelGPUCount] != "2" || len(kn.Spec.Taints) != 0 {
		t.Errorf("kubernetes node after hand-off: labels %v taints %v", kn.Labels, kn.Spec.Taints)
	}
	if err := d.HandOff(ctx, get("slurm-01"), inv, "key-s"); err != nil {
		t.Fatal(err)
	}
	// No target, no default, two clusters: refused with the remedy.
	err = d.HandOff(ctx, get("plain-01"), inv, "key-p")
	var fc interface{ FailureClass() string }
	if err == nil || !strings.Contains(err.Error(), "handoff: slurm") || !errors.As(err, &fc) || fc.FailureClass() != string(model.ClassHandOffFailed) {
		t.Fatalf("HandOff without a target = %v, want a hand-off failure naming the manifest key", err)
	}
	d.def = "slurm"
	if err := d.HandOff(ctx, get("plain-01"), inv, "key-p"); err != nil {
		t.Fatal(err)
	}
	q := get("k8s-01")
	q.State = model.Quarantined
	if err := d.Release(ctx, q, "rackstrap: quarantined", "key-r"); err != nil {
		t.Fatal(err)
	}
	kn, _ = cs.CoreV1().Nodes().Get(ctx, "k8s-01", metav1.GetOptions{})
	if !kn.Spec.Unschedulable || kn.Labels[kubernetes.LabelValidation] != kubernetes.Quarantined {
		t.Errorf("quarantined kubernetes node: unschedulable %v labels %v", kn.Spec.Unschedulable, kn.Labels)
	}
	if got := strings.Join(rec.calls, ","); got != "handoff slurm-01,handoff plain-01" {
		t.Errorf("slurm calls = %s", got)
	}
	entries, _ := db.ListAudit(ctx, store.AuditFilter{Node: "k8s-01"})
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if s := strings.Join(actions, ","); !strings.Contains(s, "handoff.cluster") || !strings.Contains(s, "release.cluster") {
		t.Errorf("audit of k8s-01 = %s, want handoff.cluster and release.cluster", s)
	}
	// A target with no cluster configured is refused at hand-off.
	if _, err := NewDispatcher(db, map[string]edge.Cluster{"kubernetes": rec}, "slurm", log); err == nil {
		t.Error("a default target without its cluster was accepted")
	}
}

// hook is a webhook receiver that refuses while closed.
type hook struct {
	mu       sync.Mutex
	open     bool
	bodies   map[string][]string
	accepted map[string]int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !webhook.Verify([]byte(hookSecret), body, r.Header.Get(webhook.HeaderSignature)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(webhook.HeaderID)
	h.bodies[id] = append(h.bodies[id], string(body))
	if !h.open {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	h.accepted[id]++
	w.WriteHeader(http.StatusOK)
}

const hookSecret = "feature test secret of 32 bytes."

// run starts a simulated controller with the cluster feature; it returns
// the API address and a stop function.
func run(t *testing.T, dir string, feat Feature) (*Controller, func()) {
	t.Helper()
	cfg := Config{DataDir: dir, APIListen: "127.0.0.1:0", Features: []Feature{feat},
		Simulate: &SimConfig{Nodes: 2, Desired: model.WantHandedOff, Edge: simedge.Config{BootTime: 5 * time.Millisecond, ImageTime: 5 * time.Millisecond, BurnInTime: 5 * time.Millisecond}}}
	cfg.Engine.Poll = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), func(c *Controller) { ready <- c })
	}()
	select {
	case c := <-ready:
		return c, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("controller did not start")
	}
	return nil, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestClusterFeatureWebhookSurvivesRestart: a simulated rack is handed
// off while the receiver refuses; the controller stops with the events
// undelivered; the next controller on the same data directory delivers
// each, as recorded, once. The routes are served and documented.
func TestClusterFeatureWebhookSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := &hook{bodies: map[string][]string{}, accepted: map[string]int{}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	newFeature := func() *ClusterFeature {
		f, err := NewClusterFeature(ClusterConfig{
			Kubernetes:    &KubernetesConfig{Nodes: fake.NewClientset().CoreV1().Nodes(), Join: join},
			DefaultTarget: "kubernetes",
			Webhook:       &webhook.Config{URL: srv.URL, Secret: []byte(hookSecret), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
			WebhookPoll:   20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	c, stop := run(t, dir, newFeature())
	base := "http://" + c.API
	ctx := context.Background()
	waitFor(t, "two refused deliveries per event", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, b := range h.bodies {
			if len(b) >= 2 {
				n++
			}
		}
		return n == 2
	})
	// Routes: targets, export, cloud-init, events.
	req, _ := http.NewRequest("PUT", base+"/api/v1/handoff-targets", strings.NewReader(`{"nodes":{"sim-r1-n02":"slurm"}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT handoff-targets = %v, %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest("PUT", base+"/api/v1/handoff-targets", strings.NewReader(`{"nodes":{"sim-r1-n02":"lsf"}}`))
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 400 {
		t.Errorf("PUT an unknown target = %d, want 400", resp.StatusCode)
	}
	if code, _, body := get(t, base+"/api/v1/handoff-targets"); code != 200 || !strings.Contains(body, `"sim-r1-n02": "slurm"`) {
		t.Errorf("GET handoff-targets = %d %s", code, body)
	}
	if code, ctype, body := get(t, base+"/api/v1/export/csv?rack=sim-r1"); code != 200 || !strings.HasPrefix(ctype, "text/csv") || strings.Count(body, "\n") != 3 || !strings.Contains(body, "sim-r1-n02,sim-r1,2,") {
		t.Errorf("GET export/csv = %d %s %q", code, ctype, body)
	}
	if code, _, _ := get(t, base+"/api/v1/export/xml"); code != 404 {
		t.Errorf("GET export/xml = %d, want 404", code)
	}
	if code, ctype, body := get(t, base+"/api/v1/nodes/sim-r1-n01/cloud-init"); code != 200 || ctype != "text/cloud-config" || !strings.Contains(body, "kubeadm") {
		t.Errorf("GET cloud-init = %d %s %s", code, ctype, body)
	}
	if code, _, body := get(t, base+"/api/v1/nodes/sim-r1-n02/cloud-init"); code != 409 || !strings.Contains(body, "handoff: kubernetes") {
		t.Errorf("GET cloud-init of a Slurm node = %d %s, want 409", code, body)
	}
	code, _, body := get(t, base+"/api/v1/webhook-events?pending=true")
	var evs struct{ Events []WebhookEvent }
	if json.Unmarshal([]byte(body), &evs); code != 200 || len(evs.Events) != 2 {
		t.Fatalf("GET webhook-events = %d %s", code, body)
	}
	recorded := map[string]string{}
	for _, e := range evs.Events {
		if e.Kind != webhook.HandedOff || e.Attempts < 2 || e.LastError == "" {
			t.Errorf("pending event = %+v", e)
		}
		recorded[e.ID] = string(e.Body)
	}
	stop()

	// The receiver opens; the next controller delivers what was queued.
	h.mu.Lock()
	h.open = true
	h.mu.Unlock()
	c, stop = run(t, dir, newFeature())
	defer stop()
	waitFor(t, "deliveries after the restart", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.accepted) == 2
	})
	h.mu.Lock()
	for id, want := range recorded {
		if h.accepted[id] != 1 {
			t.Errorf("%s accepted %d times", id, h.accepted[id])
		}
		var a, b any
		json.Unmarshal([]byte(want), &a)
		for i, got := range h.bodies[id] {
			json.Unmarshal([]byte(got), &b)
			if !jsonEqual(a, b) {
				t.Errorf("%s attempt %d body %s, want as recorded %s", id, i+1, got, want)
			}
		}
	}
	h.mu.Unlock()
	// Each delivery is audited.
	waitFor(t, "the delivery audit", func() bool {
		entries, _ := c.Store.ListAudit(ctx, store.AuditFilter{After: 0, Limit: 100000})
		n := 0
		for _, e := range entries {
			if e.Action == outbox.Sink+".delivered" {
				n++
			}
		}
		return n == 2
	})
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
