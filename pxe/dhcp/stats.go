package dhcp

import (
	"sync/atomic"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

type counters struct {
	received, sent                           [16]atomic.Uint64
	dropped, malformed, ignored, panics      atomic.Uint64
	nak, exhausted, sendErrors, commitErrors atomic.Uint64
	batches, committed, expired, unsupported atomic.Uint64
	stale, unicastFallbacks                  atomic.Uint64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Received and Sent count packets by DHCP message type name
	// ("DISCOVER", "OFFER", …).
	Received, Sent map[string]uint64
	// Dropped: the worker queue was full; Stale: a DISCOVER waited past
	// MaxQueueDelay. Malformed: not a DHCP request.
	// Ignored: well formed but not for this server (another server chosen,
	// no subnet, unsupported hardware type).
	Dropped, Stale, Malformed, Ignored, Panics uint64
	// Exhausted: no free address in the pool. NAKs: requests refused.
	Exhausted, NAKs          uint64
	SendErrors, CommitErrors uint64
	// UnicastFallbacks: a reply to a client without an address was
	// broadcast because its neighbour entry could not be set.
	UnicastFallbacks uint64
	// Batches and Committed count group commits and the lease changes in
	// them; Expired counts leases that ran out.
	Batches, Committed, Expired uint64
	// QueueDepth is the number of packets waiting for a worker now.
	QueueDepth, QueueSize int
	Pools                 []PoolStats
}

// Stats returns a snapshot of the counters and pools.
func (s *Server) Stats() Stats {
	st := Stats{
		Received: map[string]uint64{}, Sent: map[string]uint64{},
		Dropped: s.stats.dropped.Load(), Stale: s.stats.stale.Load(), Malformed: s.stats.malformed.Load(),
		Ignored: s.stats.ignored.Load() + s.stats.unsupported.Load(), Panics: s.stats.panics.Load(),
		Exhausted: s.stats.exhausted.Load(), NAKs: s.stats.nak.Load(),
		SendErrors: s.stats.sendErrors.Load(), UnicastFallbacks: s.stats.unicastFallbacks.Load(), CommitErrors: s.stats.commitErrors.Load(),
		Batches: s.stats.batches.Load(), Committed: s.stats.committed.Load(), Expired: s.stats.expired.Load(),
		QueueDepth: len(s.queue) + len(s.fresh), QueueSize: cap(s.queue) + cap(s.fresh),
		Pools: s.tab.stats(s.cfg.Subnets, s.now()),
	}
	for i := range s.stats.received {
		if n := s.stats.received[i].Load(); n > 0 {
			st.Received[typeName(uint8(i))] = n
		}
		if n := s.stats.sent[i].Load(); n > 0 {
			st.Sent[typeName(uint8(i))] = n
		}
	}
	return st
}

func typeName(t uint8) string {
	switch dhcpv4.MessageType(t) {
	case dhcpv4.MessageTypeDiscover:
		return "DISCOVER"
	case dhcpv4.MessageTypeOffer:
		return "OFFER"
	case dhcpv4.MessageTypeRequest:
		return "REQUEST"
	case dhcpv4.MessageTypeDecline:
		return "DECLINE"
	case dhcpv4.MessageTypeAck:
		return "ACK"
	case dhcpv4.MessageTypeNak:
		return "NAK"
	case dhcpv4.MessageTypeRelease:
		return "RELEASE"
	case dhcpv4.MessageTypeInform:
		return "INFORM"
	}
	return "OTHER"
}
