package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
)

// testLogger writes to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func freePort(t testing.TB) uint16 {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// relay is a fake relay agent on loopback: it sends requests with giaddr
// 127.0.0.1 to the server and reads the replies the server sends to it.
type relay struct {
	t    testing.TB
	conn *net.UDPConn
	srv  netip.AddrPort
}

func newRelay(t testing.TB) *relay {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &relay{t: t, conn: c}
}

func (r *relay) port() uint16 { return uint16(r.conn.LocalAddr().(*net.UDPAddr).Port) }

func (r *relay) exchange(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r.t.Helper()
	return r.exchangeWithin(req, 3*time.Second)
}

// exchangeWithin sends req and returns the reply with its transaction ID,
// or nil after d.
func (r *relay) exchangeWithin(req *dhcpv4.DHCPv4, d time.Duration) *dhcpv4.DHCPv4 {
	r.t.Helper()
	req.GatewayIPAddr = net.IPv4(127, 0, 0, 1)
	if _, err := r.conn.WriteToUDPAddrPort(req.ToBytes(), r.srv); err != nil {
		r.t.Fatal(err)
	}
	buf := make([]byte, 1500)
	r.conn.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			r.t.Fatalf("reply does not parse: %v", err)
		}
		if resp.TransactionID == req.TransactionID {
			return resp
		}
	}
}

// send sends req through the relay without waiting for a reply.
func (r *relay) send(req *dhcpv4.DHCPv4) {
	r.t.Helper()
	req.GatewayIPAddr = net.IPv4(127, 0, 0, 1)
	if _, err := r.conn.WriteToUDPAddrPort(req.ToBytes(), r.srv); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond for up to 2 s.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(2 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// silent asserts no reply comes within d.
func (r *relay) silent(d time.Duration) {
	r.t.Helper()
	buf := make([]byte, 1500)
	r.conn.SetReadDeadline(time.Now().Add(d))
	if n, _, err := r.conn.ReadFromUDPAddrPort(buf); err == nil {
		m, _ := dhcpv4.FromBytes(buf[:n])
		r.t.Fatalf("unexpected reply: %v", m)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) DHCPEvent(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) last() Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return Event{}
	}
	return r.events[len(r.events)-1]
}

var resMAC = net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0, 1}

func loopConfig(relayPort uint16) Config {
	return Config{
		Addr: netip.MustParseAddr("127.0.0.1"), Port: 0, RelayPort: relayPort,
		Subnets: []Subnet{{
			Prefix:       netip.MustParsePrefix("127.0.0.0/8"),
			Pools:        []Range{{Start: netip.MustParseAddr("127.0.0.100"), End: netip.MustParseAddr("127.0.0.102")}},
			Reservations: []Reservation{{MAC: resMAC, IP: netip.MustParseAddr("127.0.0.50"), Hostname: "gpu-r01-s07"}},
			Routers:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			DNS:          []netip.Addr{netip.MustParseAddr("127.0.0.53")},
			Domain:       "rack1.test",
		}},
		Locations: []Location{{CircuitID: "swp7", RemoteID: "tor-r01", Rack: "r01", Slot: 7}},
		Boot:      Boot{ScriptURL: "http://127.0.0.1:8080/ipxe?mac={mac}", HTTPx64: "http://127.0.0.1:8080/ipxe.efi"},
	}
}

type harness struct {
	srv    *Server
	relay  *relay
	obs    *recorder
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config, store LeaseStore) *harness {
	t.Helper()
	h := &harness{relay: newRelay(t), obs: &recorder{}, done: make(chan error, 1)}
	cfg.RelayPort = h.relay.port()
	cfg.Port = freePort(t)
	srv, err := New(cfg, testLogger(t), Deps{Store: store, Observer: h.obs})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Serve(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-h.done:
		t.Fatalf("Serve: %v", err)
	}
	h.relay.srv = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), srv.Port())
	t.Cleanup(h.stop)
	return h
}

// waitSent waits until the server counted n replies of type typ: the
// counter moves just after the send, so the client may see the reply first.
func (h *harness) waitSent(typ string, n uint64) {
	deadline := time.Now().Add(2 * time.Second)
	for h.srv.Stats().Sent[typ] < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	<-h.done
}

func discover(mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		panic(err)
	}
	return m
}

func request(offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		panic(err)
	}
	return m
}

func dora(t *testing.T, r *relay, mac net.HardwareAddr, mods ...dhcpv4.Modifier) (offer, ack *dhcpv4.DHCPv4) {
	t.Helper()
	offer = r.exchange(discover(mac, mods...))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER from %v: got %v, want an OFFER", mac, offer)
	}
	ack = r.exchange(request(offer, mods...))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST from %v: got %v, want an ACK", mac, ack)
	}
	return offer, ack
}

