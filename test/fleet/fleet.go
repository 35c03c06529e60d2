// Package fleet simulates the hosts of a rack for the fleet simulator, the
// demo and end-to-end tests: each host, once its simulated Redfish BMC
// (bmc/redfishsim) powers it on, does over real sockets on loopback what
// firmware, iPXE and the in-band agent would do.
//
// One Rack is one top-of-rack DHCP relay agent: a UDP socket on
// Config.RelayAddr:Config.RelayPort. A host hands its DHCP messages to its
// rack's relay in memory (it has no address yet); the relay sets giaddr to
// RelayAddr, adds option 82 (circuit-id CircuitID(slot) = "slot-N",
// remote-id = the rack name), sends them to Config.DHCPServer, and hands the
// replies (sent by the server to RelayAddr:RelayPort) back to the waiting
// host by transaction id, with option 82 removed.
//
// A PXE boot (BootEvent.Target "Pxe") then runs, like the firmware, iPXE
// and the netboot agent:
//
//  1. DHCP DISCOVER/OFFER/REQUEST/ACK as a PXE ROM (vendor class PXEClient,
//     option 93 arch 0 for Legacy or 7 for UEFI, option 97 from the
//     machine's UUID), through the relay, with the first NIC's MAC;
//  2. TFTP GET of the offered boot file from siaddr (blksize 1468);
//  3. a second DHCP exchange as iPXE (user class "iPXE") for the script URL;
//  4. HTTP GET of the script, which is interpreted: kernel, initrd, boot,
//     chain, sleep, sanboot/exit (local disk);
//  5. HTTP GET of the kernel and initrds, bytes counted;
//  6. the agent: check-in (phase netboot, token and server from the kernel
//     command line: rackstrap.server=, rackstrap.token=) with the BMC's
//     hardware as the in-band inventory, then task polling: "image" tasks
//     stream the image (SHA-256 and bytes counted, written nowhere) and keep
//     the payload's server and first-boot token as if written to the disk;
//     "burn-in" tasks report their checks.
//
// A disk boot (Target "Hdd", or a script that boots the local disk) boots
// the "installed OS": its agent checks in once with phase firstboot and the
// first-boot token from the image task, then polls tasks (burn-in).
//
// Every boot cancels the previous one (a power cycle), and powering off
// stops the host. Failures are recorded in the host's Stats and logged;
// nothing panics. When the leased address is a loopback address (a pool in
// 127.0.0.0/8), the host's TFTP and HTTP traffic leaves from it, so the boot
// servers' logs name the node as they would on a real network.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// Config describes one rack's network as its hosts see it.
type Config struct {
	// DHCPServer is where the relay sends hosts' DHCP messages.
	DHCPServer netip.AddrPort
	// RelayAddr is this rack's relay address (giaddr). The relay listens on
	// RelayAddr:RelayPort, where the DHCP server sends replies for relayed
	// clients (its Config.RelayPort). RelayPort 0 picks a free port (see
	// Rack.Addr). A DHCP server has one relay port, so the racks it serves
	// share RelayPort and differ by RelayAddr (any 127.x.y.z on loopback),
	// inside one of its subnets; Location builds its option 82 map.
	RelayAddr netip.Addr
	RelayPort uint16
	// TFTPPort is the port of the TFTP server at the offered siaddr
	// (default 69).
	TFTPPort uint16
	// BootDelay is the simulated firmware/kernel time between stages:
	// before the first DHCP, after the boot program loads, after the kernel
	// loads and before a disk boot's agent starts (default 0).
	BootDelay time.Duration
	// DHCPTimeout is the first retransmission timeout of a DHCP exchange;
	// it doubles on each of DHCPRetries retransmissions (defaults 1 s, 4).
	DHCPTimeout time.Duration
	DHCPRetries int
	// Poll is how often the agent asks for a task (default 100 ms). While
	// none comes the interval doubles up to MaxPoll (default 1 s, never
	// below Poll), so that thousands of idle agents do not flood the
	// controller; it drops back to Poll after each task.
	Poll, MaxPoll time.Duration
	// LongPoll is the wait the agent asks the controller to hold its task
	// poll open for (?wait=S, whole seconds), as the real agent does
	// (default 20 s; negative: none). A controller that answers at once
	// is polled every Poll to MaxPoll.
	LongPoll time.Duration
	// SlowRate is the download rate of hosts with FaultSlowDownload, in
	// bytes per second (default 1 MiB/s).
	SlowRate int64
	// TLS configures HTTPS connections (controller API, boot server) when
	// their URLs are https://; nil uses the system roots.
	TLS *tls.Config
	// Log receives the hosts' events (default: discard).
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.TFTPPort == 0 {
		c.TFTPPort = 69
	}
	if c.DHCPTimeout <= 0 {
		c.DHCPTimeout = time.Second
	}
	if c.DHCPRetries <= 0 {
		c.DHCPRetries = 4
	}
	if c.Poll <= 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.MaxPoll <= 0 {
		c.MaxPoll = time.Second
	}
	c.MaxPoll = max(c.MaxPoll, c.Poll)
	if c.LongPoll == 0 {
		c.LongPoll = 20 * time.Second
	}
	if c.LongPoll < time.Second {
		c.LongPoll = 0
	}
	if c.SlowRate <= 0 {
		c.SlowRate = 1 << 20
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if !c.DHCPServer.IsValid() || !c.DHCPServer.Addr().Is4() || c.DHCPServer.Port() == 0 {
		errs = append(errs, fmt.Errorf("DHCP server %v: want an IPv4 address and port", c.DHCPServer))
	}
	if !c.RelayAddr.IsValid() || !c.RelayAddr.Is4() || c.RelayAddr.IsUnspecified() {
		errs = append(errs, fmt.Errorf("relay address %v: want a unicast IPv4 address (giaddr)", c.RelayAddr))
	}
	if c.BootDelay < 0 {
		errs = append(errs, fmt.Errorf("boot delay %v is negative", c.BootDelay))
	}
	return errors.Join(errs...)
}

// CircuitID is the option 82 circuit-id the relay sends for a host in slot:
// "slot-N" (N in decimal, as HostOptions.Slot).
func CircuitID(slot int) string { return "slot-" + strconv.Itoa(slot) }

// Location is the pxe/dhcp Config.Locations entry that maps what a rack's
// relay sends for slot (circuit-id CircuitID(slot), remote-id rack, giaddr
// relay) to that rack position. A zero relay matches any relay.
func Location(rack string, slot int, relay netip.Addr) dhcp.Location {
	return dhcp.Location{CircuitID: CircuitID(slot), RemoteID: rack, Relay: relay, Rack: rack, Slot: slot}
}

// RelayStats counts a rack relay's traffic.
type RelayStats struct {
	// Relayed: messages sent to the DHCP server. Replies: replies handed to
	// a waiting host. Unmatched: replies no host was waiting for (late
	// retransmissions, a host rebooted). Malformed: datagrams that were not
	// DHCP replies. SendErrors: sends that failed.
	Relayed, Replies, Unmatched, Malformed, SendErrors uint64
}

// Rack is one rack's DHCP relay and the hosts attached to it.
type Rack struct {
	cfg  Config
	log  *slog.Logger
	conn *net.UDPConn
	addr netip.AddrPort

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	hosts   []*Host
	boots   sync.WaitGroup // host boot goroutines
	reader  sync.WaitGroup

	relayed, replies, unmatched, malformed, sendErrors atomic.Uint64

	grantMu sync.Mutex
	grants  []LeaseGrant
}

// LeaseGrant is one DHCPACK a host of the rack received: what the DHCP
// server promised, and when.
type LeaseGrant struct {
	MAC   string
	IP    netip.Addr
	Lease time.Duration // option 51 (0: none given)
	At    time.Time     // when the ACK reached the host
}

func (r *Rack) recordGrant(g LeaseGrant) {
	r.grantMu.Lock()
	r.grants = append(r.grants, g)
	r.grantMu.Unlock()
}

// Grants lists every lease the rack's hosts were given, in arrival order.
func (r *Rack) Grants() []LeaseGrant {
	r.grantMu.Lock()
	defer r.grantMu.Unlock()
	return slices.Clone(r.grants)
}

// Overlaps returns the pairs of grants in which one address was promised
// to two MACs at once: a later grant to another MAC arriving before the
// earlier grant's lease ran out (the first such pair for each address and
// two MACs). A lease with no lifetime is taken as lasting forever.
func Overlaps(grants []LeaseGrant) [][2]LeaseGrant {
	type pair struct {
		ip   netip.Addr
		a, b string
	}
	seen := map[pair]bool{}
	byIP := map[netip.Addr][]LeaseGrant{}
	for _, g := range grants {
		byIP[g.IP] = append(byIP[g.IP], g)
	}
	var out [][2]LeaseGrant
	ips := slices.SortedFunc(maps.Keys(byIP), func(a, b netip.Addr) int { return a.Compare(b) })
	for _, ip := range ips {
		gs := byIP[ip]
		slices.SortStableFunc(gs, func(a, b LeaseGrant) int { return a.At.Compare(b.At) })
		for i, a := range gs {
			for _, b := range gs[i+1:] {
				if b.MAC == a.MAC {
					continue
				}
				k := pair{a.IP, a.MAC, b.MAC}
				if (a.Lease <= 0 || b.At.Before(a.At.Add(a.Lease))) && !seen[k] {
					seen[k] = true
					out = append(out, [2]LeaseGrant{a, b})
				}
			}
		}
	}
	return out
}

// NewRack validates cfg and starts the rack's relay agent. Close stops it
// and every host attached to it.
func NewRack(cfg Config) (*Rack, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("fleet: rack: %w", err)
	}
	la := netip.AddrPortFrom(cfg.RelayAddr, cfg.RelayPort)
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(la))
	if err != nil {
		return nil, fmt.Errorf("fleet: rack relay: listen %v: %w", la, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Rack{
		cfg:     cfg,
		log:     cfg.Log.With("relay", cfg.RelayAddr),
		conn:    conn,
		addr:    conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		ctx:     ctx,
		cancel:  cancel,
		waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
	}
	r.reader.Go(r.readLoop)
	return r, nil
}

// Addr is the relay's bound address (RelayAddr and the port in use).
func (r *Rack) Addr() netip.AddrPort { return r.addr }

// Hosts returns the attached hosts in the order they were attached.
func (r *Rack) Hosts() []*Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Host(nil), r.hosts...)
}

