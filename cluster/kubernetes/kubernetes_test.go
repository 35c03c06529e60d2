package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(tlog{t}, nil)) }

// joined is a node as kubeadm join registers it: TaintPending set.
func joined(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: TaintPending, Value: "hand-off", Effect: corev1.TaintEffectNoSchedule}}},
	}
}

func h100Facts(t *testing.T) Facts {
	inv := &inventory.Inventory{}
	for i := range 8 {
		inv.GPUs = append(inv.GPUs, inventory.GPU{Index: i, Name: "NVIDIA H100 80GB HBM3"})
	}
	f, err := FactsFromInventory("gpu-r12-01", "nvidia-dgx-h100", "r12", "passed", inv)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHandOffLabelsTaintsUncordon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := joined("gpu-r12-01")
	n.Spec.Unschedulable = true
	cs := fake.NewClientset(n)
	c, err := New(Config{Nodes: cs.CoreV1().Nodes(), TaintGPUNodes: true, JoinWait: time.Second, Poll: 10 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	act, err := c.HandOff(ctx, h100Facts(t), "key-1")
	if err != nil || act != Updated {
		t.Fatalf("HandOff = %v, %v, want updated", act, err)
	}
	got, err := cs.CoreV1().Nodes().Get(ctx, "gpu-r12-01", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"kubernetes.io/hostname": "gpu-r12-01",
		LabelGPUModel:            "h100", LabelGPUCount: "8", LabelProfile: "nvidia-dgx-h100", LabelRack: "r12", LabelValidation: "passed",
	}
	if d := cmp.Diff(wantLabels, got.Labels); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	wantTaints := []corev1.Taint{{Key: TaintGPU, Value: "present", Effect: corev1.TaintEffectNoSchedule}}
	if d := cmp.Diff(wantTaints, got.Spec.Taints); d != "" {
		t.Errorf("taints (-want +got):\n%s", d)
	}
	if got.Spec.Unschedulable {
		t.Error("node still cordoned after hand-off")
	}
	if got.Annotations[AnnotationHandOffKey] != "key-1" {
		t.Errorf("annotations = %v, want the hand-off key", got.Annotations)
	}

	// Again (a replay after a crash): nothing changes, no update is sent.
	before := len(cs.Actions())
	if act, err := c.HandOff(ctx, h100Facts(t), "key-1"); err != nil || act != Unchanged {
		t.Fatalf("HandOff again = %v, %v, want unchanged", act, err)
	}
	for _, a := range cs.Actions()[before:] {
		if a.GetVerb() != "get" {
			t.Errorf("replayed hand-off sent %s %s, want only reads", a.GetVerb(), a.GetResource().Resource)
		}
	}

	// Quarantine: cordoned, NoExecute taint, reason, verdict label.
	if err := c.Release(ctx, "gpu-r12-01", Quarantined, "GPU 3 fell off the bus"); err != nil {
		t.Fatal(err)
	}
	got, _ = cs.CoreV1().Nodes().Get(ctx, "gpu-r12-01", metav1.GetOptions{})
	if !got.Spec.Unschedulable {
		t.Error("quarantined node not cordoned")
	}
	wantTaints = append(wantTaints, corev1.Taint{Key: TaintReleased, Value: Quarantined, Effect: corev1.TaintEffectNoExecute})
	if d := cmp.Diff(wantTaints, got.Spec.Taints); d != "" {
		t.Errorf("taints after quarantine (-want +got):\n%s", d)
	}
	if got.Labels[LabelValidation] != Quarantined || got.Annotations[AnnotationReleaseReason] != "GPU 3 fell off the bus" {
		t.Errorf("labels %v annotations %v, want validation=quarantined and the reason", got.Labels, got.Annotations)
	}

	// Hand-off after the fix lifts the release.
	if _, err := c.HandOff(ctx, h100Facts(t), "key-2"); err != nil {
		t.Fatal(err)
	}
	got, _ = cs.CoreV1().Nodes().Get(ctx, "gpu-r12-01", metav1.GetOptions{})
	if got.Spec.Unschedulable || len(got.Spec.Taints) != 1 || got.Labels[LabelValidation] != "passed" {
		t.Errorf("after a second hand-off: unschedulable %v taints %v labels %v", got.Spec.Unschedulable, got.Spec.Taints, got.Labels)
	}

	// Decommission.
	if err := c.Release(ctx, "gpu-r12-01", Decommissioned, "rackstrap: decommissioned"); err != nil {
		t.Fatal(err)
	}
	got, _ = cs.CoreV1().Nodes().Get(ctx, "gpu-r12-01", metav1.GetOptions{})
	if !got.Spec.Unschedulable || got.Spec.Taints[len(got.Spec.Taints)-1].Value != Decommissioned {
		t.Errorf("decommissioned node: unschedulable %v taints %v", got.Spec.Unschedulable, got.Spec.Taints)
	}
}

func TestHandOffWaitsForJoin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := fake.NewClientset()
	c, err := New(Config{Nodes: cs.CoreV1().Nodes(), JoinWait: 5 * time.Second, Poll: 10 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		cs.CoreV1().Nodes().Create(ctx, joined("cpu-01"), metav1.CreateOptions{})
	}()
	if act, err := c.HandOff(ctx, Facts{Name: "CPU-01", Profile: "cpu", Rack: "r1", Verdict: "passed"}, "k"); err != nil || act != Updated {
		t.Fatalf("HandOff = %v, %v", act, err)
	}
	got, _ := cs.CoreV1().Nodes().Get(ctx, "cpu-01", metav1.GetOptions{})
	if _, ok := got.Labels[LabelGPUCount]; ok || len(got.Spec.Taints) != 0 {
		t.Errorf("a node without GPUs got labels %v taints %v", got.Labels, got.Spec.Taints)
	}
}

func TestHandOffNotJoined(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Nodes: fake.NewClientset().CoreV1().Nodes(), JoinWait: 30 * time.Millisecond, Poll: 10 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.HandOff(context.Background(), Facts{Name: "n1"}, "k")
	var ke *Error
	if !errors.Is(err, ErrNotJoined) || !errors.As(err, &ke) || ke.FailureClass() != ClassHandOffFailed {
		t.Fatalf("HandOff of a node that never joined = %v, want ErrNotJoined", err)
	}
	// Releasing a node the cluster never had is not an error.
	if err := c.Release(context.Background(), "n1", Decommissioned, "gone"); err != nil {
		t.Errorf("Release of an unknown node = %v", err)
	}
}

func TestFacts(t *testing.T) {
	t.Parallel()
	inv := &inventory.Inventory{GPUs: []inventory.GPU{{Name: "NVIDIA H100 80GB HBM3"}, {Name: "NVIDIA A100-SXM4-80GB"}}}
	if _, err := FactsFromInventory("n", "p", "r", "passed", inv); !errors.Is(err, ErrInvalid) {
		t.Errorf("mixed GPUs: %v, want ErrInvalid", err)
	}
	l, err := Facts{Name: "n", Profile: "Site Profile/with spaces and a very long name that goes past sixty-three characters", Verdict: "passed"}.Labels()
	if err != nil {
		t.Fatal(err)
	}
	if got := l[LabelProfile]; len(got) > 63 || got != "Site-Profile-with-spaces-and-a-very-long-name-that-goes-past-si" {
		t.Errorf("profile label = %q", got)
	}
}

// apiServer is a minimal Kubernetes API server for nodes over real HTTP:
// GET and PUT /api/v1/nodes/NAME, with a 404 Status for unknown nodes and
// a 409 for a stale resourceVersion, as the real one answers.
func apiServer(t *testing.T, nodes map[string]*corev1.Node) string {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		name, ok := strings.CutPrefix(r.URL.Path, "/api/v1/nodes/")
		w.Header().Set("Content-Type", "application/json")
		status := func(code int, reason metav1.StatusReason) {
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Code: int32(code), Reason: reason,
				Details: &metav1.StatusDetails{Name: name, Kind: "nodes"}, Message: string(reason)})
		}
		n := nodes[name]
		switch {
		case !ok:
			status(404, metav1.StatusReasonNotFound)
		case n == nil:
			status(404, metav1.StatusReasonNotFound)
		case r.Method == "GET":
			json.NewEncoder(w).Encode(n)
		case r.Method == "PUT":
			var in corev1.Node
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.URL.Query().Get("fieldManager") != "rackstrap" {
				status(400, metav1.StatusReasonBadRequest)
				return
			}
			if in.ResourceVersion != n.ResourceVersion {
				status(409, metav1.StatusReasonConflict)
				return
			}
			v, _ := strconv.Atoi(n.ResourceVersion)
			in.ResourceVersion = strconv.Itoa(v + 1)
			nodes[name] = &in
			json.NewEncoder(w).Encode(&in)
		default:
			status(405, metav1.StatusReasonMethodNotAllowed)
		}
	}))
	t.Cleanup(srv.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`"}}]
users: [{name: u, user: {token: secret-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	return kc
}

// TestRESTNodesClient: the REST client of NewNodesClient gets and updates
// nodes over HTTP as a kubeconfig says, and maps API errors.
func TestRESTNodesClient(t *testing.T) {
	t.Parallel()
	n := joined("gpu-r12-01")
	n.ResourceVersion = "7"
	nodes := map[string]*corev1.Node{"gpu-r12-01": n}
	kc := apiServer(t, nodes)
	client, err := NewNodesClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Nodes: client, JoinWait: 50 * time.Millisecond, Poll: 10 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if act, err := c.HandOff(context.Background(), h100Facts(t), "k1"); err != nil || act != Updated {
		t.Fatalf("HandOff over REST = %v, %v", act, err)
	}
	got := nodes["gpu-r12-01"]
	if got.Labels[LabelGPUModel] != "h100" || len(got.Spec.Taints) != 0 || got.ResourceVersion != "8" {
		t.Errorf("node after hand-off: labels %v taints %v rv %s", got.Labels, got.Spec.Taints, got.ResourceVersion)
	}
	if _, err := c.HandOff(context.Background(), Facts{Name: "absent"}, "k"); !errors.Is(err, ErrNotJoined) {
		t.Errorf("HandOff of an absent node over REST = %v, want ErrNotJoined", err)
	}
	if _, err := NewNodesClient(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "--kube-config") {
		t.Errorf("NewNodesClient(missing file) = %v", err)
	}
}