func TestRelayedDORA(t *testing.T) {
	t.Parallel()
	h := start(t, loopConfig(0), &MemStore{})
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	_, ack := dora(t, h.relay, mac)
	type got struct {
		IP, Mask, Router, DNS, Domain string
		Lease                         time.Duration
	}
	want := got{IP: "127.0.0.100", Mask: "ff000000", Router: "[127.0.0.1]", DNS: "[127.0.0.53]", Domain: "rack1.test", Lease: time.Hour}
	g := got{IP: ack.YourIPAddr.String(), Mask: ack.SubnetMask().String(), Router: netIPs(ack.Router()), DNS: netIPs(ack.DNS()), Domain: ack.DomainName(), Lease: ack.IPAddressLeaseTime(0)}
	if d := cmp.Diff(want, g); d != "" {
		t.Errorf("ACK (-want +got):\n%s", d)
	}
	if sid := ack.ServerIdentifier(); !sid.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("server id = %v, want 127.0.0.1", sid)
	}
	if ack.BootFileName != "" {
		t.Errorf("plain client got boot file %q, want none", ack.BootFileName)
	}
	if got, ok := h.srv.Identify(netip.MustParseAddr("127.0.0.100")); !ok || got != mac.String() {
		t.Errorf("Identify(127.0.0.100) = %q, %v, want %v", got, ok, mac)
	}
	// The same client asking again keeps its address.
	_, again := dora(t, h.relay, mac)
	if !again.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Errorf("second DORA gave %v, want %v", again.YourIPAddr, ack.YourIPAddr)
	}
	h.waitSent("ACK", 2)
	st := h.srv.Stats()
	if st.Received["DISCOVER"] != 2 || st.Sent["ACK"] != 2 || st.Pools[0].Bound != 1 {
		t.Errorf("Stats() = %+v, want 2 DISCOVER, 2 ACK, 1 bound", st)
	}
}

func netIPs(ips []net.IP) string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return "[" + joinComma(out) + "]"
}

func joinComma(s []string) string {
	r := ""
	for i, x := range s {
		if i > 0 {
			r += ","
		}
		r += x
	}
	return r
}

func TestReservationAndLocation(t *testing.T) {
	t.Parallel()
	h := start(t, loopConfig(0), nil)
	ri := dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(
		dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("swp7")),
		dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte("tor-r01")),
	))
	_, ack := dora(t, h.relay, resMAC, ri)
	if got, want := ack.YourIPAddr.String(), "127.0.0.50"; got != want {
		t.Errorf("reserved client got %s, want %s", got, want)
	}
	if got := ack.HostName(); got != "gpu-r01-s07" {
		t.Errorf("host name = %q, want gpu-r01-s07", got)
	}
	if ack.RelayAgentInfo() == nil {
		t.Errorf("ACK does not echo option 82")
	}
	waitFor(func() bool { return h.obs.last().Type == "ACK" }) // the event follows the send
	e := h.obs.last()
	if e.Type != "ACK" || e.Client.Location == nil || e.Client.Location.Rack != "r01" || e.Client.Location.Slot != 7 {
		t.Errorf("observed %+v (location %+v), want an ACK located at r01/7", e, e.Client.Location)
	}
	// Nobody else gets the reserved address, even by asking for it.
	other := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}
	off := h.relay.exchange(discover(other, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(127, 0, 0, 50)))))
	if off == nil || off.YourIPAddr.Equal(net.IPv4(127, 0, 0, 50)) {
		t.Errorf("other client offered %v, want a pool address", off)
	}
	req := request(off, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(127, 0, 0, 50))))
	if nak := h.relay.exchange(req); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST for another's reservation: got %v, want NAK", nak)
	}
}

