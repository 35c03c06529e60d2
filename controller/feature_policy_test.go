package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
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

// policyClock is a clock the test moves by hand.
type policyClock struct{ ns atomic.Int64 }

func (c *policyClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *policyClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// startPolicyController runs cfg until the test ends.
func startPolicyController(t *testing.T, cfg controller.Config) *controller.Controller {
	t.Helper()
	c, _ := runController(t, cfg)
	return c
}

// runController runs cfg until stop is called or the test ends; stop
// waits for the controller to return and fails the test on its error.
func runController(t *testing.T, cfg controller.Config) (c *controller.Controller, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *controller.Controller) { ready <- c })
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case c = <-ready:
		return c, stop
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(120 * time.Second):
		t.Fatal("controller did not start")
	}
	return nil, stop
}

func policyGetJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// policyWaitFor polls cond with a generous deadline (a loaded CI machine).
func policyWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(180 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func policyHoldOf(t *testing.T, c *controller.Controller, node string) *lifecycle.Hold {
	t.Helper()
	var holds []lifecycle.Hold
	policyGetJSON(t, "http://"+c.API+"/api/v1/holds?node="+node, &holds)
	if len(holds) == 0 {
		return nil
	}
	return &holds[0]
}

// TestPolicyPowerWindowHoldsNotFails: inside a no-power window the
// lifecycle's power actions (the network boot of provisioning, the
// power-off of an operator's decommission through the API) hold the node
// instead of failing it; the hold names the rule, is audited and served by
// GET /api/v1/holds, and the node moves on when the window ends.
func TestPolicyPowerWindowHoldsNotFails(t *testing.T) {
	t.Parallel()
	p := loadPolicy(t, "api_version: rackstrap.io/policy/v1\npower:\n  timezone: UTC\n  no_power_windows:\n    - {name: maintenance, days: [tue], from: \"10:00\", to: \"12:00\"}\n")
	clock := &policyClock{}
	tue := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) // a Tuesday
	clock.Set(tue.Add(11 * time.Hour))
	cfg := controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 1},
		Features: []controller.Feature{controller.NewPolicyFeatureAt(p, clock.Now), openAPICheck{}}}
	cfg.Engine.Poll = 20 * time.Millisecond
	c := startPolicyController(t, cfg)
	ctx := context.Background()
	const node = "sim-r1-n01"
	base := "http://" + c.API

	var h *lifecycle.Hold
	policyWaitFor(t, "the policy to hold the node's network boot", func() bool {
		h = policyHoldOf(t, c, node)
		return h != nil
	})
	if h.Gate != "policy" || h.Rule != policy.RulePowerWindows || h.Step != lifecycle.StepBootNetwork ||
		!h.RetryAt.Equal(tue.Add(12*time.Hour)) || !strings.Contains(h.Reason, `"maintenance"`) {
		t.Errorf("hold = %+v, want the policy's power-windows rule at boot-network until 12:00", h)
	}
	if n, _ := c.Store.GetNode(ctx, node); n.State != model.Inspecting {
		t.Errorf("held node is %s, want Inspecting (held, not Failed)", n.State)
	}
	var view policy.View
	policyGetJSON(t, base+"/api/v1/policy", &view)
	if view.Power == nil || view.Power.Rule != policy.RulePowerWindows {
		t.Errorf("GET /api/v1/policy powerNow = %+v, want the window in force", view.Power)
	}

	clock.Set(tue.Add(12 * time.Hour))
	policyWaitFor(t, "the node to reach Ready after the window", func() bool {
		n, err := c.Store.GetNode(ctx, node)
		return err == nil && n.State == model.Ready
	})
	if h := policyHoldOf(t, c, node); h != nil {
		t.Errorf("still held after the window: %+v", h)
	}

	// A week on, inside the window again: an operator decommissions the
	// node through the API; its power-off waits.
	clock.Set(tue.Add(7*24*time.Hour + 10*time.Hour + 30*time.Minute))
	body, _ := json.Marshal(map[string]string{"action": "decommission"})
	resp, err := http.Post(base+"/api/v1/nodes/"+node+"/actions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("decommission = %d", resp.StatusCode)
	}
	policyWaitFor(t, "the decommission's power-off to be held", func() bool {
		h = policyHoldOf(t, c, node)
		return h != nil && h.Step == lifecycle.StepPowerOff
	})
	if n, _ := c.Store.GetNode(ctx, node); n.State != model.Decommissioning {
		t.Errorf("node held at power-off is %s, want Decommissioning", n.State)
	}
	clock.Set(h.RetryAt)
	policyWaitFor(t, "the decommission to finish after the window", func() bool {
		n, err := c.Store.GetNode(ctx, node)
		return err == nil && n.State == model.Enrolled
	})

	entries, err := c.Store.ListAudit(ctx, store.AuditFilter{Node: node, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	held, released := 0, 0
	for _, e := range entries {
		switch e.Action {
		case "node.held":
			held++
			if !strings.Contains(string(e.Detail), `"rule":"power-windows"`) || !strings.Contains(string(e.Detail), `"gate":"policy"`) {
				t.Errorf("node.held detail = %s, want the policy gate and the power-windows rule", e.Detail)
			}
		case "node.released":
			released++
		case "state.change":
			if strings.Contains(string(e.Detail), "Failed") {
				t.Errorf("the node failed: %s", e.Detail)
			}
		}
	}
	if held != 2 || released != 2 {
		t.Errorf("audit: %d holds, %d releases; want 2 of each", held, released)
	}
	all, _ := c.Store.ListAudit(ctx, store.AuditFilter{})
	loaded := false
	for _, e := range all {
		loaded = loaded || (e.Action == "policy.loaded" && strings.Contains(string(e.Detail), p.Digest))
	}
	if !loaded {
		t.Errorf("no policy.loaded audit entry with the policy's digest")
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
