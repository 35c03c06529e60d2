package dhcp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// LeaseState is where a lease stands.
type LeaseState string

const (
	// Bound: acknowledged to the client and durable.
	Bound LeaseState = "bound"
	// Released by the client (DHCPRELEASE); the address is free.
	Released LeaseState = "released"
	// Declined by the client (DHCPDECLINE: the address was in use); the
	// address stays out of use until Expires.
	Declined LeaseState = "declined"
	// Expired: the client let the lease run out; the address is free.
	Expired LeaseState = "expired"
)

// Lease is one address binding, as the server commits it.
type Lease struct {
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"` // lower-case colon form; empty for Declined
	Hostname string     `json:"hostname,omitempty"`
	State    LeaseState `json:"state"`
	Expires  time.Time  `json:"expires"`
	Updated  time.Time  `json:"updated"`
}

// LeaseStore keeps leases durable. Commit receives a batch of lease changes
// (the latest state of each address, keyed by IP) and returns once they are
// durable: the server acknowledges no lease before Commit returns. Load
// returns the latest state of every address ever committed and not yet
// forgotten. The controller's store implements it; FileStore is a journal.
type LeaseStore interface {
	Load(ctx context.Context) ([]Lease, error)
	Commit(ctx context.Context, leases []Lease) error
}

// entry is an address's in-memory state; offered entries are never
// committed.
type entry struct {
	Lease
	offered bool
}

// usable reports whether the address can be given to mac at now.
func (e *entry) usable(mac string, now time.Time) bool {
	if e == nil {
		return true
	}
	switch e.State {
	case Released, Expired:
		return true
	case Declined:
		return !now.Before(e.Expires)
	}
	return e.MAC == mac || !now.Before(e.Expires)
}

// table is the in-memory lease view the hot path reads and writes.
type table struct {
	mu      sync.Mutex
	byIP    map[netip.Addr]*entry
	byMAC   map[string]netip.Addr
	cursor  map[int]netip.Addr // next pool address to try, per subnet index
	reserve map[string]Reservation
	resIP   map[netip.Addr]string // reserved address → its MAC
}

func newTable(subnets []Subnet) *table {
	t := &table{
		byIP:    map[netip.Addr]*entry{},
		byMAC:   map[string]netip.Addr{},
		cursor:  map[int]netip.Addr{},
		reserve: map[string]Reservation{},
		resIP:   map[netip.Addr]string{},
	}
	for _, s := range subnets {
		for _, r := range s.Reservations {
			t.reserve[r.MAC.String()] = r
			t.resIP[r.IP] = r.MAC.String()
		}
	}
	return t
}

// restore loads committed leases.
func (t *table) restore(ls []Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range ls {
		if old, ok := t.byIP[l.IP]; ok && old.Updated.After(l.Updated) {
			continue
		}
		t.byIP[l.IP] = &entry{Lease: l}
		if l.State == Bound && l.MAC != "" {
			t.byMAC[l.MAC] = l.IP
		}
	}
}

// candidate picks the address to offer mac in subnet si: its reservation,
// its current or previous lease, the requested address, or the next free
// pool address. It returns false when the pool is exhausted.
func (t *table) candidate(si int, s *Subnet, mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if r, ok := t.reserve[mac]; ok && s.Prefix.Contains(r.IP) {
		return r.IP, true
	}
	if ip, ok := t.byMAC[mac]; ok && s.Prefix.Contains(ip) && t.free(ip, mac, now) {
		return ip, true
	}
	if requested.IsValid() && inPools(s, requested) && t.free(requested, mac, now) {
		return requested, true
	}
	for pass := 0; pass < 2; pass++ {
		start := t.cursor[si]
		for _, r := range s.Pools {
			ip := r.Start
			if pass == 0 && start.IsValid() {
				if start.Less(r.Start) || r.End.Less(start) {
					continue
				}
				ip = start
			}
			for ; ip.IsValid() && !r.End.Less(ip); ip = ip.Next() {
				if t.free(ip, mac, now) {
					t.cursor[si] = ip.Next()
					return ip, true
				}
			}
			start = netip.Addr{}
		}
		t.cursor[si] = netip.Addr{}
	}
	return netip.Addr{}, false
}

