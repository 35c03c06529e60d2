// Package egress proves that Rackstrap sends nothing off the machine: the
// real binary runs `rackstrap demo` (a simulated rack driven over real
// DHCP, TFTP, HTTP, Redfish and the agent API) and `rackstrap serve
// --simulate` inside a network namespace the test creates. The namespace
// has loopback, one test subnet and no gateway; every address outside them
// is routed to a dead veth peer, so any attempt to reach the outside world
// becomes a packet that an nftables counter on the output hook counts. The
// counter is proven live with one deliberate probe packet first.
package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rackstrap/rackstrap/controller/bundle"
)

const (
	subnet  = "10.239.7.0/24"
	ownAddr = "10.239.7.1/24"
	sinkGW  = "10.239.7.2" // nobody answers: packets routed here die at ARP
	probeTo = "192.0.2.1"  // TEST-NET-1
)

func need(t *testing.T, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s not found on PATH: install the Debian package %s (listed in test/apt-packages.txt)", bin, pkg)
	}
	return p
}

// run runs a command with a deadline and returns its combined output.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, 30*time.Second, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// netns creates the namespace, its routes and its counters.
func netns(t *testing.T) string {
	t.Helper()
	ip := need(t, "ip", "iproute2")
	need(t, "nft", "nftables")
	if os.Geteuid() != 0 {
		t.Fatal("the zero-egress test creates a network namespace and needs root (run 'make test' as root)")
	}
	ns := fmt.Sprintf("rs-egress-%d", os.Getpid())
	mustRun(t, ip, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := run(t, 30*time.Second, ip, "netns", "del", ns); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "eg0", "type", "veth", "peer", "name", "eg1"},
		{"addr", "add", ownAddr, "dev", "eg0"},
		{"link", "set", "eg0", "up"},
		{"link", "set", "eg1", "up"},
		// No default route: the two halves of the IPv4 space go to a peer
		// that does not exist, so attempts become countable packets instead
		// of "network unreachable" errors nobody sees.
		{"route", "add", "0.0.0.0/1", "via", sinkGW, "dev", "eg0"},
		{"route", "add", "128.0.0.0/1", "via", sinkGW, "dev", "eg0"},
		{"-6", "route", "add", "::/1", "dev", "eg0"},
		{"-6", "route", "add", "8000::/1", "dev", "eg0"},
	} {
		mustRun(t, ip, append([]string{"-n", ns}, args...)...)
	}
	if out := mustRun(t, ip, "-n", ns, "route", "show", "default"); strings.TrimSpace(out) != "" {
		t.Fatalf("the namespace has a default route: %s", out)
	}
	rules := `table inet rsegress {
	counter egress { }
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr != { 127.0.0.0/8, ` + subnet + ` } counter name "egress"
		ip6 daddr != { ::1, fe80::/10, ff02::/16 } counter name "egress"
	}
}
`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	return ns
}

// egress reads the counter of packets that left for outside addresses.
func egress(t *testing.T, ns string) int64 {
	t.Helper()
	out := mustRun(t, "ip", "netns", "exec", ns, "nft", "-j", "list", "counter", "inet", "rsegress", "egress")
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets int64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list counter: %v\n%s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	t.Fatalf("no counter in %s", out)
	return 0
}

// probe sends one UDP datagram to a TEST-NET address from inside ns, on a
// thread that enters the namespace and is thrown away afterwards.
func probe(t *testing.T, ns string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		c, err := net.Dial("udp4", probeTo+":9")
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_, err = c.Write([]byte("rackstrap egress probe"))
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("probe packet: %v", err)
	}
}

