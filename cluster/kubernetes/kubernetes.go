package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Labels, taints and annotations Rackstrap owns on a node.
const (
	LabelGPUModel   = "rackstrap.io/gpu-model"
	LabelGPUCount   = "rackstrap.io/gpu-count"
	LabelProfile    = "rackstrap.io/profile"
	LabelRack       = "rackstrap.io/rack"
	LabelValidation = "rackstrap.io/validation"

	// TaintPending (NoSchedule) is registered at join and removed by
	// hand-off: nothing runs on a node before Rackstrap has handed it off.
	TaintPending = "rackstrap.io/pending"
	// TaintReleased (NoExecute, value "quarantined" or "decommissioned")
	// evicts workloads from a node Rackstrap took back.
	TaintReleased = "rackstrap.io/released"
	// TaintGPU is the usual taint of GPU nodes (value "present",
	// NoSchedule), added when Config.TaintGPUNodes is set.
	TaintGPU = "nvidia.com/gpu"

	AnnotationHandOffKey    = "rackstrap.io/handoff-key"
	AnnotationReleaseReason = "rackstrap.io/release-reason"
)

// ClassHandOffFailed is the failure class of this package's errors.
const ClassHandOffFailed = "handoff-failed"

// Sentinels for errors.Is.
var (
	// ErrNotJoined: the node has not registered with the API server.
	ErrNotJoined = errors.New("node has not joined the cluster")
	// ErrInvalid: the node's facts cannot be written as labels.
	ErrInvalid = errors.New("invalid node facts")
	// ErrAPI: the API server refused or failed a request.
	ErrAPI = errors.New("kubernetes API request failed")
)

// Error is a failed Kubernetes operation on one node.
type Error struct {
	Op, Node string
	Kind     error
	Err      error
	Remedy   string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("kubernetes %s: %s", e.Node, e.Op)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Remedy != "" {
		s += "; " + e.Remedy
	}
	return s
}
func (e *Error) Unwrap() error        { return e.Err }
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }
func (e *Error) FailureClass() string { return ClassHandOffFailed }
func apiErr(op, node string, err error) error {
	remedy := "check the controller's kubeconfig (--kube-config) and that its user may get and update nodes"
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		remedy = "the kubeconfig's user needs get, update and patch on nodes (a ClusterRole bound to it)"
	}
	return &Error{Op: op, Node: node, Kind: ErrAPI, Err: err, Remedy: remedy}
}

// Facts are what Rackstrap verified of a node, written as its labels.
type Facts struct {
	Name     string // Rackstrap node name (lower-cased to the Kubernetes name)
	Profile  string
	Rack     string
	GPUModel string // normalised model ("h100"); empty: no GPU
	GPUCount int
	// Verdict is the validation verdict: "passed" (hand-off happens only
	// after validation passed) or "passed-with-warnings".
	Verdict string
}

// FactsFromInventory takes the GPU model and count from a verified
// inventory; the model is normalised as for Slurm's Gres type.
func FactsFromInventory(name, profile, rack, verdict string, inv *inventory.Inventory) (Facts, error) {
	f := Facts{Name: name, Profile: profile, Rack: rack, Verdict: verdict}
	if inv == nil {
		return f, &Error{Op: "facts", Node: name, Kind: ErrInvalid, Err: errors.New("no inventory"), Remedy: "re-run inspection (rackstrap node revalidate)"}
	}
	models := map[string]bool{}
	for _, g := range inv.GPUs {
		t, err := slurm.GresType(g.Name)
		if err != nil {
			return f, &Error{Op: "facts", Node: name, Kind: ErrInvalid, Err: err, Remedy: "check the node's GPU inventory"}
		}
		models[t] = true
		f.GPUModel = t
	}
	if len(models) > 1 {
		return f, &Error{Op: "facts", Node: name, Kind: ErrInvalid, Err: fmt.Errorf("mixed GPU models %v", slices.Sorted(maps.Keys(models))),
			Remedy: "one node carries one GPU model; fix the hardware or its profile"}
	}
	f.GPUCount = len(inv.GPUs)
	return f, nil
}

// labelValue makes s a valid label value: characters outside
// [A-Za-z0-9._-] become '-', at most 63, alphanumeric at both ends.
func labelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	v := string(b)
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-_.")
}

// Labels returns the labels of the facts (empty facts give no label).
func (f Facts) Labels() (map[string]string, error) {
	out := map[string]string{}
	set := func(k, v string) {
		if v = labelValue(v); v != "" {
			out[k] = v
		}
	}
	set(LabelProfile, f.Profile)
	set(LabelRack, f.Rack)
	set(LabelValidation, f.Verdict)
	if f.GPUCount > 0 {
		set(LabelGPUModel, f.GPUModel)
		out[LabelGPUCount] = strconv.Itoa(f.GPUCount)
	}
	var errs []error
	for k, v := range out {
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Errorf("label %s=%q: %s", k, v, msg))
		}
	}
	if len(errs) > 0 {
		return nil, &Error{Op: "labels", Node: f.Name, Kind: ErrInvalid, Err: errors.Join(errs...)}
	}
	return out, nil
}

