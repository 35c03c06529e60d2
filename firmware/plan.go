package firmware

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// NodeInventory is one node's firmware as read (Inventory, or the
// controller's stored copy).
type NodeInventory struct {
	Node       string                        `json:"node"`
	Components []inventory.FirmwareComponent `json:"components"`
}

// NodePlan is what one node needs.
type NodePlan struct {
	Node   string   `json:"node"`
	Status []Status `json:"status"`
	// Updates are the packages to apply, in baseline rule order (the order
	// the baseline's author chose: BMC before BIOS, say).
	Updates []Update `json:"updates,omitempty"`
}

// Update is one package to apply to one component of a node.
type Update struct {
	Component string  `json:"component"`
	Name      string  `json:"name,omitempty"`
	From      string  `json:"from"`
	To        string  `json:"to"`
	Package   Package `json:"package"`
	Rule      int     `json:"rule"`
}

// Key is a stable idempotency key for applying u to node: the same node,
// component and package always give the same key.
func (u Update) Key(node string) string {
	return "firmware/" + node + "/" + u.Component + "/" + u.Package.SHA256[:min(16, len(u.Package.SHA256))]
}

// Plan says which nodes need which packages: every component that is
// behind and has a package gets an Update. Components that are ahead,
// unknown or behind without a package are in Status only. Nodes keep their
// order.
func Plan(b *Baseline, nodes ...NodeInventory) []NodePlan {
	out := make([]NodePlan, 0, len(nodes))
	for _, n := range nodes {
		np := NodePlan{Node: n.Node, Status: Compliance(b, n.Components)}
		for _, s := range np.Status {
			if s.State != Behind || s.Package == "" {
				continue
			}
			p := *b.Components[s.Rule].Package
			np.Updates = append(np.Updates, Update{Component: s.Component, Name: s.Name, From: s.Current, To: p.Version, Package: p, Rule: s.Rule})
		}
		slices.SortStableFunc(np.Updates, func(a, b Update) int { return a.Rule - b.Rule })
		out = append(out, np)
	}
	return out
}

// Pending lists the nodes of a plan that need at least one update, in
// order: the input of Waves.
func Pending(plans []NodePlan) []string {
	var out []string
	for _, p := range plans {
		if len(p.Updates) > 0 {
			out = append(out, p.Node)
		}
	}
	return out
}

// WavePolicy shapes a staged run.
type WavePolicy struct {
	// Canary is the size of the first wave (default 1): a canary failure
	// stops the run whatever MaxFailures says.
	Canary int `json:"canary"`
	// WaveSize is the size of each later wave (default 10).
	WaveSize int `json:"waveSize"`
	// MaxFailures stops the run when this many nodes have failed (default
	// 1: the first failure stops it).
	MaxFailures int `json:"maxFailures"`
}

func (p WavePolicy) withDefaults() WavePolicy {
	if p.Canary <= 0 {
		p.Canary = 1
	}
	if p.WaveSize <= 0 {
		p.WaveSize = 10
	}
	if p.MaxFailures <= 0 {
		p.MaxFailures = 1
	}
	return p
}

// Waves splits nodes, in order, into a canary wave and waves of WaveSize.
func Waves(nodes []string, p WavePolicy) [][]string {
	p = p.withDefaults()
	var out [][]string
	size := p.Canary
	for len(nodes) > 0 {
		n := min(size, len(nodes))
		out = append(out, slices.Clone(nodes[:n]))
		nodes = nodes[n:]
		size = p.WaveSize
	}
	return out
}

// Outcome is how applying a node's plan ended.
type Outcome string

const (
	Succeeded Outcome = "succeeded"
	Failed    Outcome = "failed"
)

// Decision is what a staged run does next.
type Decision struct {
	// Wave is the index of the wave to work on (len(waves) when done).
	Wave int `json:"wave"`
	// Nodes are the wave's nodes with no outcome yet: the ones to apply now
	// (a node with an outcome is never applied again).
	Nodes []string `json:"nodes,omitempty"`
	// Stop: the run stops, for Reason. Done: every node has an outcome.
	Stop   bool   `json:"stop,omitempty"`
	Done   bool   `json:"done,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// NextWave is the pure heart of a staged, resumable run: given the waves
// and the outcomes recorded so far (durably, by the caller), it says what to
// do next. A wave starts only when every node of the waves before it has an
// outcome; the run stops when failures reach MaxFailures, or when a node of
// the canary wave failed. Calling it again after a restart with the same
// outcomes gives the same answer, so nothing is applied twice.
func NextWave(waves [][]string, outcomes map[string]Outcome, p WavePolicy) Decision {
	p = p.withDefaults()
	var failed []string
	for _, w := range waves {
		for _, n := range w {
			if outcomes[n] == Failed {
				failed = append(failed, n)
			}
		}
	}
	if len(waves) > 0 {
		for _, n := range waves[0] {
			if outcomes[n] == Failed {
				return Decision{Wave: 0, Stop: true, Reason: fmt.Sprintf("canary %s failed; fix it before the rest of the fleet is touched", n)}
			}
		}
	}
	if len(failed) >= p.MaxFailures {
		return Decision{Stop: true, Wave: waveOf(waves, outcomes), Reason: fmt.Sprintf("%d node(s) failed (%s), reaching the limit of %d", len(failed), strings.Join(failed, ", "), p.MaxFailures)}
	}
	for i, w := range waves {
		var todo []string
		for _, n := range w {
			if _, ok := outcomes[n]; !ok {
				todo = append(todo, n)
			}
		}
		if len(todo) > 0 {
			return Decision{Wave: i, Nodes: todo}
		}
	}
	return Decision{Wave: len(waves), Done: true}
}

// waveOf is the first wave with a node that has no outcome.
func waveOf(waves [][]string, outcomes map[string]Outcome) int {
	for i, w := range waves {
		for _, n := range w {
			if _, ok := outcomes[n]; !ok {
				return i
			}
		}
	}
	return len(waves)
}
