package dhcp

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Client is what the server knows of a client when it decides its boot.
type Client struct {
	MAC net.HardwareAddr
	// Arch is option 93 (RFC 4578); HasArch is false for clients that did
	// not send it (an OS's DHCP client, not firmware).
	Arch    iana.Arch
	HasArch bool
	// IPXE: the client runs iPXE (user class "iPXE" or option 175).
	IPXE bool
	// HTTPBoot: UEFI HTTP boot (vendor class "HTTPClient").
	HTTPBoot bool
	// PXE: vendor class "PXEClient".
	PXE bool
	// UUID is option 97's machine UUID in hex, when sent.
	UUID string
	// Location from option 82, when a relay sent one that Config maps.
	Location *NodeLocation
}

// NodeLocation is where a relayed client sits, from option 82.
type NodeLocation struct {
	Relay     netip.Addr
	CircuitID string
	RemoteID  string
	// Rack and Slot are set when a Config.Locations entry matched.
	Rack string
	Slot int
}

// BootDecision is what a client is told to boot.
type BootDecision struct {
	// None sends no boot options (the node boots its local disk).
	None bool
	// File is the boot file name (TFTP path) or URL (HTTP boot, iPXE).
	File string
}

// BootPolicy lets the controller decide a client's boot program from its
// in-memory view. It must not block (no database reads). Returning false
// keeps the server's default choice by architecture.
type BootPolicy interface {
	Boot(c Client) (BootDecision, bool)
}

// Event is what the server tells the Observer about one answer.
type Event struct {
	Type     string // OFFER, ACK, NAK, RELEASE, DECLINE, PROXY-OFFER, PROXY-ACK
	At       time.Time
	Client   Client
	IP       netip.Addr // the address offered, acknowledged, released or declined
	Hostname string
	Boot     BootDecision
}

// Observer hears about every answer: this is how the controller learns a
// node's MACs, rack position and boot decisions. It runs on the packet path
// and must not block: queue the event and return.
type Observer interface {
	DHCPEvent(Event)
}

func (s *Server) handle(ctx context.Context, p packet) {
	defer s.bufs.Put(p.buf)
	defer func() {
		if r := recover(); r != nil {
			s.stats.panics.Add(1)
			s.log.Error("panic handling a packet; packet dropped", "from", p.src, "panic", fmt.Sprint(r))
		}
	}()
	msg, err := dhcpv4.FromBytes((*p.buf)[:p.n])
	if err != nil || msg.OpCode != dhcpv4.OpcodeBootRequest {
		s.stats.malformed.Add(1)
		return
	}
	mt := msg.MessageType()
	s.stats.received[uint8(mt)%16].Add(1)
	if msg.HWType != iana.HWTypeEthernet || len(msg.ClientHWAddr) != 6 {
		s.stats.unsupported.Add(1)
		return
	}
	if s.cfg.Mode == ModeProxy {
		s.proxy(p, msg)
		return
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		s.discover(p, msg)
	case dhcpv4.MessageTypeRequest:
		s.request(ctx, p, msg)
	case dhcpv4.MessageTypeDecline:
		s.decline(ctx, p, msg)
	case dhcpv4.MessageTypeRelease:
		s.release(ctx, p, msg)
	case dhcpv4.MessageTypeInform:
		s.inform(p, msg)
	default:
		s.stats.ignored.Add(1)
	}
}

func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// subnetFor picks the client's subnet and the server's own address on it:
// the relay's subnet (giaddr), the client's (ciaddr), or the ingress
// interface's.
func (s *Server) subnetFor(p packet, msg *dhcpv4.DHCPv4) (int, *Subnet, netip.Addr) {
	var local netip.Addr
	if p.dst.IsValid() && !p.dst.IsUnspecified() && p.dst != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		local = p.dst
	}
	ifps := s.ifaces.prefixes(p.ifIndex, s.now())
	key := addr4(msg.GatewayIPAddr)
	if !key.IsValid() {
		key = addr4(msg.ClientIPAddr)
	}
	for i := range s.cfg.Subnets {
		sub := &s.cfg.Subnets[i]
		if key.IsValid() {
			if sub.Prefix.Contains(key) {
				return i, sub, s.localOn(local, ifps, sub.Prefix)
			}
			continue
		}
		for _, ip := range ifps {
			if sub.Prefix.Contains(ip.Addr()) {
				return i, sub, ip.Addr()
			}
		}
	}
	return -1, nil, netip.Addr{}
}

