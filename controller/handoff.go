package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller/edge"
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