// Stages counts the rack's hosts by stage: a progress view for the demo.
func (r *Rack) Stages() map[Stage]int {
	out := map[Stage]int{}
	for _, h := range r.Hosts() {
		h.mu.Lock()
		out[h.stats.Stage]++
		h.mu.Unlock()
	}
	return out
}

// Stats returns the relay's counters.
func (r *Rack) Stats() RelayStats {
	return RelayStats{
		Relayed: r.relayed.Load(), Replies: r.replies.Load(), Unmatched: r.unmatched.Load(),
		Malformed: r.malformed.Load(), SendErrors: r.sendErrors.Load(),
	}
}

// Close stops every host's boot, waits for them, and closes the relay.
func (r *Rack) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.boots.Wait()
	err := r.conn.Close()
	r.reader.Wait()
	if err != nil {
		return fmt.Errorf("fleet: rack relay %v: close: %w", r.addr, err)
	}
	return nil
}

// startBoot registers a boot goroutine unless the rack is closed.
func (r *Rack) startBoot(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.boots.Go(fn)
	return true
}

// register reserves xid for a host's exchange; false when another host
// uses it.
func (r *Rack) register(xid dhcpv4.TransactionID) (chan *dhcpv4.DHCPv4, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiting[xid]; ok {
		return nil, false
	}
	ch := make(chan *dhcpv4.DHCPv4, 4)
	r.waiting[xid] = ch
	return ch, true
}