// localOn is the server address a client on prefix should see: the address
// the packet came to, else the ingress interface's address in prefix, else
// its first address.
func (s *Server) localOn(local netip.Addr, ifps []netip.Prefix, prefix netip.Prefix) netip.Addr {
	if local.IsValid() {
		return local
	}
	for _, ip := range ifps {
		if prefix.Contains(ip.Addr()) {
			return ip.Addr()
		}
	}
	if len(ifps) > 0 {
		return ifps[0].Addr()
	}
	return netip.Addr{}
}

func (s *Server) serverID(local netip.Addr) netip.Addr {
	if s.cfg.ServerID.IsValid() {
		return s.cfg.ServerID
	}
	return local
}

// client describes msg's sender for the boot decision and the observer.
func (s *Server) client(msg *dhcpv4.DHCPv4) Client {
	c := Client{MAC: msg.ClientHWAddr}
	if archs := msg.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	vc := msg.ClassIdentifier()
	c.PXE = strings.HasPrefix(vc, "PXEClient")
	c.HTTPBoot = strings.HasPrefix(vc, "HTTPClient")
	c.IPXE = msg.Options.Has(dhcpv4.GenericOptionCode(175)) || slices.Contains(msg.UserClass(), "iPXE")
	if u := msg.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(u) == 17 && u[0] == 0 {
		c.UUID = hex.EncodeToString(u[1:])
	}
	if ri := msg.RelayAgentInfo(); ri != nil {
		loc := &NodeLocation{
			Relay:     addr4(msg.GatewayIPAddr),
			CircuitID: string(ri.Get(dhcpv4.AgentCircuitIDSubOption)),
			RemoteID:  string(ri.Get(dhcpv4.AgentRemoteIDSubOption)),
		}
		for _, l := range s.cfg.Locations {
			if (l.CircuitID == "" || l.CircuitID == loc.CircuitID) &&
				(l.RemoteID == "" || l.RemoteID == loc.RemoteID) &&
				(!l.Relay.IsValid() || l.Relay == loc.Relay) {
				loc.Rack, loc.Slot = l.Rack, l.Slot
				break
			}
		}
		c.Location = loc
	}
	return c
}

// bootFor chooses the boot program: the policy's answer, else by client
// kind and architecture. Clients that are not network-booting firmware or
// iPXE get none.
func (s *Server) bootFor(c Client) BootDecision {
	b := s.cfg.Boot
	if b.Disabled || (!c.PXE && !c.HTTPBoot && !c.IPXE) {
		return BootDecision{None: true}
	}
	if s.deps.Policy != nil {
		if d, ok := s.deps.Policy.Boot(c); ok {
			return d
		}
	}
	switch {
	case c.IPXE && b.ScriptURL != "":
		return BootDecision{File: strings.ReplaceAll(b.ScriptURL, "{mac}", c.MAC.String())}
	case c.IPXE:
		// Handing iPXE its own loader again would loop forever.
		return BootDecision{None: true}
	case c.HTTPBoot && c.Arch == iana.EFI_X86_64_HTTP && b.HTTPx64 != "":
		return BootDecision{File: b.HTTPx64}
	case c.HTTPBoot && c.Arch == iana.EFI_ARM64_HTTP && b.HTTPArm64 != "":
		return BootDecision{File: b.HTTPArm64}
	case c.HTTPBoot:
		return BootDecision{None: true}
	case !c.HasArch || c.Arch == iana.INTEL_X86PC:
		return BootDecision{File: b.BIOS}
	case c.Arch == iana.EFI_X86_64 || c.Arch == iana.EFI_BC:
		return BootDecision{File: b.UEFIx64}
	case c.Arch == iana.EFI_ARM64:
		return BootDecision{File: b.UEFIArm64}
	}
	return BootDecision{None: true}
}

// applyBoot writes the boot decision into resp.
func applyBoot(resp *dhcpv4.DHCPv4, c Client, d BootDecision, next netip.Addr) {
	if d.None || d.File == "" {
		return
	}
	if next.IsValid() {
		resp.ServerIPAddr = next.AsSlice()
	}
	if len(d.File) < 128 {
		resp.BootFileName = d.File
	}
	resp.UpdateOption(dhcpv4.OptBootFileName(d.File))
	if c.HTTPBoot {
		// EDK2 ignores an HTTP boot offer without this vendor class.
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	}
}

