// Package dhcp is Rackstrap's DHCPv4 server: address pools, reservations,
// relays with option 82, proxyDHCP and the network-boot decision, with leases
// committed in batches to a LeaseStore before they are acknowledged.
//
// Packets are parsed and built with github.com/insomniacslk/dhcp; the
// receive loop, worker pool, lease table and group commit are ours.
package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"
)

// Mode says whether the server hands out addresses or only boot options.
type Mode string

const (
	// ModeServer is a full DHCP server: pools, reservations, leases.
	ModeServer Mode = "server"
	// ModeProxy is proxyDHCP (PXE spec): another server hands out
	// addresses; this one answers PXE clients on port 67 and 4011 with boot
	// options only.
	ModeProxy Mode = "proxy"
)

// Range is an inclusive range of addresses to lease.
type Range struct {
	Start, End netip.Addr
}

// Reservation pins an address (and optionally a host name) to a MAC.
type Reservation struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

// Subnet is one IPv4 network the server leases in, with its options.
type Subnet struct {
	Prefix       netip.Prefix
	Pools        []Range
	Reservations []Reservation
	Routers      []netip.Addr
	DNS          []netip.Addr
	Domain       string
	// NextServer is siaddr, the TFTP server; zero means the server's own
	// address on the client's network.
	NextServer netip.Addr
	// LeaseTime overrides Config.LeaseTime for this subnet.
	LeaseTime time.Duration
}

// Location maps relay information (option 82) to a rack position. Every
// non-empty field must match; the first matching Location wins.
type Location struct {
	CircuitID string
	RemoteID  string
	Relay     netip.Addr // giaddr; zero matches any relay
	Rack      string
	Slot      int
}

// Boot configures the boot programs handed to network-booting clients.
type Boot struct {
	// Disabled turns off boot options entirely (a plain DHCP server).
	Disabled bool
	// BIOS is the TFTP file for legacy BIOS PXE (arch 0).
	BIOS string
	// UEFIx64 is the TFTP file for UEFI x86-64 PXE (arch 7 and 9).
	UEFIx64 string
	// UEFIArm64 is the TFTP file for UEFI arm64 PXE (arch 11).
	UEFIArm64 string
	// HTTPx64 and HTTPArm64 are the URLs for UEFI HTTP boot (arch 16 and 19,
	// vendor class "HTTPClient").
	HTTPx64, HTTPArm64 string
	// ScriptURL is the iPXE script URL for clients that already run iPXE
	// (user class "iPXE" or option 175). "{mac}" is replaced by the client's
	// MAC in colon form.
	ScriptURL string
}

