package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/test/lab"
)

// TestServeRealMachines runs `rackstrap serve` with the real-machine flags
// (BMCs over Redfish, its own DHCP/TFTP/HTTP) against a simulated rack on
// loopback, declares the rack with `rackstrap apply --provision`, and waits
// for the machines to be Ready — the path a technician takes.
func TestServeRealMachines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rack, err := lab.Prepare(lab.Config{Rack: "rr", Nodes: 2, Dir: filepath.Join(dir, "artifacts"), ImageSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rack.Close()
	pw := filepath.Join(dir, "bmc.pass")
	os.WriteFile(pw, []byte("password\n"), 0o600)
	api := freeTCPAddr(t)
	b := rack.Boot
	sub := b.DHCP.Subnets[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runCtx(ctx, "serve", "--data-dir", filepath.Join(dir, "data"), "--api-listen", api,
			"--artifacts", b.ArtifactDir, "--image-store", rack.Edge.SignedImage.StoreDir, "--image", "lab-os:1.0.0", "--trusted-key", rack.TrustedKey(),
			"--boot-url", b.BootBase, "--boot-listen", b.HTTP.Addr.String(),
			"--tftp-listen", b.TFTP.Addr.String(), "--bmc-password-file", pw,
			"--dhcp-listen", fmt.Sprintf("127.0.0.1:%d", b.DHCP.Port), "--dhcp-relay-port", fmt.Sprint(b.DHCP.RelayPort),
			"--dhcp-subnet", sub.Prefix.String(), "--dhcp-range", sub.Pools[0].Start.String()+"-"+sub.Pools[0].End.String(),
			"--log-format", "json", "--log-level", "warn")
		done <- err
	}()
	server := "http://" + api
	waitFor(t, done, func() bool { _, err := run(t, "--server", server, "nodes", "list"); return err == nil })

	var m strings.Builder
	m.WriteString("racks:\n  - name: rr\n    profile: hgx-h100-8gpu\n    nodes:\n")
	for _, n := range rack.Nodes {
		fmt.Fprintf(&m, "      - slot: %d\n        bmc: %s\n", n.Identity.Slot, n.Identity.BMC)
	}
	manifest := filepath.Join(dir, "rack.yaml")
	os.WriteFile(manifest, []byte(m.String()), 0o644)
	if err := rack.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "--server", server, "apply", manifest, "--provision"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	waitFor(t, done, func() bool {
		out, err := run(t, "--server", server, "nodes", "list", "--state", "Ready", "-o", "json")
		var nodes []model.Node
		return err == nil && json.Unmarshal([]byte(out), &nodes) == nil && len(nodes) == 2
	})
	out, err := run(t, "--server", server, "nodes", "show", "rr-n01")
	for _, want := range []string{"RSIM000001", "wait-netboot-checkin", "image", "burn-in", "dhcp.ack", "agent.checkin"} {
		if !strings.Contains(out, want) {
			t.Errorf("nodes show rr-n01 lacks %q:\n%s", want, out)
		}
	}
	// The rack acceptance report, from the controller and the manifest.
	out, err = run(t, "--server", server, "report", "--rack", "rr", "--manifest", manifest, "--format", "json")
	var rep struct {
		Accepted bool
		Summary  struct{ Expected, Found, Missing, Quarantined int }
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if !rep.Accepted || rep.Summary.Expected != 2 || rep.Summary.Found != 2 || rep.Summary.Missing != 0 {
		t.Errorf("report = %+v; want 2 expected, 2 found, accepted", rep)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve stopped with %v", err)
	}
}

func runCtx(ctx context.Context, args ...string) (string, error) {
	cmd := newRootCmd()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func waitFor(t *testing.T, done chan error, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute) // generous: CI machines run under load
	for !cond() {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