// newReply starts a reply to msg with the common options.
func newReply(msg *dhcpv4.DHCPv4, t dhcpv4.MessageType, sid netip.Addr) *dhcpv4.DHCPv4 {
	resp, _ := dhcpv4.NewReplyFromRequest(msg,
		dhcpv4.WithMessageType(t),
		dhcpv4.WithServerIP(nil),
	)
	resp.ServerIPAddr = net.IPv4zero
	if sid.IsValid() {
		resp.UpdateOption(dhcpv4.OptServerIdentifier(sid.AsSlice()))
	}
	if ri := msg.Options.Get(dhcpv4.OptionRelayAgentInformation); ri != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, ri)) // RFC 3046 §2.2: echo it
	}
	if m := msg.GetOneOption(dhcpv4.OptionClientMachineIdentifier); m != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, m))
	}
	return resp
}

func (s *Server) leaseTime(sub *Subnet) time.Duration {
	if sub.LeaseTime != 0 {
		return sub.LeaseTime
	}
	return s.cfg.LeaseTime
}

func (s *Server) addLeaseOptions(resp *dhcpv4.DHCPv4, sub *Subnet, ip netip.Addr, mac string) string {
	lt := s.leaseTime(sub)
	resp.YourIPAddr = ip.AsSlice()
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(sub.Prefix.Bits(), 32)))
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	s.addNetOptions(resp, sub)
	var host string
	if r, ok := s.tab.reserve[mac]; ok && r.IP == ip && r.Hostname != "" {
		host = r.Hostname
		resp.UpdateOption(dhcpv4.OptHostName(host))
	}
	return host
}

func (s *Server) addNetOptions(resp *dhcpv4.DHCPv4, sub *Subnet) {
	if len(sub.Routers) > 0 {
		resp.UpdateOption(dhcpv4.OptRouter(ips(sub.Routers)...))
	}
	if len(sub.DNS) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(ips(sub.DNS)...))
	}
	if sub.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(sub.Domain))
	}
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = a.AsSlice()
	}
	return out
}

// replyTo addresses resp per RFC 2131 §4.1: to the relay, to the client's
// address, or broadcast on the ingress interface.
func (s *Server) replyTo(p packet, msg, resp *dhcpv4.DHCPv4, local netip.Addr) *reply {
	r := &reply{conn: p.conn, ifIndex: p.ifIndex, src: local, typ: uint8(resp.MessageType())}
	gi, ci := addr4(msg.GatewayIPAddr), addr4(msg.ClientIPAddr)
	switch {
	case p.proxy:
		r.dst = p.src
	case gi.IsValid():
		if resp.MessageType() == dhcpv4.MessageTypeNak {
			resp.SetBroadcast()
		}
		r.dst = netip.AddrPortFrom(gi, s.cfg.RelayPort)
		r.ifIndex = 0 // routed, not necessarily out of the ingress interface
	case ci.IsValid() && resp.MessageType() != dhcpv4.MessageTypeNak:
		r.dst = netip.AddrPortFrom(ci, s.cfg.ClientPort)
		r.ifIndex = 0
	default:
		r.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), s.cfg.ClientPort)
		yi := addr4(resp.YourIPAddr)
		if !msg.IsBroadcast() && yi.IsValid() && r.ifIndex > 0 && resp.MessageType() != dhcpv4.MessageTypeNak {
			r.neighbor, r.broadcast = msg.ClientHWAddr, r.dst
			r.dst = netip.AddrPortFrom(yi, s.cfg.ClientPort)
		}
	}
	r.b = resp.ToBytes()
	return r
}

func (s *Server) observe(t string, c Client, ip netip.Addr, host string, d BootDecision) {
	if s.deps.Observer == nil {
		return
	}
	s.deps.Observer.DHCPEvent(Event{Type: t, At: s.now(), Client: c, IP: ip, Hostname: host, Boot: d})
}