// free reports whether ip can go to mac: not reserved for another MAC, and
// not bound, offered or declined to anyone else.
func (t *table) free(ip netip.Addr, mac string, now time.Time) bool {
	if m, ok := t.resIP[ip]; ok && m != mac {
		return false
	}
	return t.byIP[ip].usable(mac, now)
}

func inPools(s *Subnet, ip netip.Addr) bool {
	for _, r := range s.Pools {
		if !ip.Less(r.Start) && !r.End.Less(ip) {
			return true
		}
	}
	return false
}

// set records a new state for ip, keeping the MAC index in step.
func (t *table) set(e *entry) {
	if old, ok := t.byIP[e.IP]; ok && old.MAC != "" && old.MAC != e.MAC && t.byMAC[old.MAC] == e.IP {
		delete(t.byMAC, old.MAC)
	}
	if prev, ok := t.byMAC[e.MAC]; ok && prev != e.IP {
		if pe := t.byIP[prev]; pe != nil && pe.offered {
			delete(t.byIP, prev) // a client moves on from an old offer
		}
	}
	t.byIP[e.IP] = e
	switch {
	case e.MAC == "":
	case e.State == Bound:
		t.byMAC[e.MAC] = e.IP
	default:
		if t.byMAC[e.MAC] == e.IP {
			delete(t.byMAC, e.MAC)
		}
	}
}

// expire turns bound leases past their end into Expired and drops stale
// offers, returning the changes to commit.
func (t *table) expire(now time.Time) []Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Lease
	for ip, e := range t.byIP {
		switch {
		case e.offered && !now.Before(e.Expires):
			delete(t.byIP, ip)
			if t.byMAC[e.MAC] == ip {
				delete(t.byMAC, e.MAC)
			}
		case !e.offered && e.State == Bound && !now.Before(e.Expires):
			n := &entry{Lease: e.Lease}
			n.State, n.Updated = Expired, now
			t.set(n)
			out = append(out, n.Lease)
		}
	}
	return out
}

// PoolStats counts a subnet's addresses.
type PoolStats struct {
	Subnet   netip.Prefix
	Size     int // addresses in the pools
	Bound    int // bound leases (pool and reservations)
	Offered  int
	Declined int
}

func (t *table) stats(subnets []Subnet, now time.Time) []PoolStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PoolStats, len(subnets))
	for i, s := range subnets {
		out[i].Subnet = s.Prefix
		for _, r := range s.Pools {
			out[i].Size += int(ipDiff(r.Start, r.End)) + 1
		}
	}
	for ip, e := range t.byIP {
		for i, s := range subnets {
			if !s.Prefix.Contains(ip) || now.After(e.Expires) {
				continue
			}
			switch {
			case e.offered:
				out[i].Offered++
			case e.State == Bound:
				out[i].Bound++
			case e.State == Declined:
				out[i].Declined++
			}
		}
	}
	return out
}

func ipDiff(a, b netip.Addr) uint32 {
	x, y := a.As4(), b.As4()
	return (uint32(y[0])<<24 | uint32(y[1])<<16 | uint32(y[2])<<8 | uint32(y[3])) -
		(uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3]))
}

func macString(hw net.HardwareAddr) string { return hw.String() }

// Identify returns the MAC holding a bound lease on ip: how the HTTP and
// TFTP access logs name the node behind a client address.
func (s *Server) Identify(ip netip.Addr) (string, bool) {
	s.tab.mu.Lock()
	defer s.tab.mu.Unlock()
	e := s.tab.byIP[ip]
	if e == nil || e.offered || e.State != Bound || e.MAC == "" {
		return "", false
	}
	return e.MAC, true
}
