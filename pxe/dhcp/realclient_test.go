package dhcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/pxe/internal/nettest"
)

// The real-client tests run the server as a child process (this test binary
// re-executed) inside a network namespace, and real DHCP clients in another.

const childEnv = "RACKSTRAP_DHCP_TEST_CHILD"

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnv); p != "" {
		os.Exit(runChild(p))
	}
	os.Exit(m.Run())
}

type childConfig struct {
	Config Config
	Leases string
}

// runChild serves cfg until SIGTERM, printing each observed event as a JSON
// line on stdout.
func runChild(path string) int {
	var cc childConfig
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &cc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := New(cc.Config, log, Deps{Store: NewFileStore(cc.Leases), Observer: &jsonObserver{enc: json.NewEncoder(os.Stdout)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type jsonObserver struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *jsonObserver) DHCPEvent(e Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.enc.Encode(e)
}

// child is a server process in a namespace.
type child struct {
	t   *testing.T
	cmd interface{ Signal(os.Signal) error }
	out func() string
}

func startChild(t *testing.T, ns string, cfg Config, leases string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(childConfig{Config: cfg, Leases: leases})
	p := filepath.Join(t.TempDir(), "child.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, out := nettest.StartEnv(t, ns, []string{childEnv + "=" + p}, exe, "-test.run=^$")
	if !nettest.WaitFor(10*time.Second, func() bool { return strings.Contains(out(), "msg=serving") }) {
		t.Fatalf("DHCP server did not start:\n%s", out())
	}
	return &child{t: t, cmd: cmd.Process, out: out}
}

// events returns the observed events so far.
func (c *child) events() []Event {
	var evs []Event
	for _, line := range strings.Split(c.out(), "\n") {
		if strings.HasPrefix(line, "{") {
			var e Event
			if json.Unmarshal([]byte(line), &e) == nil {
				evs = append(evs, e)
			}
		}
	}
	return evs
}

func (c *child) waitEvent(typ string, mac string) (Event, bool) {
	var found Event
	ok := nettest.WaitFor(5*time.Second, func() bool {
		for _, e := range c.events() {
			if e.Type == typ && e.Client.MAC.String() == mac {
				found = e
				return true
			}
		}
		return false
	})
	return found, ok
}

var realPeers = map[string]string{"ip": "iproute2", "busybox": "busybox-static", "dhclient": "isc-dhcp-client", "dhcrelay": "isc-dhcp-relay"}

// lan builds server and client namespaces on one link: server 10.231.0.1/24
// on s0, client c0 with the given MAC.
func lan(t *testing.T, clientMAC string) (srvNS, cliNS string) {
	srvNS, cliNS = nettest.NS(t, "rsd-srv"), nettest.NS(t, "rsd-cli")
	nettest.Veth(t, srvNS, "s0", "10.231.0.1/24", cliNS, "c0", "")
	nettest.Run(t, "ip", "-n", cliNS, "link", "set", "c0", "address", clientMAC)
	return srvNS, cliNS
}

func lanConfig() Config {
	return Config{
		Interface: "s0",
		Subnets: []Subnet{{
			Prefix:       netip.MustParsePrefix("10.231.0.0/24"),
			Pools:        []Range{{Start: netip.MustParseAddr("10.231.0.100"), End: netip.MustParseAddr("10.231.0.109")}},
			Reservations: []Reservation{{MAC: mustMAC("02:aa:00:00:00:07"), IP: netip.MustParseAddr("10.231.0.7"), Hostname: "gpu-r01-s07"}},
			Routers:      []netip.Addr{netip.MustParseAddr("10.231.0.1")},
			DNS:          []netip.Addr{netip.MustParseAddr("10.231.0.1")},
			Domain:       "rack1.test",
		}},
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

const udhcpcScript = `case "$1" in bound|renew) echo "EVENT $1 $ip $mask $router $dns $domain $hostname" ;; esac
[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface"
exit 0
`

func TestUdhcpcLeaseRenew(t *testing.T) {
	t.Parallel()
	nettest.Require(t, realPeers)
	srvNS, cliNS := lan(t, "02:bb:00:00:00:01")
	startChild(t, srvNS, lanConfig(), filepath.Join(t.TempDir(), "leases"))
	script := nettest.Script(t, t.TempDir(), "udhcpc.sh", udhcpcScript)
	// Foreground udhcpc: lease, then SIGUSR1 makes it renew (a unicast
	// REQUEST with ciaddr set, answered unicast).
	cmd, out := nettest.Start(t, cliNS, "busybox", "udhcpc", "-i", "c0", "-f", "-t", "5", "-T", "1", "-s", script)
	if !nettest.WaitFor(10*time.Second, func() bool { return strings.Contains(out(), "EVENT bound") }) {
		t.Fatalf("udhcpc got no lease:\n%s", out())
	}
	want := "EVENT bound 10.231.0.100 24 10.231.0.1 10.231.0.1 rack1.test"
	if !strings.Contains(out(), want) {
		t.Errorf("udhcpc output lacks %q:\n%s", want, out())
	}
	// udhcpc does not ask for broadcast replies: the server reached it by
	// unicast after installing its neighbour entry.
	if neigh := nettest.Run(t, "ip", "-n", srvNS, "neigh", "show", "dev", "s0"); !strings.Contains(neigh, "10.231.0.100 lladdr 02:bb:00:00:00:01") {
		t.Errorf("server has no neighbour entry for the client's new address:\n%s", neigh)
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	if !nettest.WaitFor(10*time.Second, func() bool { return strings.Contains(out(), "EVENT renew 10.231.0.100") }) {
		t.Fatalf("udhcpc did not renew:\n%s", out())
	}
}

func TestDhclientReservationReleaseRestart(t *testing.T) {
	t.Parallel()
	nettest.Require(t, realPeers)
	srvNS, cliNS := lan(t, "02:aa:00:00:00:07")
	leases := filepath.Join(t.TempDir(), "leases")
	srv := startChild(t, srvNS, lanConfig(), leases)
	dir := t.TempDir()
	script := nettest.Script(t, dir, "dhclient.sh", `echo "$reason $new_ip_address $new_host_name" >> `+dir+`/events
case "$reason" in BOUND|REBOOT|RENEW) ip addr add "$new_ip_address/24" dev "$interface" 2>/dev/null ;; esac
exit 0
`)
	dh := func(extra ...string) string {
		args := append([]string{"dhclient", "-4", "-1", "-sf", script, "-lf", dir + "/cli.leases", "-pf", dir + "/dhclient.pid"}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := nettest.Cmd(ctx, cliNS, append(args, "c0")...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if len(extra) == 0 {
			// The daemon writes its pid file after the parent exits; wait,
			// so that "dhclient -r" finds and stops it.
			nettest.WaitFor(5*time.Second, func() bool {
				b, err := os.ReadFile(dir + "/dhclient.pid")
				var pid int
				fmt.Sscan(string(b), &pid)
				return err == nil && slices.Contains(dhclients(dir), pid)
			})
		}
		return string(out)
	}
	t.Cleanup(func() {
		for _, pid := range dhclients(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	events := func() string { b, _ := os.ReadFile(dir + "/events"); return string(b) }
	dh()
	if !strings.Contains(events(), "BOUND 10.231.0.7 gpu-r01-s07") {
		t.Fatalf("dhclient did not bind its reservation 10.231.0.7 (gpu-r01-s07):\n%s", events())
	}
	dh("-r")
	if _, ok := srv.waitEvent("RELEASE", "02:aa:00:00:00:07"); !ok {
		t.Errorf("server saw no RELEASE:\n%s", srv.out())
	}

	// Restart the server with SIGKILL (no clean shutdown): the lease of a
	// pool client must survive.
	nettest.Run(t, "ip", "-n", cliNS, "link", "set", "c0", "address", "02:bb:00:00:00:02")
	os.Remove(dir + "/cli.leases")
	dh()
	if !strings.Contains(events(), "BOUND 10.231.0.100") {
		t.Fatalf("pool client did not bind 10.231.0.100:\n%s", events())
	}
	srv.cmd.Signal(syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
	srv = startChild(t, srvNS, lanConfig(), leases)
	// A new client must not get the address the killed server acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := nettest.Script(t, t.TempDir(), "u.sh", udhcpcScript)
	nettest.Run(t, "ip", "-n", cliNS, "addr", "flush", "dev", "c0")
	nettest.Run(t, "ip", "-n", cliNS, "link", "set", "c0", "address", "02:bb:00:00:00:03")
	out, err := nettest.Cmd(ctx, cliNS, "busybox", "udhcpc", "-i", "c0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", sc).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "EVENT bound 10.231.0.101") {
		t.Errorf("new client after restart: %v, want 10.231.0.101 (10.231.0.100 is leased):\n%s", err, out)
	}
}

func TestDhcrelayOption82(t *testing.T) {
	t.Parallel()
	nettest.Require(t, realPeers)
	srvNS, rlyNS, cliNS := nettest.NS(t, "rsd-srv"), nettest.NS(t, "rsd-rly"), nettest.NS(t, "rsd-cli")
	nettest.Veth(t, srvNS, "s0", "10.232.1.2/24", rlyNS, "r-srv", "10.232.1.1/24")
	nettest.Veth(t, cliNS, "c0", "", rlyNS, "r-cli", "10.232.2.1/24")
	nettest.Run(t, "ip", "-n", cliNS, "link", "set", "c0", "address", "02:cc:00:00:00:01")
	nettest.Run(t, "ip", "-n", srvNS, "route", "add", "10.232.2.0/24", "via", "10.232.1.1")
	cfg := Config{
		Interface: "s0",
		Subnets: []Subnet{{
			Prefix: netip.MustParsePrefix("10.232.2.0/24"),
			Pools:  []Range{{Start: netip.MustParseAddr("10.232.2.100"), End: netip.MustParseAddr("10.232.2.150")}},
			Domain: "rack7.test",
		}},
		Locations: []Location{{CircuitID: "r-cli", Rack: "r07", Slot: 3}},
	}
	srv := startChild(t, srvNS, cfg, filepath.Join(t.TempDir(), "leases"))
	nettest.Start(t, rlyNS, "dhcrelay", "-4", "-d", "-a", "-id", "r-cli", "-iu", "r-srv", "10.232.1.2")
	script := nettest.Script(t, t.TempDir(), "u.sh", udhcpcScript)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []byte
	var err error
	// dhcrelay takes a moment to open its sockets.
	nettest.WaitFor(10*time.Second, func() bool {
		out, err = nettest.Cmd(ctx, cliNS, "busybox", "udhcpc", "-i", "c0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script).CombinedOutput()
		return err == nil
	})
	if err != nil || !strings.Contains(string(out), "EVENT bound 10.232.2.100 24") || !strings.Contains(string(out), "rack7.test") {
		t.Fatalf("relayed udhcpc: %v, want 10.232.2.100 in rack7.test:\n%s\nserver:\n%s", err, out, srv.out())
	}
	e, ok := srv.waitEvent("ACK", "02:cc:00:00:00:01")
	if !ok || e.Client.Location == nil {
		t.Fatalf("no located ACK event:\n%s", srv.out())
	}
	if got, want := *e.Client.Location, (NodeLocation{Relay: netip.MustParseAddr("10.232.2.1"), CircuitID: "r-cli", Rack: "r07", Slot: 3}); got != want {
		t.Errorf("location = %+v, want %+v", got, want)
	}
}

// dhclients returns the PIDs of the dhclient daemons this test started: those
// whose command line names its private directory.
func dhclients(dir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.HasPrefix(string(b), "dhclient\x00") || !strings.Contains(string(b), dir+"/") {
			continue
		}
		var pid int
		fmt.Sscan(strings.Split(p, "/")[2], &pid)
		pids = append(pids, pid)
	}
	return pids
}
