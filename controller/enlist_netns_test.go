package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/discover"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// The real-DHCP enlistment test runs its two sides as children (this test
// binary re-executed) inside network namespaces it creates: a controller
// with the real DHCP server of pxe/dhcp, and a simulated BMC that takes a
// lease with busybox udhcpc and serves Redfish on the leased address.

const enlistChildEnv = "RACKSTRAP_ENLIST_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(enlistChildEnv); v != "" {
		role, path, _ := strings.Cut(v, ":")
		switch role {
		case "controller":
			os.Exit(enlistControllerChild(path))
		case "bmc":
			os.Exit(enlistBMCChild(path))
		}
		fmt.Fprintln(os.Stderr, "unknown child role", role)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// enlistChildConfig is what the parent tells its children.
type enlistChildConfig struct {
	DataDir   string
	Interface string
	Subnet    netip.Prefix
	Pool      dhcp.Range
	Node      int // the simulated BMC's SampleNode
}

func readChildConfig(path string) (enlistChildConfig, error) {
	var c enlistChildConfig
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	return c, err
}

// enlistDHCPFeature serves the real DHCP server of pxe/dhcp from the controller,
// reporting to the Runtime's observers as the real edge's does.
type enlistDHCPFeature struct{ cfg dhcp.Config }

func (enlistDHCPFeature) Name() string { return "test-dhcp" }

func (f enlistDHCPFeature) Start(_ context.Context, rt *Runtime) error {
	fan := &fanout{}
	rt.dhcpObs = fan // the real edge's wiring (controller.go), here on the simulated edge
	srv, err := dhcp.New(f.cfg, rt.Log, dhcp.Deps{Observer: fan})
	if err != nil {
		return err
	}
	rt.Go("pxe/dhcp", srv.Serve)
	go func() {
		<-srv.Ready()
		fmt.Println("DHCP-READY")
	}()
	return nil
}