func (s *Server) discover(p packet, msg *dhcpv4.DHCPv4) {
	si, sub, local := s.subnetFor(p, msg)
	if sub == nil {
		s.stats.ignored.Add(1)
		return
	}
	mac := macString(msg.ClientHWAddr)
	now := s.now()
	s.tab.mu.Lock()
	ip, ok := s.tab.candidate(si, sub, mac, addr4(msg.RequestedIPAddress()), now)
	if ok {
		e := &entry{Lease: Lease{IP: ip, MAC: mac, Expires: now.Add(s.cfg.OfferHold), Updated: now}, offered: true}
		if old := s.tab.byIP[ip]; old != nil && !old.offered && old.MAC == mac && old.State == Bound {
			e = old // a bound client rediscovering keeps its lease
		} else {
			s.tab.set(e)
		}
	}
	s.tab.mu.Unlock()
	if !ok {
		if s.stats.exhausted.Add(1); s.rateOK(&s.lastExhausted) {
			s.log.Warn("pool exhausted; add addresses to the subnet's pools", "subnet", sub.Prefix, "mac", mac, "exhausted_total", s.stats.exhausted.Load())
		}
		return
	}
	sid := s.serverID(local)
	resp := newReply(msg, dhcpv4.MessageTypeOffer, sid)
	host := s.addLeaseOptions(resp, sub, ip, mac)
	c := s.client(msg)
	d := s.bootFor(c)
	applyBoot(resp, c, d, s.nextServer(sub, sid))
	s.send(s.replyTo(p, msg, resp, local))
	s.observe("OFFER", c, ip, host, d)
}

func (s *Server) nextServer(sub *Subnet, sid netip.Addr) netip.Addr {
	if sub != nil && sub.NextServer.IsValid() {
		return sub.NextServer
	}
	return sid
}

func (s *Server) nak(p packet, msg *dhcpv4.DHCPv4, local netip.Addr, why string) {
	s.stats.nak.Add(1)
	resp := newReply(msg, dhcpv4.MessageTypeNak, s.serverID(local))
	resp.UpdateOption(dhcpv4.OptMessage(why))
	s.send(s.replyTo(p, msg, resp, local))
	s.observe("NAK", s.client(msg), addr4(msg.RequestedIPAddress()), "", BootDecision{None: true})
}

func (s *Server) request(ctx context.Context, p packet, msg *dhcpv4.DHCPv4) {
	_, sub, local := s.subnetFor(p, msg)
	sid := s.serverID(local)
	mac := macString(msg.ClientHWAddr)
	if want := addr4(msg.ServerIdentifier()); want.IsValid() && want != sid {
		// SELECTING another server's offer: give ours back.
		s.tab.mu.Lock()
		if ip, ok := s.tab.byMAC[mac]; ok {
			if e := s.tab.byIP[ip]; e != nil && e.offered {
				delete(s.tab.byIP, ip)
			}
		}
		s.tab.mu.Unlock()
		s.stats.ignored.Add(1)
		return
	}
	ip := addr4(msg.RequestedIPAddress())
	if !ip.IsValid() {
		ip = addr4(msg.ClientIPAddr)
	}
	if sub == nil || !ip.IsValid() {
		s.stats.ignored.Add(1) // not our network: stay silent (another server's)
		return
	}
	if !sub.Prefix.Contains(ip) {
		s.nak(p, msg, local, "requested address is not on this network")
		return
	}
	now := s.now()
	lt := s.leaseTime(sub)
	s.tab.mu.Lock()
	r, reserved := s.tab.reserve[mac]
	allowed := s.tab.free(ip, mac, now) && ((reserved && r.IP == ip) || (!reserved || !sub.Prefix.Contains(r.IP)) && inPools(sub, ip))
	var l Lease
	if allowed {
		l = Lease{IP: ip, MAC: mac, State: Bound, Expires: now.Add(lt), Updated: now}
		if reserved && r.IP == ip {
			l.Hostname = r.Hostname
		}
		s.tab.set(&entry{Lease: l})
	}
	s.tab.mu.Unlock()
	if !allowed {
		s.nak(p, msg, local, "requested address is not available")
		return
	}
	resp := newReply(msg, dhcpv4.MessageTypeAck, sid)
	host := s.addLeaseOptions(resp, sub, ip, mac)
	c := s.client(msg)
	d := s.bootFor(c)
	applyBoot(resp, c, d, s.nextServer(sub, sid))
	s.commit(ctx, commitItem{lease: l, reply: s.replyTo(p, msg, resp, local)})
	s.observe("ACK", c, ip, host, d)
}

