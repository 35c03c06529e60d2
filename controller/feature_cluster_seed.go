package controller

import (
	"context"
	"fmt"

	"github.com/rackstrap/rackstrap/cluster/kubernetes"
	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/images/seed"
)

// Seeder gives the NoCloud seed an image task carries for node n (nil:
// the node gets none). edge.Edge.Image puts it into the task's payload,
// and rackstrap-agent writes it into the CIDATA partition of the disk
// after a verified write (docs/decisions/0017-nocloud-seed.md).
type Seeder func(ctx context.Context, n model.Node) (*seed.Seed, error)

// NodeSeed is the NoCloud seed of node n: its cloud-init user data with
// the kubeadm join, and meta-data naming the instance and the host, when
// the node's hand-off target (or the default) is Kubernetes; nil for any
// other node. The seed carries the bootstrap token, like the cloud-init
// route, which only admins may read.
func (f *ClusterFeature) NodeSeed(ctx context.Context, db *store.DB, n model.Node) (*seed.Seed, error) {
	if f.cfg.Kubernetes == nil {
		return nil, nil
	}
	t, err := db.HandOffTarget(ctx, n.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: hand-off target: %w", n.Name, err)
	}
	if t == "" {
		t = f.cfg.DefaultTarget
	}
	if t != manifest.TargetKubernetes {
		return nil, nil
	}
	ud, err := f.cfg.Kubernetes.Join.RenderCloudInit(n.Name)
	if err != nil {
		return nil, &seedError{fmt.Errorf("%s: render cloud-init for the NoCloud seed: %w", n.Name, err)}
	}
	host, _ := kubernetes.NodeName(n.Name) // checked by RenderCloudInit
	s := &seed.Seed{UserData: string(ud), MetaData: seed.MetaData("rackstrap-"+host, host)}
	if err := s.Validate(); err != nil {
		return nil, &seedError{fmt.Errorf("%s: %w", n.Name, err)}
	}
	return s, nil
}

// ClusterSeeder is the Seeder of the controller's cluster feature: nil
// when no cluster feature hands nodes to Kubernetes (images then carry no
// seed, as before).
func ClusterSeeder(cfg Config, db *store.DB) Seeder {
	for _, feat := range cfg.Features {
		if f, ok := feat.(*ClusterFeature); ok && f.cfg.Kubernetes != nil {
			return func(ctx context.Context, n model.Node) (*seed.Seed, error) { return f.NodeSeed(ctx, db, n) }
		}
	}
	return nil
}

// seedError fails the imaging step as an image failure: the node's seed
// could not be made, so imaging it would leave a node that cannot join.
type seedError struct{ err error }

func (e *seedError) Error() string {
	return e.err.Error() + ": rename the node to a DNS-1123 name or fix the --kube-* flags"
}
func (e *seedError) Unwrap() error        { return e.err }
func (e *seedError) FailureClass() string { return string(model.ClassImageFailed) }