// Config configures a Server. Zero fields take the defaults of withDefaults.
type Config struct {
	Mode Mode
	// Interface binds the server to one network interface (SO_BINDTODEVICE);
	// empty listens on all. Replies to clients without an address leave
	// through the interface the request came in on.
	Interface string
	// Addr is the listen address (default 0.0.0.0, the only address on which
	// broadcasts arrive).
	Addr netip.Addr
	// Port is the server port (default 67); ClientPort the port replies to
	// clients go to (default 68); RelayPort the port replies to relays go to
	// (default 67); ProxyPort the PXE boot-server port of proxyDHCP (4011).
	// Tests move them to run without privileges.
	Port, ClientPort, RelayPort, ProxyPort uint16
	// ServerID is option 54. Zero: the server's address on the client's
	// network (the ingress interface's, or the address a relay sent to).
	ServerID netip.Addr
	Subnets  []Subnet
	// Locations map option 82 to rack positions.
	Locations []Location
	Boot      Boot
	// LeaseTime defaults to 1 h; OfferHold is how long an offered address
	// stays set aside for the client (default 30 s); DeclineHold how long a
	// declined address stays out of use (default 10 min).
	LeaseTime, OfferHold, DeclineHold time.Duration
	// Workers handle packets (default 2×GOMAXPROCS, at least 4). QueueSize
	// bounds the packets waiting for a worker (default 4096): beyond it,
	// packets are dropped and counted.
	Workers, QueueSize int
	// MaxBatch bounds the leases committed in one store call (default 1024).
	MaxBatch int
	// MaxQueueDelay drops a DISCOVER that waited longer than this for a
	// worker (default 500 ms; iPXE retransmits after 1 s): its client has
	// likely given up on the answer, and the time is better spent on
	// exchanges under way.
	MaxQueueDelay time.Duration
	// ReadBuffer is the socket receive buffer in bytes (default 1 MiB).
	ReadBuffer int
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeServer
	}
	if !c.Addr.IsValid() {
		c.Addr = netip.IPv4Unspecified()
	}
	if c.Port == 0 {
		c.Port = 67
	}
	if c.ClientPort == 0 {
		c.ClientPort = 68
	}
	if c.RelayPort == 0 {
		c.RelayPort = 67
	}
	if c.ProxyPort == 0 {
		c.ProxyPort = 4011
	}
	if c.Boot.BIOS == "" {
		c.Boot.BIOS = "undionly.kpxe"
	}
	if c.Boot.UEFIx64 == "" {
		c.Boot.UEFIx64 = "snponly.efi"
	}
	if c.Boot.UEFIArm64 == "" {
		c.Boot.UEFIArm64 = "snponly-arm64.efi"
	}
	if c.LeaseTime == 0 {
		c.LeaseTime = time.Hour
	}
	if c.OfferHold == 0 {
		c.OfferHold = 30 * time.Second
	}
	if c.DeclineHold == 0 {
		c.DeclineHold = 10 * time.Minute
	}
	if c.Workers == 0 {
		c.Workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if c.QueueSize == 0 {
		c.QueueSize = 4096
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 1 << 20
	}
	if c.MaxQueueDelay == 0 {
		c.MaxQueueDelay = 500 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1024
	}
	return c
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid DHCP configuration")

func (c Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	switch c.Mode {
	case ModeServer:
		if len(c.Subnets) == 0 {
			bad("no subnets: a server needs at least one subnet with a pool or reservations")
		}
	case ModeProxy:
		if c.Boot.Disabled {
			bad("proxy mode with boot disabled would answer nothing")
		}
	default:
		bad("mode %q: use server or proxy", c.Mode)
	}
	if !c.Addr.Is4() {
		bad("listen address %v is not IPv4", c.Addr)
	}
	if c.ServerID.IsValid() && !c.ServerID.Is4() {
		bad("server id %v is not IPv4", c.ServerID)
	}
	if c.Workers < 1 || c.QueueSize < 1 || c.MaxBatch < 1 {
		bad("workers, queue size and batch size must be positive")
	}
	if c.LeaseTime < time.Minute {
		bad("lease time %v: use at least 1m", c.LeaseTime)
	}
	if u := c.Boot.ScriptURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		bad("script URL %q: use an http:// or https:// URL", u)
	}
	macs := map[string]bool{}
	ips := map[netip.Addr]bool{}
	for i, s := range c.Subnets {
		p := s.Prefix
		if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 || p.Masked() != p {
			bad("subnet %d: prefix %v: use an IPv4 network such as 10.0.0.0/24", i, p)
			continue
		}
		for j, s2 := range c.Subnets[:i] {
			if s2.Prefix.Overlaps(p) {
				bad("subnet %v overlaps subnet %d (%v)", p, j, s2.Prefix)
			}
		}
		for _, r := range s.Pools {
			if !p.Contains(r.Start) || !p.Contains(r.End) || r.End.Less(r.Start) {
				bad("subnet %v: pool %v-%v must lie inside the subnet, start before end", p, r.Start, r.End)
			}
		}
		for _, r := range s.Reservations {
			if len(r.MAC) != 6 {
				bad("subnet %v: reservation %v: MAC %q is not an Ethernet address", p, r.IP, r.MAC)
			}
			if !p.Contains(r.IP) {
				bad("subnet %v: reservation %v for %v lies outside the subnet", p, r.IP, r.MAC)
			}
			if macs[r.MAC.String()] || ips[r.IP] {
				bad("reservation %v for %v: MAC or address reserved twice", r.IP, r.MAC)
			}
			macs[r.MAC.String()], ips[r.IP] = true, true
		}
		for _, a := range append(append([]netip.Addr{s.NextServer}, s.Routers...), s.DNS...) {
			if a.IsValid() && !a.Is4() {
				bad("subnet %v: %v is not an IPv4 address", p, a)
			}
		}
		if s.LeaseTime != 0 && s.LeaseTime < time.Minute {
			bad("subnet %v: lease time %v: use at least 1m", p, s.LeaseTime)
		}
	}
	return errors.Join(errs...)
}
