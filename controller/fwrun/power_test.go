package fwrun

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
)

// TestHostRestartWaitsOutANoPowerWindow: a package that restarts the host
// waits while power actions are held (audited once with the rule), the
// package before it is not held up, and the run finishes once the window
// ends, each package flashed once.
func TestHostRestartWaitsOutANoPowerWindow(t *testing.T) {
	t.Parallel()
	l := newLab(t, 1, redfishsim.Options{UpdateDuration: 10 * time.Millisecond})
	// The BIOS package restarts the host.
	base, err := os.ReadFile(filepath.Join(l.dir, "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(base), "signature: bios-2.2.0.bin.sig}", "signature: bios-2.2.0.bin.sig, reset: host}", 1)
	if doc == string(base) {
		t.Fatalf("fixture baseline changed shape:\n%s", base)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "hostreset.yaml"), []byte(strings.Replace(doc, "fleet-2026q4", "hostreset", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var window atomic.Bool
	window.Store(true)
	var asked atomic.Int64
	hold := func() *lifecycle.HeldError {
		asked.Add(1)
		if !window.Load() {
			return nil
		}
		return &lifecycle.HeldError{Gate: "policy", Rule: "power-windows", Reason: `policy rule power-windows: no power actions during "maintenance"`}
	}
	cfg := Config{Dir: l.dir, Baseline: "hostreset", TrustedKeys: []ed25519.PublicKey{l.pub}, ImageBase: "http://127.0.0.1:9", Poll: 20 * time.Millisecond, Parallel: 1,
		Client: firmware.Config{RequestTimeout: 5 * time.Second, TaskTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second, PollInterval: 20 * time.Millisecond}}
	r, err := New(cfg, Deps{Store: l.db, Log: l.log, DefaultUser: "admin", DefaultPassword: "password", Registry: prometheus.NewRegistry(), PowerHold: hold})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, r)
	plan, err := r.Plan(context.Background(), RunRequest{Baseline: "hostreset"}, "tester")
	if err != nil || plan.Run == nil {
		t.Fatalf("Plan = %+v, %v", plan, err)
	}
	deadline := time.Now().Add(120 * time.Second)
	for len(l.auditSeq(t, "firmware.held", "held")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the host-restarting package was never held")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still held after several more asks (each ask is one poll).
	for start := asked.Load(); asked.Load() < start+3; {
		if time.Now().After(deadline) {
			t.Fatal("the runner stopped asking whether the window ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ups := l.bmcs[0].Updates()
	if len(ups) != 1 || ups[0].Target != "BMC" {
		t.Errorf("inside the window the BMC accepted %+v, want the BMC package only (it restarts nothing)", ups)
	}
	if run, _ := l.db.GetFirmwareRun(context.Background(), plan.Run.ID); run.Status != store.FirmwareRunning {
		t.Errorf("run is %s inside the window, want running (held, not failed)", run.Status)
	}
	window.Store(false)
	if run := l.wait(t, plan.Run.ID); run.Status != store.FirmwareDone {
		t.Fatalf("run = %+v, want done after the window", run)
	}
	if ups := l.bmcs[0].Updates(); len(ups) != 2 {
		t.Errorf("the BMC accepted %+v, want BMC and BIOS once each", ups)
	}
	held, released := l.auditSeq(t, "firmware.held", ""), l.auditSeq(t, "firmware.released", "")
	if len(held["r1-n01"]) != 1 || len(released["r1-n01"]) != 1 || held["r1-n01"][0] > released["r1-n01"][0] {
		t.Errorf("firmware.held %v, firmware.released %v: want one of each, in order", held, released)
	}
	entries, _ := l.db.ListAudit(context.Background(), store.AuditFilter{Node: "r1-n01", Limit: 10000})
	for _, e := range entries {
		if e.Action == "firmware.held" && !strings.Contains(string(e.Detail), `"rule":"power-windows"`) {
			t.Errorf("firmware.held detail %s does not name the rule", e.Detail)
		}
	}
}
