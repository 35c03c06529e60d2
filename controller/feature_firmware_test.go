package controller_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/fwrun"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
)

// A node behind its baseline is held before imaging (--firmware-hold
// imaging) until a firmware run brings it there; then the lifecycle takes
// it on to Ready.
func TestFirmwareHoldUntilARunUpdatesTheNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data, fwDir, pub, sim := firmwareFixture(t)

	cfg := controller.Config{DataDir: data, APIListen: "127.0.0.1:0",
		Simulate: &controller.SimConfig{Nodes: 0, Edge: simedge.Config{BootTime: 50 * time.Millisecond, ImageTime: 50 * time.Millisecond, BurnInTime: 50 * time.Millisecond}},
		Engine:   lifecycle.Config{Poll: 100 * time.Millisecond, BackoffBase: 100 * time.Millisecond},
		Features: []controller.Feature{controller.NewFirmwareFeature(fwrun.Config{Dir: fwDir, Baseline: "fleet", Hold: fwrun.HoldImaging,
			TrustedKeys: []ed25519.PublicKey{pub}, Poll: 50 * time.Millisecond,
			Client: firmware.Config{PollInterval: 20 * time.Millisecond, TaskTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second}})}}
	runCtx, cancel := context.WithCancel(ctx)
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(runCtx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *controller.Controller) { ready <- c })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	var ctl *controller.Controller
	select {
	case ctl = <-ready:
	case err := <-done:
		t.Fatalf("Run = %v", err)
	}

	held := func() string {
		entries, _ := ctl.Store.ListAudit(ctx, store.AuditFilter{Node: "fw-n01"})
		for _, e := range entries {
			if e.Action == "node.held" {
				return string(e.Detail)
			}
		}
		return ""
	}
	fwWaitUntil(t, "the node held before imaging", func() bool { return held() != "" })
	n, _ := ctl.Store.GetNode(ctx, "fw-n01")
	if n.State != model.Validated || !strings.Contains(held(), "BMC 1.4.2 is behind baseline 1.5.0; BIOS 2.1.7 is behind baseline 2.2.0: run 'rackstrap firmware apply --baseline fleet'") {
		t.Fatalf("node %s, held %s", n.State, held())
	}

	c := fwrun.NewClient("http://"+ctl.API, http.DefaultClient, "")
	if _, err := c.Start(ctx, fwrun.RunRequest{}); err != nil {
		t.Fatal(err)
	}
	fwWaitUntil(t, "the node Ready", func() bool {
		n, _ := ctl.Store.GetNode(ctx, "fw-n01")
		return n.State == model.Ready
	})
	if ups := sim.Updates(); len(ups) != 2 {
		t.Errorf("the BMC accepted %+v, want BMC and BIOS once each", ups)
	}
	entries, _ := ctl.Store.ListAudit(ctx, store.AuditFilter{Node: "fw-n01"})
	var order []string
	succeeded := false
	for _, e := range entries {
		switch e.Action {
		case "node.held":
			// A hold for the run itself, judged while the run was still
			// updating the node, can be audited just after the run
			// recorded its success (CI saw it once); a hold for the
			// baseline after the update would be wrong.
			var d struct{ Rule string }
			if succeeded && json.Unmarshal(e.Detail, &d) == nil && d.Rule == fwrun.RuleFirmwareRun {
				continue
			}
		case "firmware.node.succeeded":
			succeeded = true
		case "node.released":
		default:
			continue
		}
		order = append(order, e.Action)
	}
	if got := strings.Join(order, " "); !strings.HasPrefix(got, "node.held") || !strings.HasSuffix(got, "firmware.node.succeeded node.released") {
		t.Errorf("audit order %q: want held, the update, then released", got)
	}
}

// firmwareFixture makes a store with one node, fw-n01, whose simulated
// BMC reports BMC 1.4.2 and BIOS 2.1.7, and a firmware directory with the
// baseline "fleet" (BMC 1.5.0, BIOS 2.2.0) and its packages signed by pub.
func firmwareFixture(t *testing.T) (data, fwDir string, pub ed25519.PublicKey, sim *redfishsim.BMC) {
	t.Helper()
	ctx := context.Background()
	fleet, err := redfishsim.Start(redfishsim.Config{HTTP: true}, redfishsim.SampleNode(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	sim = fleet.BMCs()[0]

	data = t.TempDir()
	db, err := store.Open(ctx, "", data, store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateNode(ctx, model.Node{Name: "fw-n01", Identity: model.Identity{BMC: sim.Endpoint(), Rack: "fw", Slot: 1}, Profile: "qemu-vm", Desired: model.WantReady}, "test"); err != nil {
		t.Fatal(err)
	}
	box, err := secrets.LoadOrCreate(filepath.Join(data, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal("password", "fw-n01")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetBMCLogin(ctx, "fw-n01", "admin", sealed, "test"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	fwDir = t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, p := range []struct{ id, file, version string }{{"BMC", "bmc-1.5.0.bin", "1.5.0"}, {"BIOS", "bios-2.2.0.bin", "2.2.0"}} {
		file := filepath.Join(fwDir, p.file)
		if err := os.WriteFile(file, []byte("firmware "+p.file), 0o644); err != nil {
			t.Fatal(err)
		}
		sig, sha, err := firmware.SignPackage(file, priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file+".sig", sig, 0o644); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, fmt.Sprintf("  - id: %s\n    version: %s\n    package: {file: %s, sha256: %s, signature: %s.sig}\n", p.id, p.version, p.file, sha, p.file))
	}
	if err := os.WriteFile(filepath.Join(fwDir, "fleet.yaml"), []byte("name: fleet-2026q4\ncomponents:\n"+strings.Join(rules, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return data, fwDir, pub, sim
}

func fwWaitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(180 * time.Second) // generous: a loaded CI machine
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