func buildRackstrap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rackstrap")
	out, err := run(t, 5*time.Minute, "go", "build", "-o", bin, "github.com/rackstrap/rackstrap/cmd/rackstrap")
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestZeroEgress(t *testing.T) {
	ns := netns(t)
	bin := buildRackstrap(t)

	// The counter must see a packet that leaves, or the test proves nothing.
	before := egress(t, ns)
	probe(t, ns)
	if got := egress(t, ns); got != before+1 {
		t.Fatalf("the egress counter went from %d to %d after one probe packet to %s; the counters do not work", before, got, probeTo)
	}
	mustRun(t, "ip", "netns", "exec", ns, "nft", "reset", "counter", "inet", "rsegress", "egress")
	if got := egress(t, ns); got != 0 {
		t.Fatalf("egress counter after reset = %d", got)
	}

	// 1. The demo: a simulated rack provisioned over the real protocols.
	dir := t.TempDir()
	out, err := run(t, 150*time.Second, "ip", "netns", "exec", ns, bin, "demo", "--nodes", "3", "--boot-delay", "100ms",
		"--image-mib", "4", "--timeout", "120s", "--data-dir", filepath.Join(dir, "demo"))
	if err != nil {
		t.Fatalf("rackstrap demo in the namespace: %v\n%s", err, out)
	}
	if !strings.Contains(out, "2 Ready") || !strings.Contains(out, "Audit chain intact") {
		t.Fatalf("rackstrap demo did not provision the rack:\n%s", out)
	}
	if got := egress(t, ns); got != 0 {
		t.Fatalf("rackstrap demo sent %d packets to addresses outside loopback and %s", got, subnet)
	}

	// 2. serve, with simulated machines provisioned to Ready, asked through
	// the CLI over the API.
	// It runs with a local policy and takes a signed bundle through its API.
	bundleFile, keysDir := signedBundle(t, dir)
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("api_version: rackstrap.io/policy/v1\npower:\n  timezone: UTC\n  no_power_windows: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	api := "http://127.0.0.1:18080"
	serve := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin, "serve", "--data-dir", filepath.Join(dir, "serve"),
		"--api-listen", "127.0.0.1:18080", "--simulate", "3", "--simulate-boot-time", "100ms", "--simulate-image-time", "100ms", "--log-format", "json",
		"--policy", policyFile, "--bundle-store", filepath.Join(dir, "artifacts"), "--keys-dir", keysDir)
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	serve.WaitDelay = 5 * time.Second
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(unix.SIGTERM)
		serve.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := run(t, 20*time.Second, "ip", "netns", "exec", ns, bin, "nodes", "list", "-o", "json", "--server", api)
		if err == nil && strings.Count(out, `"state": "Ready"`) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rackstrap serve --simulate 3 did not bring 3 nodes to Ready in 60s; last answer: %v\n%s\nserve's log:\n%s", err, out, logs.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	curl := need(t, "curl", "curl")
	out, err = run(t, 30*time.Second, "ip", "netns", "exec", ns, curl, "-sS", "--fail-with-body", "-H", "Content-Type: application/octet-stream",
		"--data-binary", "@"+bundleFile, api+"/api/v1/bundles")
	if err != nil || !strings.Contains(out, `"added": 1`) {
		t.Fatalf("POST /api/v1/bundles in the namespace: %v\n%s", err, out)
	}
	serve.Process.Signal(unix.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("rackstrap serve did not stop cleanly: %v\n%s", err, logs.String())
	}
	if got := egress(t, ns); got != 0 {
		t.Fatalf("rackstrap serve sent %d packets to addresses outside loopback and %s:\n%s", got, subnet, logs.String())
	}
}

// signedBundle makes a keyring that signs and trusts itself and a bundle
// of one file signed with it.
func signedBundle(t *testing.T, dir string) (file, keysDir string) {
	t.Helper()
	keysDir = filepath.Join(dir, "keys")
	k, err := bundle.OpenKeyring(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Init(""); err != nil {
		t.Fatal(err)
	}
	priv, rots, err := k.Signer()
	if err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("a stand-in kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "site.bundle")
	if _, err := bundle.ExportFile(context.Background(), file, bundle.ExportOptions{Name: "egress", Files: []bundle.Source{{Kind: bundle.KindKernel, File: kernel}},
		Signer: priv, Rotations: rots, Compress: true}); err != nil {
		t.Fatal(err)
	}
	return file, keysDir
}
