package slurm

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/test/cluster/slurmtest"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newCluster returns a Cluster that drives ctl's slurmctld.
func newCluster(t *testing.T, ctl *slurmtest.Controller, cfg Config) *Cluster {
	t.Helper()
	cfg.Conf, cfg.Netns = ctl.Conf, ctl.Netns
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	c, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return c
}

func dgxNode(t *testing.T, name string, features ...string) Node {
	t.Helper()
	n, err := FromInventory(name, "127.0.0.1", fixtures.DGXH100("1650323000101"), features)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantShown fails unless `scontrol show node NAME -o` contains every field.
func wantShown(t *testing.T, ctl *slurmtest.Controller, name string, fields ...string) string {
	t.Helper()
	line := ctl.ShowNode(name)
	for _, f := range fields {
		if !strings.Contains(" "+line+" ", " "+f+" ") && !strings.Contains(" "+line, " "+f) {
			t.Errorf("scontrol show node %s -o lacks %q:\n%s", name, f, line)
		}
	}
	return line
}

// wantClass checks the failure class and logs the message a user reads.
func wantClass(t *testing.T, err error) {
	t.Helper()
	t.Logf("error reads: %v", err)
	var fc interface{ FailureClass() string }
	if !errors.As(err, &fc) || fc.FailureClass() != "handoff-failed" {
		t.Errorf("error %v has no FailureClass handoff-failed", err)
	}
}

// TestHandOff walks one node through hand-off, quarantine, return and
// decommission against a real slurmctld.
func TestHandOff(t *testing.T) {
	t.Parallel()
	ctl := slurmtest.Start(t, slurmtest.Options{})
	c := newCluster(t, ctl, Config{Features: []string{"rackstrap"}})
	ctx := context.Background()
	n := dgxNode(t, "gpu001", "dgx-h100", "rack-r1")

	act, err := c.Reconcile(ctx, n, "gpu001/hand-off/1")
	if err != nil || act != Created {
		t.Fatalf("Register(gpu001) = %q, %v, want %q", act, err, Created)
	}
	wantShown(t, ctl, "gpu001", "Gres=gpu:h100:8", "AvailableFeatures=rackstrap,dgx-h100,rack-r1,h100",
		"CPUTot=224", "Sockets=2", "CoresPerSocket=56", "ThreadsPerCore=2", "RealMemory=2034237", "NodeAddr=127.0.0.1",
		"Partitions="+slurmtest.Partition)

	// After a crash the engine replays the step with the same key.
	if act, err := c.Reconcile(ctx, n, "gpu001/hand-off/1"); err != nil || act != Unchanged {
		t.Fatalf("Register(gpu001) again = %q, %v, want %q", act, err, Unchanged)
	}

	if err := c.Resume(ctx, "gpu001"); err != nil {
		t.Fatalf("Resume(gpu001) on a node never drained = %v", err)
	}

	// Quarantine.
	reason := "rackstrap: quarantined: GPU 3 at PCIe x8 (key=gpu001/quarantine/1)"
	if err := c.Drain(ctx, "gpu001", reason); err != nil {
		t.Fatalf("Drain(gpu001) = %v", err)
	}
	st, err := c.State(ctx, "gpu001")
	if err != nil {
		t.Fatalf("State(gpu001) = %v", err)
	}
	if !st.Drained() || st.Reason != reason || st.ReasonUser == "" {
		t.Errorf("State(gpu001) after Drain = %s reason %q by %q, want DRAIN with %q", st.State, st.Reason, st.ReasonUser, reason)
	}
	line := wantShown(t, ctl, "gpu001", "Reason="+reason)
	if !strings.Contains(line, "+DRAIN") {
		t.Errorf("scontrol show node gpu001 -o after Drain has no DRAIN:\n%s", line)
	}
	if err := c.Drain(ctx, "gpu001", reason); err != nil {
		t.Errorf("Drain(gpu001) again = %v", err)
	}

	// A moved node gets its features updated in place; new memory needs a
	// delete and create, which keeps the drain.
	moved := dgxNode(t, "gpu001", "dgx-h100", "rack-r2")
	if act, err := c.Reconcile(ctx, moved, "gpu001/hand-off/2"); err != nil || act != Updated {
		t.Fatalf("Register(gpu001 in rack-r2) = %q, %v, want %q", act, err, Updated)
	}
	wantShown(t, ctl, "gpu001", "AvailableFeatures=rackstrap,dgx-h100,rack-r2,h100", "Reason="+reason)
	fewer := moved
	fewer.RealMemoryMiB -= 65536
	fewer.GPUCount, fewer.GPUDevices = 7, fewer.GPUDevices[:7]
	if act, err := c.Reconcile(ctx, fewer, "gpu001/hand-off/3"); err != nil || act != Replaced {
		t.Fatalf("Register(gpu001 with less memory) = %q, %v, want %q", act, err, Replaced)
	}
	wantShown(t, ctl, "gpu001", "RealMemory=1968701", "Gres=gpu:h100:7", "Reason="+reason)
	if st, _ := c.State(ctx, "gpu001"); !st.Drained() {
		t.Errorf("State(gpu001) after replacement = %s, want it still drained", st.State)
	}

	// Back in service.
	if err := c.Resume(ctx, "gpu001"); err != nil {
		t.Fatalf("Resume(gpu001) = %v", err)
	}
	if st, err := c.State(ctx, "gpu001"); err != nil || st.Drained() {
		t.Errorf("State(gpu001) after Resume = %s, %v, want not drained", st.State, err)
	}
	if err := c.Resume(ctx, "gpu001"); err != nil {
		t.Errorf("Resume(gpu001) again = %v", err)
	}

	// Decommission.
	if err := c.Drain(ctx, "gpu001", "rackstrap: decommission"); err != nil {
		t.Fatalf("Drain(gpu001) = %v", err)
	}
	if err := c.Remove(ctx, "gpu001"); err != nil {
		t.Fatalf("Remove(gpu001) = %v", err)
	}
	if out, err := ctl.Scontrol("show", "node", "gpu001", "-o"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("scontrol show node gpu001 after Remove = %v:\n%s", err, out)
	}
	if _, err := c.State(ctx, "gpu001"); !errors.Is(err, ErrNotFound) {
		t.Errorf("State(gpu001) after Remove = %v, want ErrNotFound", err)
	}
	if err := c.Remove(ctx, "gpu001"); err != nil {
		t.Errorf("Remove(gpu001) again = %v", err)
	}
	err = c.Drain(ctx, "gpu001", "x")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "PrivateData=cloud") {
		t.Errorf("Drain(removed gpu001) = %v, want ErrNotFound with a remedy", err)
	}
	wantClass(t, err)
	if err := c.Drain(ctx, "gpu001", " \n"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Drain(gpu001, no reason) = %v, want ErrInvalid", err)
	}

	// A node without GPUs.
	vm, err := FromInventory("vm1", "127.0.0.1", fixtures.QEMUVM("52:54:00:00:00:01"), []string{"qemu-vm"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, vm, "vm1/hand-off/1"); err != nil {
		t.Fatalf("Register(vm1) = %v", err)
	}
	wantShown(t, ctl, "vm1", "Gres=(null)", "CPUTot=2", "RealMemory=993", "AvailableFeatures=rackstrap,qemu-vm")
	if act, err := c.Reconcile(ctx, vm, "vm1/hand-off/1"); err != nil || act != Unchanged {
		t.Errorf("Register(vm1) again = %q, %v, want %q", act, err, Unchanged)
	}
}

// TestSiteConfiguration covers what a site's slurm.conf can get wrong or
// do differently: a static node of the same name, a partition to join,
// PrivateData=cloud missing, a full node table.
func TestSiteConfiguration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("static node and partition", func(t *testing.T) {
		t.Parallel()
		ctl := slurmtest.Start(t, slurmtest.Options{Extra: []string{
			"NodeName=static1 NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 State=UNKNOWN",
			"PartitionName=gpu Nodes=static1 State=UP",
		}})
		c := newCluster(t, ctl, Config{Partition: "gpu"})
		n := dgxNode(t, "gpu001")
		if err := c.Register(ctx, n, "k1"); err != nil {
			t.Fatalf("Register(gpu001, partition gpu) = %v", err)
		}
		wantShown(t, ctl, "gpu001", "Partitions=batch,gpu")
		if out, _ := ctl.Scontrol("show", "partition", "gpu", "-o"); !strings.Contains(out, "Nodes=gpu001,static1 ") {
			t.Errorf("partition gpu after Register:\n%s", out)
		}
		if act, err := c.Reconcile(ctx, n, "k1"); err != nil || act != Unchanged {
			t.Errorf("Register(gpu001) again = %q, %v, want %q", act, err, Unchanged)
		}

		static := Node{Name: "static1", Addr: "127.0.0.1", CPUs: 8, RealMemoryMiB: 1000}
		if err := c.Register(ctx, static, "k2"); !errors.Is(err, ErrConflict) {
			t.Errorf("Register(static1 with other CPUs) = %v, want ErrConflict", err)
		}
		if err := c.Remove(ctx, "static1"); !errors.Is(err, ErrConflict) {
			t.Errorf("Remove(static1) = %v, want ErrConflict", err)
		}
		wantShown(t, ctl, "static1", "CPUTot=4")

		other := newCluster(t, ctl, Config{Partition: "nosuch"})
		err := other.Register(ctx, dgxNode(t, "gpu002"), "k3")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "define PartitionName=nosuch") {
			t.Errorf("Register(partition nosuch) = %v, want ErrNotFound naming the partition", err)
		}
	})
	t.Run("no PrivateData=cloud", func(t *testing.T) {
		t.Parallel()
		ctl := slurmtest.Start(t, slurmtest.Options{NoPrivateDataCloud: true})
		c := newCluster(t, ctl, Config{})
		err := c.Register(ctx, dgxNode(t, "gpu001"), "k1")
		if !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "PrivateData=cloud") {
			t.Errorf("Register() without PrivateData=cloud = %v, want ErrNotApplied naming PrivateData=cloud", err)
		}
		wantClass(t, err)
		// slurmctld hides the node but deletes it.
		if err := c.Remove(ctx, "gpu001"); err != nil {
			t.Errorf("Remove(hidden gpu001) = %v", err)
		}
		if out, err := ctl.Scontrol("delete", "NodeName=gpu001"); err == nil {
			t.Errorf("scontrol delete after Remove succeeded, so Remove left the node:\n%s", out)
		}
	})
	t.Run("no GresTypes=gpu", func(t *testing.T) {
		t.Parallel()
		// 22.05 creates the node without its Gres, exit status 0.
		ctl := slurmtest.Start(t, slurmtest.Options{NoGresTypes: true})
		c := newCluster(t, ctl, Config{})
		err := c.Register(ctx, dgxNode(t, "gpu001"), "k1")
		if !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "GresTypes=gpu") {
			t.Errorf("Register() without GresTypes=gpu = %v, want ErrNotApplied naming GresTypes=gpu", err)
		}
		wantClass(t, err)
	})
	t.Run("node table full", func(t *testing.T) {
		t.Parallel()
		// MaxNodeCount=2: with 1, 22.05's first create already fails
		// ("Zero Bytes were transmitted or received").
		ctl := slurmtest.Start(t, slurmtest.Options{MaxNodeCount: 2})
		c := newCluster(t, ctl, Config{})
		for _, name := range []string{"gpu001", "gpu002"} {
			if err := c.Register(ctx, dgxNode(t, name), name+"/k1"); err != nil {
				t.Fatalf("Register(%s) = %v", name, err)
			}
		}
		err := c.Register(ctx, dgxNode(t, "gpu003"), "gpu003/k1")
		if !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "MaxNodeCount") {
			t.Errorf("Register(gpu003) into a full table = %v, want ErrNotApplied naming MaxNodeCount", err)
		}
	})
}