func (s *Server) decline(ctx context.Context, p packet, msg *dhcpv4.DHCPv4) {
	ip, mac := addr4(msg.RequestedIPAddress()), macString(msg.ClientHWAddr)
	if !ip.IsValid() {
		s.stats.ignored.Add(1)
		return
	}
	now := s.now()
	s.tab.mu.Lock()
	e := s.tab.byIP[ip]
	ok := e != nil && e.MAC == mac
	var l Lease
	if ok {
		l = Lease{IP: ip, State: Declined, Expires: now.Add(s.cfg.DeclineHold), Updated: now}
		if t := s.tab.byMAC[mac]; t == ip {
			delete(s.tab.byMAC, mac)
		}
		s.tab.set(&entry{Lease: l})
	}
	s.tab.mu.Unlock()
	if !ok {
		s.stats.ignored.Add(1)
		return
	}
	s.log.Warn("address declined: another host uses it; find it", "ip", ip, "mac", mac, "hold", s.cfg.DeclineHold)
	s.commit(ctx, commitItem{lease: l})
	s.observe("DECLINE", s.client(msg), ip, "", BootDecision{None: true})
}

func (s *Server) release(ctx context.Context, p packet, msg *dhcpv4.DHCPv4) {
	ip, mac := addr4(msg.ClientIPAddr), macString(msg.ClientHWAddr)
	now := s.now()
	s.tab.mu.Lock()
	e := s.tab.byIP[ip]
	ok := ip.IsValid() && e != nil && !e.offered && e.MAC == mac && e.State == Bound
	var l Lease
	if ok {
		l = e.Lease
		l.State, l.Updated = Released, now
		s.tab.set(&entry{Lease: l})
	}
	s.tab.mu.Unlock()
	if !ok {
		s.stats.ignored.Add(1)
		return
	}
	s.commit(ctx, commitItem{lease: l})
	s.observe("RELEASE", s.client(msg), ip, "", BootDecision{None: true})
}

func (s *Server) inform(p packet, msg *dhcpv4.DHCPv4) {
	_, sub, local := s.subnetFor(p, msg)
	if sub == nil {
		s.stats.ignored.Add(1)
		return
	}
	resp := newReply(msg, dhcpv4.MessageTypeAck, s.serverID(local))
	s.addNetOptions(resp, sub)
	s.send(s.replyTo(p, msg, resp, local))
}

// proxy answers PXE clients with boot options only (proxyDHCP): an OFFER to
// their DISCOVER on port 67, an ACK to their REQUEST on port 4011 (or on 67
// when addressed to this server).
func (s *Server) proxy(p packet, msg *dhcpv4.DHCPv4) {
	c := s.client(msg)
	if !c.PXE && !c.HTTPBoot {
		s.stats.ignored.Add(1)
		return
	}
	local := p.dst
	if !local.IsValid() || local == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		local = s.localOn(netip.Addr{}, s.ifaces.prefixes(p.ifIndex, s.now()), netip.Prefix{})
	}
	sid := s.serverID(local)
	var t dhcpv4.MessageType
	switch mt := msg.MessageType(); {
	case mt == dhcpv4.MessageTypeDiscover && !p.proxy:
		t = dhcpv4.MessageTypeOffer
	case mt == dhcpv4.MessageTypeRequest && (p.proxy || addr4(msg.ServerIdentifier()) == sid):
		t = dhcpv4.MessageTypeAck
	case mt == dhcpv4.MessageTypeInform && p.proxy:
		t = dhcpv4.MessageTypeAck
	default:
		s.stats.ignored.Add(1)
		return
	}
	d := s.bootFor(c)
	if d.None {
		s.stats.ignored.Add(1)
		return
	}
	resp := newReply(msg, t, sid)
	resp.YourIPAddr = net.IPv4zero
	resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	if c.HTTPBoot {
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	}
	// PXE vendor options: discovery control 8 = boot from the file name
	// given, skip boot-server discovery; some ROMs want the end byte.
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	applyBoot(resp, c, d, sid)
	s.send(s.replyTo(p, msg, resp, local))
	name := "PROXY-OFFER"
	if t == dhcpv4.MessageTypeAck {
		name = "PROXY-ACK"
	}
	s.observe(name, c, netip.Addr{}, "", d)
}

// rateOK allows one log line a second per *last.
func (s *Server) rateOK(last *atomic.Int64) bool {
	now := s.now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(time.Second) && last.CompareAndSwap(prev, now)
}