func TestBootSelection(t *testing.T) {
	t.Parallel()
	h := start(t, loopConfig(0), nil)
	pxe := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))
	tests := map[string]struct {
		mods     []dhcpv4.Modifier
		file, vc string
	}{
		"bios":      {mods: []dhcpv4.Modifier{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}, file: "undionly.kpxe"},
		"uefi-x64":  {mods: []dhcpv4.Modifier{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}, file: "snponly.efi"},
		"uefi-bc":   {mods: []dhcpv4.Modifier{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}, file: "snponly.efi"},
		"arm64":     {mods: []dhcpv4.Modifier{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}, file: "snponly-arm64.efi"},
		"ipxe":      {mods: []dhcpv4.Modifier{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)), dhcpv4.WithUserClass("iPXE", false)}, file: "http://127.0.0.1:8080/ipxe?mac=52:54:00:00:01:00"},
		"ipxe-175":  {mods: []dhcpv4.Modifier{pxe, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 1, 1}))}, file: "http://127.0.0.1:8080/ipxe?mac=52:54:00:00:01:00"},
		"http-boot": {mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}, file: "http://127.0.0.1:8080/ipxe.efi", vc: "HTTPClient"},
		"plain":     {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Sequential: one relay socket.
			offer := h.relay.exchange(discover(net.HardwareAddr{0x52, 0x54, 0, 0, 1, 0}, tc.mods...))
			if offer == nil {
				t.Fatal("no OFFER")
			}
			if got := offer.BootFileNameOption(); got != tc.file {
				t.Errorf("boot file = %q, want %q", got, tc.file)
			}
			if tc.file != "" && !offer.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("next-server = %v, want 127.0.0.1", offer.ServerIPAddr)
			}
			if got := offer.ClassIdentifier(); got != tc.vc {
				t.Errorf("vendor class = %q, want %q", got, tc.vc)
			}
		})
	}
}

func TestRestartKeepsLeases(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leases.jsonl")
	cfg := loopConfig(0)
	h := start(t, cfg, NewFileStore(path))
	macs := []net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	got := map[string]string{}
	for _, m := range macs {
		_, ack := dora(t, h.relay, m)
		got[m.String()] = ack.YourIPAddr.String()
	}
	h.stop()

	h2 := start(t, cfg, NewFileStore(path))
	// The pool (3 addresses) is full of the old leases: a new client finds
	// none, and each old client gets its own address back.
	if off := h2.relay.exchangeWithin(discover(net.HardwareAddr{2, 0, 0, 0, 0, 9}), 500*time.Millisecond); off != nil {
		t.Errorf("new client offered %v from a full pool, want no offer", off.YourIPAddr)
	}
	for _, m := range macs {
		_, ack := dora(t, h2.relay, m)
		if ack.YourIPAddr.String() != got[m.String()] {
			t.Errorf("after restart %v got %v, want %v", m, ack.YourIPAddr, got[m.String()])
		}
	}
	// Release one: it is free for the new client.
	rel, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithHwAddr(macs[0]),
		dhcpv4.WithClientIP(net.ParseIP(got[macs[0].String()])))
	rel.OpCode = dhcpv4.OpcodeBootRequest
	h2.relay.send(rel)
	if !waitFor(func() bool { _, ok := h2.srv.Identify(netip.MustParseAddr(got[macs[0].String()])); return !ok }) {
		t.Fatalf("RELEASE of %s not processed", got[macs[0].String()])
	}
	if _, ack := dora(t, h2.relay, net.HardwareAddr{2, 0, 0, 0, 0, 9}); ack.YourIPAddr.String() != got[macs[0].String()] {
		t.Errorf("after release the new client got %v, want %v", ack.YourIPAddr, got[macs[0].String()])
	}
}

