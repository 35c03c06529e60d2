package dhcp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Register adds the server's metrics to reg (never a global registry): the
// counters of Stats, the queue depth, and leases per pool.
func (s *Server) Register(reg prometheus.Registerer) error {
	return reg.Register(collector{s})
}

type collector struct{ s *Server }

var (
	descPackets  = prometheus.NewDesc("rackstrap_dhcp_packets_total", "DHCP packets by direction and message type.", []string{"direction", "type"}, nil)
	descEvents   = prometheus.NewDesc("rackstrap_dhcp_events_total", "DHCP server events: dropped (queue full), stale, malformed, ignored, panics, exhausted, naks, send_errors, commit_errors, expired.", []string{"event"}, nil)
	descCommits  = prometheus.NewDesc("rackstrap_dhcp_commit_batches_total", "Group commits of lease changes.", nil, nil)
	descLeasesC  = prometheus.NewDesc("rackstrap_dhcp_committed_leases_total", "Lease changes made durable.", nil, nil)
	descQueue    = prometheus.NewDesc("rackstrap_dhcp_queue_depth", "Packets waiting for a worker.", nil, nil)
	descQueueCap = prometheus.NewDesc("rackstrap_dhcp_queue_capacity", "Packets the worker queues hold before dropping.", nil, nil)
	descPool     = prometheus.NewDesc("rackstrap_dhcp_pool_addresses", "Addresses per subnet by state (size, bound, offered, declined).", []string{"subnet", "state"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descEvents, descCommits, descLeasesC, descQueue, descQueueCap, descPool} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for t, n := range st.Received {
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(n), "in", t)
	}
	for t, n := range st.Sent {
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(n), "out", t)
	}
	for name, n := range map[string]uint64{
		"dropped": st.Dropped, "stale": st.Stale, "malformed": st.Malformed, "ignored": st.Ignored,
		"panics": st.Panics, "exhausted": st.Exhausted, "naks": st.NAKs, "send_errors": st.SendErrors,
		"commit_errors": st.CommitErrors, "expired": st.Expired,
	} {
		ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(descLeasesC, prometheus.CounterValue, float64(st.Committed))
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(st.QueueDepth))
	ch <- prometheus.MustNewConstMetric(descQueueCap, prometheus.GaugeValue, float64(st.QueueSize))
	for _, p := range st.Pools {
		sn := p.Subnet.String()
		for state, n := range map[string]int{"size": p.Size, "bound": p.Bound, "offered": p.Offered, "declined": p.Declined} {
			ch <- prometheus.MustNewConstMetric(descPool, prometheus.GaugeValue, float64(n), sn, state)
		}
	}
}