// TestFailures: scontrol missing, hanging, slurmctld or munged stopped.
func TestFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	if _, err := New(Config{Scontrol: filepath.Join(dir, "nosuch", "scontrol")}, nil); !errors.Is(err, ErrNotInstalled) ||
		!strings.Contains(err.Error(), "slurm-client") {
		t.Errorf("New(bad scontrol path) = %v, want ErrNotInstalled naming slurm-client", err)
	}
	if _, err := New(Config{Conf: filepath.Join(dir, "slurm.conf")}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("New(missing slurm.conf) = %v, want ErrConfig", err)
	}
	if _, err := New(Config{Features: []string{"a b"}}, nil); err == nil {
		t.Errorf("New(feature with a space) = nil, want an error")
	}
	if _, err := New(Config{Timeout: -time.Second}, nil); err == nil {
		t.Errorf("New(negative timeout) = nil, want an error")
	}

	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("scontrol gone", func(t *testing.T) {
		t.Parallel()
		p := script("scontrol-gone", "exit 0\n")
		c, err := New(Config{Scontrol: p}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		_, err = c.State(ctx, "gpu001")
		if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "slurm-client") {
			t.Errorf("State() with scontrol removed = %v, want ErrNotInstalled", err)
		}
		wantClass(t, err)
	})
	t.Run("scontrol hangs", func(t *testing.T) {
		t.Parallel()
		c, err := New(Config{Scontrol: script("scontrol-hang", "exec sleep 60\n"), Timeout: 300 * time.Millisecond}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = c.Drain(ctx, "gpu001", "x")
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no answer within 300ms") {
			t.Errorf("Drain() with a hanging scontrol = %v, want ErrTimeout", err)
		}
		wantClass(t, err)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Drain() with a hanging scontrol took %s", d)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := c.State(cctx, "gpu001"); !errors.Is(err, context.Canceled) {
			t.Errorf("State(cancelled context) = %v, want context.Canceled", err)
		}
	})
	t.Run("slurmctld and munged stopped", func(t *testing.T) {
		t.Parallel()
		ctl := slurmtest.Start(t, slurmtest.Options{})
		c := newCluster(t, ctl, Config{})
		n := dgxNode(t, "gpu001")
		if err := c.Register(ctx, n, "k1"); err != nil {
			t.Fatalf("Register() = %v", err)
		}
		ctl.StopSlurmctld()
		err := c.Drain(ctx, "gpu001", "x")
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "Unable to contact slurm controller") ||
			!strings.Contains(err.Error(), "start slurmctld") {
			t.Errorf("Drain() with slurmctld stopped = %v, want ErrUnreachable with scontrol's message and a remedy", err)
		}
		wantClass(t, err)

		ctl.StartSlurmctld()
		if act, err := c.Reconcile(ctx, n, "k1"); err != nil || act != Unchanged {
			t.Errorf("Register() after a slurmctld restart = %q, %v, want %q (dynamic nodes survive restarts)", act, err, Unchanged)
		}
		ctl.StopMunged()
		err = c.Drain(ctx, "gpu001", "x")
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "munged") {
			t.Errorf("Drain() with munged stopped = %v, want ErrAuth", err)
		}
		wantClass(t, err)
	})
}
