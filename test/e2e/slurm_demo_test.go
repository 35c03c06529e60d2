//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/test/cluster/slurmtest"
)

// demoSlurmRE reads where the demo's private slurmctld runs from its header.
var demoSlurmRE = regexp.MustCompile(`Slurm: a private slurmctld \(network namespace (\S+), files in (\S+)\)`)

// TestDemoHandsOffToSlurm runs `rackstrap demo --slurm on` with three
// machines: the two that pass validation end HandedOff in a private
// slurmctld with their GPUs as Gres, the quarantined one is not given to
// Slurm, the demo prints scontrol's view, and nothing of the slurmctld is
// left when it ends.
func TestDemoHandsOffToSlurm(t *testing.T) {
	slurmtest.Require(t)
	b := built(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.rs, "demo", "--slurm", "on", "--nodes", "3", "--boot-delay", "10ms", "--image-mib", "4",
		"--timeout", "4m", "--data-dir", filepath.Join(t.TempDir(), "demo"))
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rackstrap demo --slurm on: %v\n%s", err, out)
	}
	t.Logf("rackstrap demo --slurm on:\n%s", out)
	for _, want := range []string{"1 Quarantined, 2 HandedOff", "Slurm nodes (scontrol show nodes", "Audit chain intact"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// The Slurm table: a line per handed-off machine, with its GPUs and
	// features; none for the quarantined one.
	_, table, _ := strings.Cut(string(out), "Slurm nodes (scontrol show nodes")
	table, _, _ = strings.Cut(table, "\n\n")
	for _, n := range []string{"r1-n01", "r1-n02"} {
		if !regexp.MustCompile(`(?m)^` + n + `\s+IDLE\+CLOUD\S*\s+224\s+\d+M\s+gpu:h100:8\s+rackstrap,profile-hgx-h100-8gpu,rack-r1,h100\s+batch\s+-$`).MatchString(table) {
			t.Errorf("the demo's Slurm table has no schedulable %s with 8 H100s and its features:\n%s", n, table)
		}
	}
	if strings.Contains(table, "r1-n03") {
		t.Errorf("the quarantined r1-n03 was handed to Slurm:\n%s", table)
	}
	wantSlurmGone(t, out)
}

// TestDemoInterruptedCleansUp interrupts the demo (SIGINT, as Ctrl-C) once
// its slurmctld runs: the demo stops, and its slurmctld, munged, namespace
// and directory are gone.
func TestDemoInterruptedCleansUp(t *testing.T) {
	slurmtest.Require(t)
	b := built(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.rs, "demo", "--slurm", "on", "--nodes", "3", "--boot-delay", "10ms", "--image-mib", "4",
		"--timeout", "4m", "--data-dir", filepath.Join(t.TempDir(), "demo"))
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		all bytes.Buffer
	)
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			all.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if demoSlurmRE.MatchString(sc.Text()) {
				once.Do(func() { close(started) })
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	select {
	case <-started:
	case err := <-exited:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("rackstrap demo --slurm on ended (%v) before its slurmctld was up:\n%s", err, all.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	mu.Lock()
	out := cloneBytes(all.Bytes())
	mu.Unlock()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Errorf("interrupted demo ended with %v, want a non-zero exit of its own", err)
	}
	t.Logf("interrupted demo:\n%s", out)
	wantSlurmGone(t, out)
}

func cloneBytes(b []byte) []byte { return append([]byte(nil), b...) }

// wantSlurmGone asserts that the private slurmctld the demo's header names
// left nothing: its namespace, its directory, and any process whose
// command line names that directory (slurmctld -f DIR/slurm.conf, munged
// --socket=DIR/…).
func wantSlurmGone(t *testing.T, out []byte) {
	t.Helper()
	m := demoSlurmRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("the demo's output does not say where its slurmctld runs:\n%s", out)
	}
	ns, dir := string(m[1]), string(m[2])
	if b, err := exec.Command("ip", "netns", "list").Output(); err != nil {
		t.Errorf("ip netns list: %v", err)
	} else if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ns) + `\b`).Match(b) {
		t.Errorf("the demo left its namespace %s", ns)
		exec.Command("ip", "netns", "del", ns).Run()
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo left its Slurm directory %s (%v)", dir, err)
		os.RemoveAll(dir)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("a process still names %s: %s (%s)", dir, bytes.ReplaceAll(b, []byte{0}, []byte{' '}), p)
		}
	}
}
