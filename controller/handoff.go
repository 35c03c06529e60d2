package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/rackstrap/rackstrap/cluster/kubernetes"
	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// SlurmHandOff hands nodes to a Slurm cluster as dynamic nodes carrying the
// verified facts (CPUs, memory, Gres from the validated inventory) and
// features naming the profile and the rack; decommissioning drains and
// removes them.
type SlurmHandOff struct {
	cluster *slurm.Cluster
	db      *store.DB
	log     *slog.Logger
}

var _ edge.Cluster = (*SlurmHandOff)(nil)

// NewSlurmHandOff builds the hand-off to the cluster scontrol reaches with cfg.
func NewSlurmHandOff(cfg slurm.Config, db *store.DB, log *slog.Logger) (*SlurmHandOff, error) {
	c, err := slurm.New(cfg, log)
	if err != nil {
		return nil, err
	}
	return &SlurmHandOff{cluster: c, db: db, log: log}, nil
}

// feature makes a Slurm feature word ("profile-nvidia-dgx-h100").
func feature(kind, value string) string {
	var b strings.Builder
	b.WriteString(kind + "-")
	for _, r := range strings.ToLower(value) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	return b.String()
}

// HandOff registers the node (idempotently) and resumes it.
func (h *SlurmHandOff) HandOff(ctx context.Context, n model.Node, inv *inventory.Inventory, key string) error {
	var features []string
	if n.Profile != "" {
		features = append(features, feature("profile", n.Profile))
	}
	if n.Identity.Rack != "" {
		features = append(features, feature("rack", n.Identity.Rack))
	}
	sn, err := slurm.FromInventory(n.Name, h.addr(ctx, n), inv, features)
	if err != nil {
		return &handOffError{fmt.Errorf("%s: %w", n.Name, err)}
	}
	act, err := h.cluster.Reconcile(ctx, sn, key)
	if err != nil {
		return err
	}
	h.log.Info("slurm: node registered", "node", n.Name, "action", act, "gres", fmt.Sprintf("gpu:%s:%d", sn.GPUModel, sn.GPUCount))
	return h.cluster.Resume(ctx, n.Name)
}

// Release drains the node with the reason, then removes it.
func (h *SlurmHandOff) Release(ctx context.Context, n model.Node, reason, key string) error {
	if err := h.cluster.Drain(ctx, n.Name, reason); err != nil && !errors.Is(err, slurm.ErrNotFound) {
		return err
	}
	return h.cluster.Remove(ctx, n.Name)
}

// addr is where slurmctld reaches the node: its DHCP lease, else its name.
func (h *SlurmHandOff) addr(ctx context.Context, n model.Node) string {
	ip, err := h.db.BoundIP(ctx, n.Identity.MACs)
	if err != nil || ip == "" {
		return n.Name
	}
	return ip
}

type handOffError struct{ err error }

func (e *handOffError) Error() string        { return e.err.Error() }
func (e *handOffError) Unwrap() error        { return e.err }
func (e *handOffError) FailureClass() string { return string(model.ClassHandOffFailed) }

// KubernetesHandOff hands nodes to a Kubernetes cluster: the node joined by
// itself at first boot (kubeadm join from the cloud-init the controller
// renders, which the agent wrote into the disk's CIDATA seed partition:
// ClusterSeeder), and hand-off labels it with the verified facts, lifts the
// pending taint and uncordons it; release cordons and taints it.
type KubernetesHandOff struct {
	cluster *kubernetes.Cluster
	log     *slog.Logger
}

var _ edge.Cluster = (*KubernetesHandOff)(nil)

// NewKubernetesHandOff builds the hand-off to the cluster cfg.Nodes reaches.
func NewKubernetesHandOff(cfg kubernetes.Config, log *slog.Logger) (*KubernetesHandOff, error) {
	c, err := kubernetes.New(cfg, log)
	if err != nil {
		return nil, err
	}
	return &KubernetesHandOff{cluster: c, log: log}, nil
}

// HandOff labels and uncordons the node. The lifecycle hands off only
// validated nodes, so the verdict label is "passed".
func (h *KubernetesHandOff) HandOff(ctx context.Context, n model.Node, inv *inventory.Inventory, key string) error {
	f, err := kubernetes.FactsFromInventory(n.Name, n.Profile, n.Identity.Rack, "passed", inv)
	if err != nil {
		return err
	}
	_, err = h.cluster.HandOff(ctx, f, key)
	return err
}

