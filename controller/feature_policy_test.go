package controller_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/policy"
	"github.com/rackstrap/rackstrap/controller/store"
	imgstore "github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/test/lab"
)

// openAPICheck fails the start when the served document and routes differ
// (it starts after the features under test).
type openAPICheck struct{}

func (openAPICheck) Name() string { return "openapi-check" }
func (openAPICheck) Start(_ context.Context, rt *controller.Runtime) error {
	return rt.API.CheckOpenAPI()
}

func loadPolicy(t *testing.T, doc string) *policy.Policy {
	t.Helper()
	f := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(f, []byte(doc), 0o644)
	p, err := policy.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyHoldsNodeInPowerWindow: inside a no-power window a validated
// node is held from imaging, the hold names the rule and is audited, and
// the policy in force is served and audited.
func TestPolicyHoldsNodeInPowerWindow(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, "api_version: rackstrap.io/policy/v1\npower:\n  timezone: UTC\n  no_power_windows:\n    - {name: always, from: \"00:00\", to: \"00:00\"}\n")
	cfg := controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 1},
		Features: []controller.Feature{controller.NewPolicyFeature(p), openAPICheck{}}}
	cfg.Engine.Poll = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *controller.Controller) { ready <- c })
	}()
	var c *controller.Controller
	select {
	case c = <-ready:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	deadline := time.Now().Add(60 * time.Second)
	var held string
	for held == "" {
		if time.Now().After(deadline) {
			t.Fatal("the node was never held by the policy")
		}
		time.Sleep(50 * time.Millisecond)
		entries, err := c.Store.ListAudit(ctx, store.AuditFilter{Node: "sim-r1-n01"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Action == "node.held" {
				held = string(e.Detail)
			}
		}
	}
	if !strings.Contains(held, `"gate":"policy"`) || !strings.Contains(held, "policy rule power-windows") || !strings.Contains(held, `\"always\"`) {
		t.Errorf("node.held detail = %s, want the policy gate and the power-windows rule", held)
	}
	if n, _ := c.Store.GetNode(ctx, "sim-r1-n01"); n.State != "Validated" {
		t.Errorf("held node is %s, want Validated", n.State)
	}
	all, _ := c.Store.ListAudit(ctx, store.AuditFilter{})
	loaded := false
	for _, e := range all {
		loaded = loaded || (e.Action == "policy.loaded" && strings.Contains(string(e.Detail), p.Digest))
	}
	if !loaded {
		t.Errorf("no policy.loaded audit entry with the policy's digest")
	}
	resp, err := http.Get("http://" + c.API + "/api/v1/policy")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"power-windows"`) || !strings.Contains(string(b), `"powerNow"`) {
		t.Errorf("GET /api/v1/policy = %d %s", resp.StatusCode, b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPolicyRefusesImage: a controller whose image is not signed by a
// signer the policy names, or that needs firmware compliance without the
// firmware feature, does not start, and says which rule refused.
func TestPolicyRefusesImage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := lab.Prepare(lab.Config{Rack: "p1", Nodes: 1, Dir: filepath.Join(dir, "artifacts"), ImageSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	imgstore.GenerateKey(filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub"))
	for name, tc := range map[string]struct{ doc, want string }{
		"untrusted signer": {"api_version: rackstrap.io/policy/v1\ntrusted_signers: [{name: other, key_file: " + filepath.Join(dir, "other.pub") + "}]\n", "policy rule signed-images: image lab-os:1.0.0"},
		"not allowed":      {"api_version: rackstrap.io/policy/v1\ntrusted_signers: [{name: lab, key_file: " + l.TrustedKey() + "}]\nrequire: {firmware_compliance: true}\n", "policy rule firmware-compliance"},
	} {
		p := loadPolicy(t, tc.doc)
		cfg := controller.Config{DataDir: filepath.Join(dir, name), APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: l.Boot,
			Features: []controller.Feature{controller.NewPolicyFeature(p)}}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := controller.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(*controller.Controller) { t.Errorf("%s: the controller started", name) })
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run() = %v, want %q", name, err, tc.want)
		}
	}
}