func TestDecline(t *testing.T) {
	t.Parallel()
	h := start(t, loopConfig(0), nil)
	mac := net.HardwareAddr{2, 0, 0, 0, 1, 1}
	_, ack := dora(t, h.relay, mac)
	dec, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), dhcpv4.WithHwAddr(mac),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr)))
	dec.OpCode = dhcpv4.OpcodeBootRequest
	h.relay.send(dec)
	if !waitFor(func() bool { _, ok := h.srv.Identify(addr4(ack.YourIPAddr)); return !ok }) {
		t.Fatalf("DECLINE of %v not processed", ack.YourIPAddr)
	}
	_, ack2 := dora(t, h.relay, mac)
	if ack2.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Errorf("after DECLINE of %v the client got it again", ack.YourIPAddr)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := loopConfig(0).withDefaults()
	s, err := New(cfg, testLogger(t), Deps{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.100")
	s.tab.set(&entry{Lease: Lease{IP: ip, MAC: "02:00:00:00:00:01", State: Bound, Expires: now.Add(time.Minute)}})
	if got := s.tab.expire(now); len(got) != 0 {
		t.Errorf("expire before the end = %v, want none", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	got := s.tab.expire(clock())
	if len(got) != 1 || got[0].State != Expired || got[0].IP != ip {
		t.Errorf("expire after the end = %+v, want %v expired", got, ip)
	}
	s.tab.mu.Lock()
	cand, ok := s.tab.candidate(0, &cfg.Subnets[0], "02:00:00:00:00:02", netip.Addr{}, clock())
	s.tab.mu.Unlock()
	if !ok || cand != ip {
		t.Errorf("candidate after expiry = %v, %v, want %v", cand, ok, ip)
	}
}

func TestQueueFullDrops(t *testing.T) {
	t.Parallel()
	cfg := loopConfig(0)
	cfg.Workers, cfg.QueueSize = 1, 1
	h := start(t, cfg, &blockingStore{release: make(chan struct{})})
	defer close(h.srv.deps.Store.(*blockingStore).release)
	// Fill: the first REQUEST blocks the committer; flood the server.
	for i := range 2000 {
		m := discover(net.HardwareAddr{2, 1, 0, 0, byte(i >> 8), byte(i)})
		m.GatewayIPAddr = net.IPv4(127, 0, 0, 1)
		h.relay.conn.WriteToUDPAddrPort(m.ToBytes(), h.relay.srv)
	}
	deadline := time.Now().Add(3 * time.Second)
	for h.srv.Stats().Dropped == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := h.srv.Stats(); st.Dropped == 0 || st.QueueSize != 2 {
		t.Errorf("Stats() = %+v, want drops with queues of 1", st)
	}
}

type blockingStore struct{ release chan struct{} }

func (b *blockingStore) Load(context.Context) ([]Lease, error) { return nil, nil }
func (b *blockingStore) Commit(context.Context, []Lease) error { <-b.release; return nil }

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]Config{
		"no-subnets": {},
		"bad-pool": {Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.0.0.0/24"),
			Pools: []Range{{Start: netip.MustParseAddr("10.0.1.1"), End: netip.MustParseAddr("10.0.1.9")}}}}},
		"overlap": {Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.0.0.0/16")}, {Prefix: netip.MustParsePrefix("10.0.1.0/24")}}},
		"mode":    {Mode: "relay", Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.0.0.0/24")}}},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(cfg, nil, Deps{}); !errors.Is(err, ErrConfig) {
				t.Errorf("New(%s) error = %v, want ErrConfig", name, err)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	h := start(t, loopConfig(0), nil)
	dora(t, h.relay, net.HardwareAddr{2, 0, 0, 0, 2, 1})
	h.waitSent("ACK", 1)
	reg := prometheus.NewRegistry()
	if err := h.srv.Register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for key, v := range map[string]float64{
		"rackstrap_dhcp_pool_addresses,state=bound,subnet=127.0.0.0/8": 1,
		"rackstrap_dhcp_pool_addresses,state=size,subnet=127.0.0.0/8":  3,
		"rackstrap_dhcp_packets_total,direction=in,type=DISCOVER":      1,
		"rackstrap_dhcp_packets_total,direction=out,type=ACK":          1,
		"rackstrap_dhcp_events_total,event=dropped":                    0,
	} {
		if g, ok := got[key]; !ok || g != v {
			t.Errorf("metric %s = %v (present %v), want %v", key, g, ok, v)
		}
	}
}

func TestProxyDHCP(t *testing.T) {
	t.Parallel()
	cfg := loopConfig(0)
	cfg.Mode, cfg.Subnets = ModeProxy, nil
	cfg.ProxyPort = freePort(t)
	h := start(t, cfg, nil)
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 3, 1}
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	plain := discover(mac)
	plain.GatewayIPAddr = net.IPv4(127, 0, 0, 1)
	h.relay.conn.WriteToUDPAddrPort(plain.ToBytes(), h.relay.srv)
	h.relay.silent(300 * time.Millisecond) // not a PXE client: no answer
	off := h.relay.exchange(discover(mac, pxe...))
	if off == nil || off.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("PXE DISCOVER: got %v, want a proxy OFFER", off)
	}
	if !off.YourIPAddr.IsUnspecified() || off.ClassIdentifier() != "PXEClient" || off.BootFileNameOption() != "snponly.efi" {
		t.Errorf("proxy OFFER yiaddr %v, vendor class %q, file %q; want 0.0.0.0, PXEClient, snponly.efi",
			off.YourIPAddr, off.ClassIdentifier(), off.BootFileNameOption())
	}
	// The boot-server request goes to port 4011 from the client's own
	// address and port; the ACK comes back there.
	req := request(off, pxe...)
	req.ClientIPAddr = net.IPv4(127, 0, 0, 1)
	req.GatewayIPAddr = net.IPv4zero
	if _, err := h.relay.conn.WriteToUDPAddrPort(req.ToBytes(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h.srv.ProxyPort())); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	h.relay.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := h.relay.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no ACK on the boot-server port: %v", err)
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileNameOption() != "snponly.efi" {
		t.Errorf("port 4011 reply = %v, %v; want an ACK with snponly.efi", ack, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for h.obs.last().Type != "PROXY-ACK" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the event follows the send
	}
	if e := h.obs.last(); e.Type != "PROXY-ACK" {
		t.Errorf("last event %q, want PROXY-ACK", e.Type)
	}
}