// Release cordons the node: quarantined when the node is Quarantined,
// else decommissioned.
func (h *KubernetesHandOff) Release(ctx context.Context, n model.Node, reason, key string) error {
	kind := kubernetes.Decommissioned
	if n.State == model.Quarantined {
		kind = kubernetes.Quarantined
	}
	return h.cluster.Release(ctx, n.Name, kind, reason)
}

// Dispatcher hands each node to the cluster its target names: the target
// recorded for the node (from the rack manifest's handoff:, set through the
// API), else the default, else the only cluster configured.
type Dispatcher struct {
	db       *store.DB
	clusters map[string]edge.Cluster
	def      string
	log      *slog.Logger
}

var _ edge.Cluster = (*Dispatcher)(nil)

// NewDispatcher routes to clusters by target name ("slurm",
// "kubernetes"); def is the target of nodes that have none ("" allowed
// when only one cluster is configured).
func NewDispatcher(db *store.DB, clusters map[string]edge.Cluster, def string, log *slog.Logger) (*Dispatcher, error) {
	for t, c := range clusters {
		if c == nil {
			delete(clusters, t)
		} else if !slices.Contains(manifest.Targets, t) {
			return nil, fmt.Errorf("hand-off: unknown target %q (known: %s)", t, strings.Join(manifest.Targets, ", "))
		}
	}
	if len(clusters) == 0 {
		return nil, errors.New("hand-off: no cluster configured")
	}
	if def != "" && clusters[def] == nil {
		return nil, fmt.Errorf("hand-off: the default target %s has no cluster configured: configure it (--slurm-conf or --kube-config) or choose another default", def)
	}
	if def == "" && len(clusters) == 1 {
		for t := range clusters {
			def = t
		}
	}
	return &Dispatcher{db: db, clusters: clusters, def: def, log: log}, nil
}

// Target returns the target of node n and its cluster.
func (d *Dispatcher) Target(ctx context.Context, n model.Node) (string, edge.Cluster, error) {
	t, err := d.db.HandOffTarget(ctx, n.Name)
	if err != nil {
		return "", nil, err
	}
	if t == "" {
		t = d.def
	}
	if t == "" {
		return "", nil, &handOffError{fmt.Errorf("%s: no hand-off target: give its rack (or the node) 'handoff: slurm' or 'handoff: kubernetes' in the rack manifest and apply it, or start the controller with --handoff-default", n.Name)}
	}
	c := d.clusters[t]
	if c == nil {
		return t, nil, &handOffError{fmt.Errorf("%s: its hand-off target is %s, but this controller has no %s cluster configured: configure one (--slurm-conf or --kube-config) or change the node's handoff target", n.Name, t, t)}
	}
	return t, c, nil
}

// HandOff hands the node to its target's cluster, audited with the target.
func (d *Dispatcher) HandOff(ctx context.Context, n model.Node, inv *inventory.Inventory, key string) error {
	t, c, err := d.Target(ctx, n)
	if err != nil {
		return err
	}
	err = c.HandOff(ctx, n, inv, key)
	d.audit(ctx, n, "handoff.cluster", t, key, err)
	return err
}

// Release releases the node from its target's cluster.
func (d *Dispatcher) Release(ctx context.Context, n model.Node, reason, key string) error {
	t, c, err := d.Target(ctx, n)
	if err != nil {
		return err
	}
	err = c.Release(ctx, n, reason, key)
	d.audit(ctx, n, "release.cluster", t, key, err)
	return err
}

func (d *Dispatcher) audit(ctx context.Context, n model.Node, action, target, key string, err error) {
	outcome, detail := "ok", map[string]string{"target": target, "key": key}
	if err != nil {
		outcome, detail["error"] = "failed", err.Error()
	}
	if aerr := d.db.Audit(ctx, store.AuditInput{Actor: "controller", Action: action, Node: n.Name, Outcome: outcome, Detail: detail}); aerr != nil {
		d.log.Warn("hand-off: audit", "node", n.Name, "err", aerr)
	}
}
