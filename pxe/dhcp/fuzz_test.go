package dhcp

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandle feeds arbitrary datagrams through the packet path (parse,
// subnet choice, lease table, boot decision, reply building) of a server
// and of a proxy, and checks that nothing panics and every reply parses.
func FuzzHandle(f *testing.F) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	seeds := []*dhcpv4.DHCPv4{
		discover(mac),
		discover(mac, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))),
		discover(mac, dhcpv4.WithUserClass("iPXE", false), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))),
		discover(resMAC, dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1)), dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(
			dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("swp7"))))),
	}
	off := discover(mac)
	off.YourIPAddr = net.IPv4(127, 0, 0, 100)
	off.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))
	off.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	seeds = append(seeds, request(off))
	for _, s := range seeds {
		b := s.ToBytes()
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 300))

	servers := map[string]*Server{}
	for _, mode := range []Mode{ModeServer, ModeProxy} {
		cfg := loopConfig(0)
		cfg.Mode = mode
		s, err := New(cfg, nil, Deps{})
		if err != nil {
			f.Fatal(err)
		}
		servers[string(mode)] = s
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, s := range servers {
			s.sendHook = func(r *reply) {
				if _, err := dhcpv4.FromBytes(r.b); err != nil {
					t.Fatalf("%s: reply %x does not parse: %v", name, r.b, err)
				}
			}
			buf := make([]byte, len(data))
			copy(buf, data)
			for _, proxy := range []bool{false, true} {
				s.handle(context.Background(), packet{buf: &buf, n: len(buf), proxy: proxy,
					src: netip.MustParseAddrPort("127.0.0.1:68"), dst: netip.MustParseAddr("127.0.0.1")})
			}
			if n := s.stats.panics.Load(); n > 0 {
				t.Fatalf("%s: handling %x panicked", name, data)
			}
		}
	})
}