func (r *Rack) unregister(xid dhcpv4.TransactionID) {
	r.mu.Lock()
	delete(r.waiting, xid)
	r.mu.Unlock()
}

// relay forwards a host's message to the DHCP server as a relay agent
// would (RFC 2131 §4.1, RFC 3046).
func (r *Rack) relay(msg *dhcpv4.DHCPv4, rack string, slot int) error {
	msg.GatewayIPAddr = r.cfg.RelayAddr.AsSlice()
	msg.HopCount++
	msg.UpdateOption(dhcpv4.OptRelayAgentInfo(
		dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte(CircuitID(slot))),
		dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte(rack)),
	))
	if _, err := r.conn.WriteToUDPAddrPort(msg.ToBytes(), r.cfg.DHCPServer); err != nil {
		r.sendErrors.Add(1)
		return fmt.Errorf("relay to %v: %w", r.cfg.DHCPServer, err)
	}
	r.relayed.Add(1)
	return nil
}

func (r *Rack) readLoop() {
	buf := make([]byte, 1500)
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("relay: read", "err", err)
			continue
		}
		msg, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || msg.OpCode != dhcpv4.OpcodeBootReply {
			r.malformed.Add(1)
			r.log.Debug("relay: not a DHCP reply", "from", src)
			continue
		}
		msg.Options.Del(dhcpv4.OptionRelayAgentInformation) // RFC 3046 §2.1.1
		r.mu.Lock()
		ch := r.waiting[msg.TransactionID]
		r.mu.Unlock()
		if ch == nil {
			r.unmatched.Add(1)
			continue
		}
		select {
		case ch <- msg:
			r.replies.Add(1)
		default:
			r.unmatched.Add(1)
		}
	}
}

// Attach builds the host that b's machine is, in opt's rack slot, and
// subscribes it to b's power and boot events.
func (r *Rack) Attach(b *redfishsim.BMC, opt HostOptions) *Host {
	h := newHost(r, b, opt)
	r.mu.Lock()
	r.hosts = append(r.hosts, h)
	r.mu.Unlock()
	b.OnPowerChange(h.onPower)
	b.OnBoot(h.onBoot)
	return h
}
