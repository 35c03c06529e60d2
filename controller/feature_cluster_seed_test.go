package controller

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/images/seed"
)

// TestNodeSeed: a node handed to Kubernetes gets a NoCloud seed whose
// user data is its rendered cloud-init (kubeadm join); other nodes get
// none; the seed travels in an image task payload as the agent reads it.
func TestNodeSeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range []string{"K8s-01", "slurm-01", "plain-01", "bad_name"} {
		if _, _, err := db.CreateNode(ctx, model.Node{Name: name, Identity: model.Identity{Rack: "r1"}}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	db.SetHandOffTarget(ctx, "K8s-01", "kubernetes", "test")
	db.SetHandOffTarget(ctx, "bad_name", "kubernetes", "test")
	db.SetHandOffTarget(ctx, "slurm-01", "slurm", "test")
	get := func(name string) model.Node {
		n, err := db.GetNode(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	if s := ClusterSeeder(Config{}, db); s != nil {
		t.Error("ClusterSeeder without a cluster feature is not nil")
	}
	noKube, err := NewClusterFeature(ClusterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if s := ClusterSeeder(Config{Features: []Feature{noKube}}, db); s != nil {
		t.Error("ClusterSeeder without Kubernetes is not nil")
	}

	feat, err := NewClusterFeature(ClusterConfig{Kubernetes: &KubernetesConfig{Nodes: fake.NewClientset().CoreV1().Nodes(), Join: join}})
	if err != nil {
		t.Fatal(err)
	}
	seeder := ClusterSeeder(Config{Features: []Feature{feat}}, db)
	if seeder == nil {
		t.Fatal("ClusterSeeder with Kubernetes is nil")
	}
	s, err := seeder(ctx, get("K8s-01"))
	if err != nil || s == nil {
		t.Fatalf("seed of a Kubernetes node = %v, %v", s, err)
	}
	want, _ := join.RenderCloudInit("K8s-01")
	if s.UserData != string(want) || !strings.Contains(s.UserData, "kubeadm") {
		t.Errorf("user-data = %q, want the rendered cloud-init", s.UserData)
	}
	if s.MetaData != "instance-id: rackstrap-k8s-01\nlocal-hostname: k8s-01\n" {
		t.Errorf("meta-data = %q", s.MetaData)
	}
	for _, name := range []string{"slurm-01", "plain-01"} {
		if s, err := seeder(ctx, get(name)); s != nil || err != nil {
			t.Errorf("seed of %s = %v, %v; want none", name, s, err)
		}
	}
	// the default target applies to nodes without one
	def, err := NewClusterFeature(ClusterConfig{Kubernetes: &KubernetesConfig{Nodes: fake.NewClientset().CoreV1().Nodes(), Join: join}, DefaultTarget: "kubernetes"})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := def.NodeSeed(ctx, db, get("plain-01")); s == nil || err != nil {
		t.Errorf("seed of a node defaulting to Kubernetes = %v, %v", s, err)
	}
	// a name kubelet cannot register fails imaging with the remedy
	_, err = seeder(ctx, get("bad_name"))
	var fc interface{ FailureClass() string }
	if err == nil || !errors.As(err, &fc) || fc.FailureClass() != string(model.ClassImageFailed) || !strings.Contains(err.Error(), "DNS-1123") {
		t.Errorf("seed of bad_name = %v, want an image failure naming the fix", err)
	}

	// in an image task, as the agent decodes it
	payload, err := json.Marshal(struct {
		URL  string     `json:"url"`
		Seed *seed.Seed `json:"seed,omitempty"`
	}{"http://10.0.0.1/i.raw", s})
	if err != nil {
		t.Fatal(err)
	}
	got, err := seed.FromTask(payload)
	if err != nil || got == nil || *got != *s {
		t.Errorf("seed.FromTask(payload) = %+v, %v; want %+v", got, err, s)
	}
}