// NodeClient is what hand-off needs of the API server: get and update
// nodes. client-go's typed NodeInterface has these methods, so its fake
// clientset's CoreV1().Nodes() serves tests; NewNodesClient is a REST
// client for nodes alone, which keeps client-go's typed clientset (every
// API group, some 20 MB) out of the controller binary.
type NodeClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error)
	Update(ctx context.Context, node *corev1.Node, opts metav1.UpdateOptions) (*corev1.Node, error)
}

// Config configures the hand-off to one cluster.
type Config struct {
	// Nodes reaches the API server's nodes.
	Nodes NodeClient
	// TaintGPUNodes adds TaintGPU to nodes with GPUs.
	TaintGPUNodes bool
	// JoinWait is how long hand-off waits for the node to register after
	// its first boot ran kubeadm join (default 5m); Poll is how often it
	// looks (default 2s).
	JoinWait, Poll time.Duration
}

func (c Config) withDefaults() Config {
	if c.JoinWait == 0 {
		c.JoinWait = 5 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = 2 * time.Second
	}
	return c
}

// NewNodesClient builds a client for the nodes of the cluster a
// kubeconfig file names (its current context).
func NewNodesClient(kubeconfig string) (NodeClient, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: kubeconfig %s: %w; give a kubeconfig whose user may update nodes (--kube-config)", kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(rc)
	cfg.Timeout = 30 * time.Second
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.ContentType = "application/json"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	cfg.UserAgent = "rackstrap"
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client for %s: %w", rc.Host, err)
	}
	return restNodes{c}, nil
}

// restNodes gets and updates nodes over the API's REST interface.
type restNodes struct{ c *rest.RESTClient }

func (r restNodes) Get(ctx context.Context, name string, _ metav1.GetOptions) (*corev1.Node, error) {
	out := &corev1.Node{}
	err := r.c.Get().Resource("nodes").Name(name).Do(ctx).Into(out)
	return out, err
}

func (r restNodes) Update(ctx context.Context, n *corev1.Node, opts metav1.UpdateOptions) (*corev1.Node, error) {
	out := &corev1.Node{}
	req := r.c.Put().Resource("nodes").Name(n.Name).Body(n)
	if opts.FieldManager != "" {
		req = req.Param("fieldManager", opts.FieldManager)
	}
	err := req.Do(ctx).Into(out)
	return out, err
}

// Cluster applies hand-off and release to a cluster's nodes.
type Cluster struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config, log *slog.Logger) (*Cluster, error) {
	if cfg.Nodes == nil {
		return nil, errors.New("kubernetes: no API client: give --kube-config")
	}
	if log == nil {
		return nil, errors.New("kubernetes: New needs a logger")
	}
	return &Cluster{cfg: cfg.withDefaults(), log: log}, nil
}

// Action says what a hand-off changed.
type Action string

const (
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// wait returns the node once it exists, polling up to JoinWait.
func (c *Cluster) wait(ctx context.Context, name string) (*corev1.Node, error) {
	deadline := time.Now().Add(c.cfg.JoinWait)
	for {
		n, err := c.cfg.Nodes.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return n, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, apiErr("get", name, err)
		}
		if !time.Now().Before(deadline) {
			return nil, &Error{Op: "hand-off", Node: name, Kind: ErrNotJoined, Err: fmt.Errorf("not registered after %s", c.cfg.JoinWait),
				Remedy: "its first boot runs 'kubeadm join' from the cloud-init Rackstrap rendered: check cloud-init's log on the node (/var/log/cloud-init-output.log), the bootstrap token's expiry ('kubeadm token list') and the API endpoint"}
		}
		select {
		case <-ctx.Done():
			return nil, &Error{Op: "hand-off", Node: name, Kind: ErrNotJoined, Err: ctx.Err()}
		case <-time.After(c.cfg.Poll):
		}
	}
}

// setTaint adds or replaces the taint with t's key; removeTaint drops it.
func setTaint(ts []corev1.Taint, t corev1.Taint) []corev1.Taint {
	for i := range ts {
		if ts[i].Key == t.Key {
			if ts[i].Value == t.Value && ts[i].Effect == t.Effect {
				return ts
			}
			ts[i] = t
			return ts
		}
	}
	return append(ts, t)
}

func removeTaint(ts []corev1.Taint, key string) []corev1.Taint {
	return slices.DeleteFunc(ts, func(t corev1.Taint) bool { return t.Key == key })
}

