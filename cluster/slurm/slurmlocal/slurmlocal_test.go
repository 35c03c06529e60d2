package slurmlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// require fails (never skips) when the peers are missing.
func require(t *testing.T) {
	t.Helper()
	if err := Check(); err != nil {
		t.Fatalf("%v (make test-deps installs test/apt-packages.txt; run make test as root)", err)
	}
}

func netnsExists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// pids are the daemons' PIDs, to prove Close killed them.
func pids(c *Cluster) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, p := range c.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

func alive(pid int) bool {
	// a reaped child is gone; ESRCH says so
	return syscall.Kill(pid, 0) == nil
}

// TestStartClose starts a private cluster, registers a node through
// scontrol, reads it back with Nodes, and proves Close leaves nothing: no
// daemon, no namespace, no directory.
func TestStartClose(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := context.Background()
	c, err := Start(ctx, Options{MessageTimeout: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !netnsExists(t, c.Netns) {
		t.Errorf("namespace %s not made", c.Netns)
	}
	if nodes, err := c.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Errorf("Nodes() of a fresh cluster = %q, %v, want none", nodes, err)
	}
	if out, err := c.Scontrol(ctx, "create", "NodeName=n1", "NodeAddr=127.0.0.1", "CPUs=2", "RealMemory=100", "Gres=gpu:h100:1", "Feature=rackstrap", "State=CLOUD"); err != nil {
		t.Fatalf("scontrol create: %v %s", err, out)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || !strings.HasPrefix(nodes[0], "NodeName=n1 ") || !strings.Contains(nodes[0], "Gres=gpu:h100:1") ||
		!strings.Contains(nodes[0], "Partitions="+Partition) {
		t.Errorf("Nodes() = %q, %v, want n1 with Gres=gpu:h100:1 in partition %s", nodes, err, Partition)
	}

	running := pids(c)
	if len(running) != 2 {
		t.Fatalf("daemons = %v, want munged and slurmctld", running)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close() again = %v", err)
	}
	for _, pid := range running {
		if alive(pid) {
			t.Errorf("daemon %d still runs after Close", pid)
		}
	}
	if netnsExists(t, c.Netns) {
		t.Errorf("namespace %s left after Close", c.Netns)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s left after Close: %v", c.Dir, err)
	}
	if _, err := c.Scontrol(ctx, "ping"); err == nil {
		t.Error("scontrol ping answered after Close")
	}
}

// TestCallersNamespace runs slurmctld in a namespace the caller made; Close
// leaves that namespace alone.
func TestCallersNamespace(t *testing.T) {
	require(t)
	t.Parallel()
	ns := "rs-slt-" + suffix()
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "br0", "type", "bridge"},
		{"-n", ns, "addr", "add", "10.224.0.1/24", "dev", "br0"},
		{"-n", ns, "link", "set", "br0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	c, err := Start(context.Background(), Options{Netns: ns, MessageTimeout: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.Netns != ns {
		t.Errorf("Netns = %s, want the caller's %s", c.Netns, ns)
	}
	if out, err := c.Scontrol(context.Background(), "ping"); err != nil || !strings.Contains(out, "is UP") {
		t.Errorf("scontrol ping = %q, %v", out, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !netnsExists(t, ns) {
		t.Errorf("Close deleted the caller's namespace %s", ns)
	}
}

// TestStartFailureCleansUp: a slurm.conf slurmctld refuses makes Start fail
// with slurmctld's own words, and leaves no directory behind.
func TestStartFailureCleansUp(t *testing.T) {
	require(t)
	t.Parallel()
	tmp := t.TempDir()
	if err := searchable(tmp + "/x"); err == nil {
		t.Errorf("searchable(%s) = nil; t.TempDir is 0700", tmp)
	} else {
		t.Logf("searchable: %v", err)
	}
	for d := tmp; d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	_, err := Start(context.Background(), Options{Extra: []string{"NoSuchParameter=1"}, MessageTimeout: 3, TempDir: tmp})
	if err == nil {
		t.Fatal("Start with a bad slurm.conf succeeded")
	}
	t.Logf("error reads: %v", err)
	if !strings.Contains(err.Error(), "slurmctld") || !strings.Contains(err.Error(), "NoSuchParameter") {
		t.Errorf("Start error %q does not name slurmctld and the bad parameter", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Start left %v behind in %s", left, tmp)
	}
}

func TestNodeLines(t *testing.T) {
	for in, want := range map[string][]string{
		"":                         nil,
		"No nodes in the system\n": nil,
		"NodeName=b Arch=x\nNodeName=a CoresPerSocket=1 \n\n": {"NodeName=a CoresPerSocket=1", "NodeName=b Arch=x"},
	} {
		got := NodeLines(in)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("NodeLines(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSweep: what a killed process left (its namespace and directory) goes
// at the next Start; a live owner's directory, and one without an owner
// file, stay.
func TestSweep(t *testing.T) {
	require(t)
	t.Parallel()
	tmp := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	ns := "rs-slurm-" + suffix()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	mk := func(name, owner string) string {
		d := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(d, "state"), 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	left := mk("rackstrap-slurm-1", fmt.Sprintf("%d %s\n", dead.Process.Pid, ns))
	live := mk("rackstrap-slurm-2", fmt.Sprintf("%d rs-slurm-00000000\n", os.Getpid()))
	unknown := mk("rackstrap-slurm-3", "")
	other := mk("something-else", fmt.Sprintf("%d\n", dead.Process.Pid))
	sweep(tmp)
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sweep left the dead owner's %s (%v)", left, err)
	}
	if netnsExists(t, ns) {
		t.Errorf("sweep left the dead owner's namespace %s", ns)
	}
	for _, d := range []string{live, unknown, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("sweep removed %s: %v", d, err)
		}
	}
}

func FuzzNodeLines(f *testing.F) {
	f.Add("No nodes in the system\n")
	f.Add("NodeName=b Arch=x\nNodeName=a CoresPerSocket=1 \n\n")
	f.Add("NodeName=gpu001 CoresPerSocket=56 CPUTot=224 Gres=gpu:h100:8 State=IDLE+CLOUD Reason=x y [root@2026-01-01T00:00:00]\r\n")
	f.Fuzz(func(t *testing.T, out string) {
		lines := NodeLines(out)
		for i, l := range lines {
			if !strings.HasPrefix(l, "NodeName=") || strings.ContainsAny(l, "\n") || l != strings.TrimSpace(l) {
				t.Errorf("NodeLines(%q)[%d] = %q, not one trimmed NodeName= line", out, i, l)
			}
			if i > 0 && lines[i-1] > l {
				t.Errorf("NodeLines(%q) not sorted: %q", out, lines)
			}
		}
	})
}
