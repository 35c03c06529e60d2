package lifecycle

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the engine's Prometheus series.
type Metrics struct {
	stepSeconds *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	transitions *prometheus.CounterVec
	held        *prometheus.GaugeVec
}

// NewMetrics creates the engine's series and registers them on reg (nil: not
// registered, for tests that do not scrape).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rackstrap_step_duration_seconds",
			Help:    "Duration of lifecycle step attempts, by step and outcome.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 900, 3600},
		}, []string{"step", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackstrap_step_errors_total",
			Help: "Failed lifecycle step attempts, by failure class.",
		}, []string{"class"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackstrap_state_transitions_total",
			Help: "Node state changes, by from and to state.",
		}, []string{"from", "to"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rackstrap_nodes_held",
			Help: "Nodes held where they are (not failed), by gate and rule: before imaging or hand-off, or a power action waiting out a no-power window.",
		}, []string{"gate", "rule"}),
	}
	if reg != nil {
		reg.MustRegister(m.stepSeconds, m.errors, m.transitions, m.held)
	}
	return m
}