// update applies change to the node under optimistic concurrency, and
// reports whether anything changed.
func (c *Cluster) update(ctx context.Context, op string, n *corev1.Node, change func(*corev1.Node)) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		want := n.DeepCopy()
		if want.Labels == nil {
			want.Labels = map[string]string{}
		}
		if want.Annotations == nil {
			want.Annotations = map[string]string{}
		}
		change(want)
		if equalNode(n, want) {
			return nil
		}
		got, err := c.cfg.Nodes.Update(ctx, want, metav1.UpdateOptions{FieldManager: "rackstrap"})
		if apierrors.IsConflict(err) {
			fresh, gerr := c.cfg.Nodes.Get(ctx, n.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			n = fresh
			return err
		}
		if err != nil {
			return err
		}
		n, changed = got, true
		return nil
	})
	if err != nil {
		return false, apiErr(op, n.Name, err)
	}
	return changed, nil
}

func equalNode(a, b *corev1.Node) bool {
	return maps.Equal(nonNil(a.Labels), nonNil(b.Labels)) && maps.Equal(nonNil(a.Annotations), nonNil(b.Annotations)) &&
		a.Spec.Unschedulable == b.Spec.Unschedulable &&
		slices.EqualFunc(a.Spec.Taints, b.Spec.Taints, func(x, y corev1.Taint) bool {
			return x.Key == y.Key && x.Value == y.Value && x.Effect == y.Effect
		})
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// HandOff labels the node with its facts, sets its taints, removes
// TaintPending and TaintReleased and uncordons it, then reads it back to
// confirm. Repeating it with the same facts changes nothing; key is
// recorded in AnnotationHandOffKey.
func (c *Cluster) HandOff(ctx context.Context, f Facts, key string) (Action, error) {
	name, err := NodeName(f.Name)
	if err != nil {
		return "", &Error{Op: "hand-off", Node: f.Name, Kind: ErrInvalid, Err: err}
	}
	labels, err := f.Labels()
	if err != nil {
		return "", err
	}
	n, err := c.wait(ctx, name)
	if err != nil {
		return "", err
	}
	apply := func(w *corev1.Node) {
		maps.Copy(w.Labels, labels)
		if f.GPUCount == 0 {
			delete(w.Labels, LabelGPUModel)
			delete(w.Labels, LabelGPUCount)
		}
		w.Spec.Taints = removeTaint(removeTaint(w.Spec.Taints, TaintPending), TaintReleased)
		if c.cfg.TaintGPUNodes && f.GPUCount > 0 {
			w.Spec.Taints = setTaint(w.Spec.Taints, corev1.Taint{Key: TaintGPU, Value: "present", Effect: corev1.TaintEffectNoSchedule})
		}
		if len(w.Spec.Taints) == 0 {
			w.Spec.Taints = nil
		}
		w.Spec.Unschedulable = false
		w.Annotations[AnnotationHandOffKey] = key
		delete(w.Annotations, AnnotationReleaseReason)
	}
	changed, err := c.update(ctx, "hand-off", n, apply)
	if err != nil {
		return "", err
	}
	// Read back: what the API server holds must be what was asked.
	got, err := c.cfg.Nodes.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", apiErr("read back", name, err)
	}
	want := got.DeepCopy()
	if want.Labels == nil {
		want.Labels = map[string]string{}
	}
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	apply(want)
	if !equalNode(got, want) {
		return "", &Error{Op: "hand-off", Node: name, Kind: ErrAPI, Err: errors.New("the node read back does not carry the labels and taints just written"),
			Remedy: "an admission webhook or another controller may rewrite node labels; check the cluster's policies"}
	}
	act := Unchanged
	if changed {
		act = Updated
	}
	c.log.Info("kubernetes: node handed off", "node", name, "action", act, "labels", labels)
	return act, nil
}

// Release kind: the value of TaintReleased.
const (
	Quarantined    = "quarantined"
	Decommissioned = "decommissioned"
)

// Release cordons the node and taints it TaintReleased=kind:NoExecute,
// recording reason in AnnotationReleaseReason; a quarantined node's
// validation label becomes "quarantined". A node the cluster does not
// know has nothing to release.
func (c *Cluster) Release(ctx context.Context, node, kind, reason string) error {
	if kind != Quarantined && kind != Decommissioned {
		return fmt.Errorf("kubernetes: release kind %q: want %s or %s", kind, Quarantined, Decommissioned)
	}
	name, err := NodeName(node)
	if err != nil {
		return &Error{Op: "release", Node: node, Kind: ErrInvalid, Err: err}
	}
	n, err := c.cfg.Nodes.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.log.Info("kubernetes: node not in the cluster; nothing to cordon", "node", name)
		return nil
	}
	if err != nil {
		return apiErr("release", name, err)
	}
	_, err = c.update(ctx, "release", n, func(w *corev1.Node) {
		w.Spec.Unschedulable = true
		w.Spec.Taints = setTaint(w.Spec.Taints, corev1.Taint{Key: TaintReleased, Value: kind, Effect: corev1.TaintEffectNoExecute})
		w.Annotations[AnnotationReleaseReason] = reason
		if kind == Quarantined {
			w.Labels[LabelValidation] = Quarantined
		}
	})
	if err != nil {
		return err
	}
	c.log.Info("kubernetes: node cordoned", "node", name, "kind", kind, "reason", reason)
	return nil
}
