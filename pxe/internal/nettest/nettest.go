// Package nettest builds the network namespaces, veth pairs and bridges the
// pxe tests run real clients in, and removes them when the test ends.
package nettest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Require fails the test when a peer binary is missing, naming the Debian
// package that provides it.
func Require(t testing.TB, bins map[string]string) {
	t.Helper()
	for bin, pkg := range bins {
		var err error
		if strings.HasPrefix(bin, "/") {
			_, err = os.Stat(bin) // a data file (firmware, boot loader)
		} else {
			_, err = exec.LookPath(bin)
		}
		if err != nil {
			t.Fatalf("%s not found: install the Debian package %s (make test-deps installs test/apt-packages.txt)", bin, pkg)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("network-namespace tests need root (CAP_NET_ADMIN); run make test as root")
	}
}

// Suffix returns a short random name suffix, so parallel tests and runs do
// not collide.
func Suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run runs a command with a deadline and fails the test on error.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := RunErr(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a command with a 30 s deadline and returns its combined output.
func RunErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// NS creates a network namespace with lo up, deleted at cleanup.
func NS(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "-" + Suffix()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { RunErr("ip", "netns", "del", name) })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth links ns1/if1 and ns2/if2, brings both up and gives them the
// addresses (CIDR form; empty for none).
func Veth(t testing.TB, ns1, if1, addr1, ns2, if2, addr2 string) {
	t.Helper()
	Run(t, "ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)
	for _, x := range [][3]string{{ns1, if1, addr1}, {ns2, if2, addr2}} {
		if x[2] != "" {
			Run(t, "ip", "-n", x[0], "addr", "add", x[2], "dev", x[1])
		}
		Run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
}

// Cmd returns a command that runs inside ns.
func Cmd(ctx context.Context, ns string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Start starts a background command in ns with its output in a buffer; it is
// killed (by PID) at cleanup. The returned function returns its output so
// far.
func Start(t testing.TB, ns string, args ...string) (*exec.Cmd, func() string) {
	t.Helper()
	return StartEnv(t, ns, nil, args...)
}

// StartEnv is Start with extra environment variables.
func StartEnv(t testing.TB, ns string, env []string, args ...string) (*exec.Cmd, func() string) {
	t.Helper()
	var b syncBuffer
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = &b, &b
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd, b.String
}

// WaitFor polls cond every 50 ms until it holds or d passes.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// Script writes an executable shell script into dir and returns its path.
func Script(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := dir + "/" + name
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