// enlistControllerChild runs a controller with the DHCP server and the
// enlistment feature until SIGTERM.
func enlistControllerChild(path string) int {
	cc, err := readChildConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := NewEnlister(EnlistConfig{
		Subnets:     []netip.Prefix{cc.Subnet},
		Credentials: []discover.Credential{{Username: "admin", Password: "password"}},
		HostTimeout: 10 * time.Second, RetryAfter: time.Second, ProbeDelay: 300 * time.Millisecond,
		Client: bmc.New(bmc.Config{Timeout: 8 * time.Second, Logger: logger}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	dcfg := dhcp.Config{Interface: cc.Interface, Subnets: []dhcp.Subnet{{Prefix: cc.Subnet, Pools: []dhcp.Range{cc.Pool}}},
		Boot: dhcp.Boot{Disabled: true}, LeaseTime: time.Minute}
	cfg := Config{DataDir: cc.DataDir, APIListen: "127.0.0.1:0", Simulate: &SimConfig{Nodes: 0}, Features: []Feature{enlistDHCPFeature{dcfg}, e}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, cfg, logger, func(*Controller) { fmt.Println("CONTROLLER-READY") }); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		return 1
	}
	return 0
}

// enlistBMCChild serves a simulated BMC over HTTPS on every address of its
// namespace (the leased one included, once udhcpc sets it) until SIGTERM.
func enlistBMCChild(path string) int {
	cc, err := readChildConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	sim, err := redfishsim.New(redfishsim.SampleNode(cc.Node), redfishsim.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cert, err := enlistSelfSigned()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := tls.Listen("tcp", "0.0.0.0:443", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Println("BMC-SERVING")
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func enlistSelfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "simulated BMC"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Namespace helpers.

func enlistRequirePeers(t *testing.T) {
	t.Helper()
	for bin, pkg := range map[string]string{"ip": "iproute2", "busybox": "busybox-static"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install the Debian package %s (make test-deps installs test/apt-packages.txt)", bin, pkg)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the real-DHCP enlistment test needs root (CAP_NET_ADMIN) for its network namespaces; run make test as root")
	}
}

// enlistRun runs a command with a 30 s deadline and fails the test on error.
func enlistRun(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func enlistNetns(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	enlistRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		exec.CommandContext(ctx, "ip", "netns", "del", name).Run()
	})
	enlistRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// enlistBuffer collects a child's output.
type enlistBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *enlistBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *enlistBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// enlistProc is a command started in a namespace.
type enlistProc struct {
	cmd  *exec.Cmd
	buf  *enlistBuffer
	done chan struct{}
	once sync.Once
}

func (p *enlistProc) out() string { return p.buf.String() }

// stop ends the command: SIGTERM, then SIGKILL after 10 s, by its PID.
func (p *enlistProc) stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// enlistStart starts a command in ns (ip netns exec execs it: the PID is
// the command's), stopped at cleanup.
func enlistStart(t *testing.T, ns string, env []string, args ...string) *enlistProc {
	t.Helper()
	p := &enlistProc{buf: &enlistBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.buf, p.buf
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// enlistWait waits until p printed marker, failing at once if p exits.
func enlistWait(t *testing.T, p *enlistProc, marker string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out(), marker) {
		select {
		case <-p.done:
			t.Fatalf("%v exited before printing %q; output:\n%s", p.cmd.Args[3:], marker, p.out())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; output:\n%s", marker, d, p.out())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A simulated BMC takes a lease from the controller's real DHCP server in a
// network namespace, serves Redfish on the leased address, and appears in
// the store as a Discovered node with its survey; its lease renewals probe
// it no more.
func TestEnlistOverRealDHCP(t *testing.T) {
	t.Parallel()
	enlistRequirePeers(t)
	const nodeIdx = 600
	bmcMAC := redfishsim.SampleNode(nodeIdx).Hardware.BMC.MAC
	ctlNS, bmcNS := enlistNetns(t, "rse-ctl"), enlistNetns(t, "rse-bmc")
	enlistRun(t, "ip", "link", "add", "c0", "netns", ctlNS, "type", "veth", "peer", "name", "b0", "netns", bmcNS)
	enlistRun(t, "ip", "-n", ctlNS, "addr", "add", "10.233.0.1/24", "dev", "c0")
	enlistRun(t, "ip", "-n", bmcNS, "link", "set", "b0", "address", bmcMAC)
	enlistRun(t, "ip", "-n", ctlNS, "link", "set", "c0", "up")
	enlistRun(t, "ip", "-n", bmcNS, "link", "set", "b0", "up")

	dir := t.TempDir()
	cc := enlistChildConfig{DataDir: filepath.Join(dir, "data"), Interface: "c0", Subnet: netip.MustParsePrefix("10.233.0.0/24"),
		Pool: dhcp.Range{Start: netip.MustParseAddr("10.233.0.50"), End: netip.MustParseAddr("10.233.0.60")}, Node: nodeIdx}
	b, _ := json.Marshal(cc)
	cfgPath := filepath.Join(dir, "child.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bmcSim := enlistStart(t, bmcNS, []string{enlistChildEnv + "=bmc:" + cfgPath}, exe, "-test.run=^$")
	enlistWait(t, bmcSim, "BMC-SERVING", 20*time.Second)
	ctl := enlistStart(t, ctlNS, []string{enlistChildEnv + "=controller:" + cfgPath}, exe, "-test.run=^$")
	enlistWait(t, ctl, "CONTROLLER-READY", 60*time.Second)
	enlistWait(t, ctl, "DHCP-READY", 20*time.Second)

	// udhcpc stays in the foreground; the script puts the leased address
	// on the BMC's interface.
	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n"), 0o755)
	udhcpc := enlistStart(t, bmcNS, nil, "busybox", "udhcpc", "-f", "-i", "b0", "-s", script, "-t", "10", "-T", "1")

	enlistWait(t, ctl, "bmc enlisted", 60*time.Second)
	// A renewal (SIGUSR1 makes udhcpc renew now) is no new BMC: no probe.
	udhcpc.cmd.Process.Signal(syscall.SIGUSR1)
	enlistWait(t, udhcpc, "renew", 10*time.Second)
	time.Sleep(time.Second)
	ctl.stop()
	out := ctl.out()
	if n := strings.Count(out, "bmc enlisted"); n != 1 {
		t.Errorf("the BMC was enlisted %d times, want once (renewals are no new BMC)\n%s", n, out)
	}
	if !strings.Contains(udhcpc.out(), "lease of 10.233.0.") {
		t.Errorf("udhcpc output:\n%s", udhcpc.out())
	}

	ctx := context.Background()
	db, err := store.Open(ctx, "", cc.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := redfishsim.SampleNode(nodeIdx).Hardware
	e, err := db.Enlistment(ctx, bmcMAC)
	if err != nil || e.Status != store.EnlistEnrolled || e.Serial != want.System.Serial || !strings.HasPrefix(e.IP, "10.233.0.") {
		t.Fatalf("enlistment = %+v, %v\ncontroller output:\n%s", e, err, out)
	}
	n, err := db.GetNode(ctx, e.Node)
	if err != nil {
		t.Fatal(err)
	}
	if n.Identity.Serial != want.System.Serial || n.Identity.UUID != want.System.UUID ||
		n.Identity.BMC != "https://"+e.IP+":443" || len(n.Identity.MACs) != len(want.NICs) {
		t.Errorf("enlisted node = %+v", n)
	}
	entries, err := db.ListAudit(ctx, store.AuditFilter{Node: n.Name})
	if err != nil {
		t.Fatal(err)
	}
	var enlisted, discovered bool
	for _, a := range entries {
		enlisted = enlisted || (a.Action == "bmc.enlist" && a.Outcome == "ok")
		// Created Discovered (the simulated edge's lifecycle may have moved it on since).
		discovered = discovered || (a.Action == "node.create" && strings.Contains(string(a.Detail), `"state":"`+string(model.Discovered)+`"`))
	}
	if !enlisted || !discovered {
		t.Errorf("audit of %s: bmc.enlist %v, node.create as Discovered %v", n.Name, enlisted, discovered)
	}
}
