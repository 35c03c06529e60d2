package lab

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// TestRealEdgeDrivesASimulatedRack runs the real controller (bmclib over
// Redfish, its own DHCP/TFTP/HTTP, agent check-ins and tasks) against four
// simulated machines, one quarantined and one with a corrupt disk.
func TestRealEdgeDrivesASimulatedRack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Every log line at debug level is kept, to look for the planted secret.
	var logs lockedBuffer
	var w io.Writer = &logs
	if testing.Verbose() {
		w = io.MultiWriter(&logs, os.Stderr)
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const secret = "Planted-BMC-Secret-7f3a9c"
	l, err := Prepare(Config{Rack: "t1", Nodes: 4, Dir: filepath.Join(dir, "artifacts"), ImageSize: 4 << 20,
		Faults: map[int]Fault{2: FaultGPUx8, 3: FaultImageCorrupt}, Password: secret, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := controller.Config{DataDir: filepath.Join(dir, "data"), APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: l.Boot,
		Engine: lifecycle.Config{MaxAttempts: 2, BackoffBase: 50 * time.Millisecond, Poll: 50 * time.Millisecond,
			Deadlines: map[string]time.Duration{lifecycle.StepWaitNetboot: 90 * time.Second, lifecycle.StepWaitFirstBoot: 90 * time.Second}}}
	ctl, done := startController(ctx, t, cfg, log)
	for _, n := range l.Nodes {
		if n.Identity.Slot == 4 {
			// Declared without a position: DHCP option 82 must teach it.
			n.Identity.Rack, n.Identity.Slot = "", 0
		}
		if _, _, err := ctl.Store.CreateNode(ctx, n, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}

	want := map[string]model.State{"t1-n01": model.Ready, "t1-n02": model.Quarantined, "t1-n03": model.Failed, "t1-n04": model.Ready}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got := map[string]model.State{}
		for name := range want {
			n, err := ctl.Store.GetNode(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			got[name] = n.State
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			for name := range want {
				n, _ := ctl.Store.GetNode(ctx, name)
				t.Logf("%s: %s %s %s", name, n.State, n.FailureClass, n.FailureMsg)
			}
			t.Fatalf("states = %v, want %v (hosts by stage: %v)", got, want, l.Stages())
		}
		time.Sleep(100 * time.Millisecond)
	}

	n1, _ := ctl.Store.GetNode(ctx, "t1-n01")
	if n1.Identity.Serial != "RSIM000001" || len(n1.Identity.MACs) == 0 || !strings.Contains(string(n1.Inventory), "H100") {
		t.Errorf("n01 identity/inventory from the BMC and agent: %+v", n1.Identity)
	}
	n2, _ := ctl.Store.GetNode(ctx, "t1-n02")
	if !strings.Contains(string(n2.Findings), "x8") {
		t.Errorf("quarantined node's findings do not mention the x8 link: %s", n2.Findings)
	}
	n3, _ := ctl.Store.GetNode(ctx, "t1-n03")
	if n3.FailureClass != model.ClassImageVerifyFailed {
		t.Errorf("corrupt-image node failed with %s (%s), want image-verify-failed", n3.FailureClass, n3.FailureMsg)
	}
	if l, err := ctl.Store.BMCLogin(ctx, "t1-n01"); err != nil || len(l.CertSHA256) != 64 {
		t.Errorf("n01's BMC certificate was not pinned at enrolment: %+v, %v", l, err)
	}
	n4, _ := ctl.Store.GetNode(ctx, "t1-n04")
	if n4.Identity.Rack != "t1" || n4.Identity.Slot != 4 {
		t.Errorf("n04's position learned from option 82 = %s/%d, want t1/4", n4.Identity.Rack, n4.Identity.Slot)
	}
	leases, err := ctl.Store.LoadLeases(ctx)
	if err != nil || len(leases) < 3 {
		t.Errorf("DHCP leases in the store: %d, %v", len(leases), err)
	}
	if _, err := ctl.Store.VerifyAudit(ctx); err != nil {
		t.Error(err)
	}
	entries, _ := ctl.Store.ListAudit(ctx, store.AuditFilter{Node: "t1-n01", Limit: 10000})
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Action] = true
	}
	for _, a := range []string{"agent.token.issue", "agent.checkin", "agent.task.create", "agent.task.finish", "state.change", "dhcp.ack", "bmc.power-cycle"} {
		if !seen[a] {
			t.Errorf("audit of n01 lacks %s", a)
		}
	}
	// The BMC password is in no log line, API reply or audit entry.
	for _, path := range []string{"/api/v1/nodes", "/api/v1/nodes/t1-n01", "/api/v1/nodes/t1-n01/timeline",
		"/api/v1/audit?limit=10000", "/api/v1/operations", "/api/v1/racks", "/metrics"} {
		resp, err := http.Get("http://" + ctl.API + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), secret) {
			t.Errorf("GET %s reveals the BMC password", path)
		}
	}
	if !strings.Contains(logs.String(), "t1-n01") {
		t.Error("the log capture saw nothing: the secret check below would prove nothing")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("controller stopped with %v", err)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("a log line reveals the BMC password")
	}
	db, err := os.ReadFile(filepath.Join(dir, "data", "rackstrap.db"))
	if err == nil && strings.Contains(string(db), secret) {
		t.Error("the store holds the BMC password in clear")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startController runs a controller until ctx ends; done yields its error.
func startController(ctx context.Context, t *testing.T, cfg controller.Config, log *slog.Logger) (*controller.Controller, chan error) {
	t.Helper()
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx, cfg, log, func(c *controller.Controller) { ready <- c }) }()
	select {
	case ctl := <-ready:
		return ctl, done
	case err := <-done:
		t.Fatalf("controller: %v", err)
		return nil, nil
	}
}

// TestUnsignedImageIsRefused: a controller does not start imaging from an
// image whose manifest is unsigned, or signed by a key it does not trust.
func TestUnsignedImageIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := Prepare(Config{Rack: "u1", Nodes: 1, Dir: filepath.Join(dir, "artifacts"), ImageSize: 1 << 20, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	run := func(si *controller.SignedImage) error {
		edgeCfg := *l.Edge
		edgeCfg.SignedImage = si
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg := controller.Config{DataDir: filepath.Join(dir, "data"), APIListen: "127.0.0.1:0", Edge: &edgeCfg, Boot: l.Boot}
		return controller.Run(ctx, cfg, log, func(*controller.Controller) { cancel() })
	}
	other, _, _ := ed25519.GenerateKey(nil)
	untrusted := *l.Edge.SignedImage
	untrusted.Trusted = []ed25519.PublicKey{other}
	if err := run(&untrusted); err == nil || !strings.Contains(err.Error(), "refusing image lab-os:1.0.0") {
		t.Errorf("image signed by an untrusted key: Run = %v", err)
	}
	sig := filepath.Join(l.Edge.SignedImage.StoreDir, "images", "lab-os", "1.0.0", "manifest.json.sig")
	if err := os.Remove(sig); err != nil {
		t.Fatal(err)
	}
	if err := run(l.Edge.SignedImage); err == nil || !strings.Contains(err.Error(), "refusing image") || !strings.Contains(err.Error(), "rackstrap image sign") {
		t.Errorf("unsigned image: Run = %v", err)
	}
}
