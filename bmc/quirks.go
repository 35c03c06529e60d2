package bmc

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Quirk names one vendor behaviour the client adapts to. Each is tested
// against the simulator made to behave that way (quirks_test.go).
type Quirk string

const (
	// QuirkBootWithoutMode: the BMC refuses a boot override PATCH that names
	// BootSourceOverrideMode; the override is sent with target and
	// enablement only, and the BMC keeps the mode it has.
	QuirkBootWithoutMode Quirk = "boot-override-without-mode"
	// QuirkMediaUnderSystem: virtual media is listed under the
	// ComputerSystem, not the Manager; it is looked for there first.
	QuirkMediaUnderSystem Quirk = "virtual-media-under-system"
	// QuirkLogsUnderManager: the event logs hang under the Manager only
	// (none under the Chassis, where bmclib clears); they are cleared there.
	QuirkLogsUnderManager Quirk = "event-log-under-manager"
	// QuirkSessionAuth: the BMC refuses HTTP basic authentication; every
	// request carries a Redfish session token (logged out afterwards).
	QuirkSessionAuth Quirk = "session-auth-only"
	// QuirkCycleWithPowerCycle: a power cycle is ResetType PowerCycle, not
	// ForceRestart (which the BMC refuses, or which does not remove power).
	QuirkCycleWithPowerCycle Quirk = "cycle-with-powercycle"
	// QuirkPowerStateLag: the BMC reports a power change seconds after it
	// happened; the settle wait is four times longer.
	QuirkPowerStateLag Quirk = "power-state-lag"
)

// AllQuirks lists every quirk the client knows.
var AllQuirks = []Quirk{QuirkBootWithoutMode, QuirkMediaUnderSystem, QuirkLogsUnderManager, QuirkSessionAuth, QuirkCycleWithPowerCycle, QuirkPowerStateLag}

// QuirkRule is one row of the quirks table: the BMCs it matches and the
// quirks they have.
type QuirkRule struct {
	// Vendor matches, case-insensitively, the start of the service root's
	// Vendor (or its only Oem key) or of the system's Manufacturer.
	Vendor string
	// Model, when set, must also match, case-insensitively, the start of
	// the system's Model or of the service root's Product. Empty matches
	// every model of the vendor.
	Model  string
	Quirks []Quirk
	// Source says where the row comes from (firmware, report, evidence).
	Source string
}

func (r QuirkRule) matches(k modelKey) bool {
	if r.Vendor == "" {
		return false
	}
	if !hasPrefixFold(k.vendor, r.Vendor) && !hasPrefixFold(k.manufacturer, r.Vendor) {
		return false
	}
	return r.Model == "" || hasPrefixFold(k.model, r.Model) || hasPrefixFold(k.product, r.Model)
}

func hasPrefixFold(s, prefix string) bool {
	s = strings.TrimSpace(s)
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// DefaultQuirks is the quirks table Rackstrap ships: only vendor behaviours
// with a known source. Config.Quirks adds a site's rows in front of it.
func DefaultQuirks() []QuirkRule {
	return []QuirkRule{
		{Vendor: "HPE", Quirks: []Quirk{QuirkBootWithoutMode},
			Source: "iLO (HPE DL160 Gen10 and others) answers PropertyNotWritable to BootSourceOverrideMode; bmclib retries without it"},
		{Vendor: "Dell", Quirks: []Quirk{QuirkMediaUnderSystem, QuirkLogsUnderManager},
			Source: "iDRAC9 firmware 6.00 and later list VirtualMedia under Systems/System.Embedded.1; the SEL is under Managers/iDRAC.Embedded.1 only"},
	}
}

// modelKey is what the table is matched on.
type modelKey struct {
	vendor, manufacturer, model, product string
}

func (k modelKey) String() string {
	return strings.Join([]string{first(k.vendor, k.manufacturer), first(k.model, k.product)}, " ")
}

// QuirkNote is one quirk that applies to a BMC and why.
type QuirkNote struct {
	Quirk Quirk
	// From is "table: <Source>" for a row of the table, or "learned" for a
	// behaviour this client saw on a BMC of the same vendor and model.
	From string
}

// quirkSet is the quirks that apply to one BMC.
type quirkSet struct {
	key   modelKey
	notes []QuirkNote
}

func (q quirkSet) has(x Quirk) bool {
	return slices.ContainsFunc(q.notes, func(n QuirkNote) bool { return n.Quirk == x })
}

// names are the quirks' names (nil when none).
func (q quirkSet) names() []Quirk {
	var out []Quirk
	for _, n := range q.notes {
		out = append(out, n.Quirk)
	}
	return out
}

// quirkBook is a Client's quirks table, what it learned per model, and which
// model each BMC is (so that an operation that reads no identity still
// knows its BMC's quirks).
type quirkBook struct {
	table []QuirkRule

	mu      sync.Mutex
	learned map[modelKey][]Quirk
	hosts   map[string]hostModel // by host:port
}

type hostModel struct {
	key modelKey
	at  time.Time
}

// hostModelTTL bounds how long a BMC's model is remembered: a BMC swapped
// behind an address is re-identified.
const hostModelTTL = 10 * time.Minute

func newQuirkBook(site []QuirkRule, learned ...LearnedQuirk) *quirkBook {
	b := &quirkBook{table: append(slices.Clone(site), DefaultQuirks()...), learned: map[modelKey][]Quirk{}, hosts: map[string]hostModel{}}
	for _, l := range learned {
		b.learn(l.key(), l.Quirk)
	}
	return b
}

// LearnedQuirk is a behaviour a Client saw on a BMC of one vendor and model
// (the identity fields as the BMC reports them). A controller keeps them
// (Config.OnLearn) and gives them back to its next Client (Config.Learned),
// so a restart does not relearn each one through a failed first attempt.
type LearnedQuirk struct {
	Vendor       string `json:"vendor,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	Product      string `json:"product,omitempty"`
	Quirk        Quirk  `json:"quirk"`
}

func (l LearnedQuirk) key() modelKey {
	return modelKey{vendor: l.Vendor, manufacturer: l.Manufacturer, model: l.Model, product: l.Product}
}

// String names the model and the quirk, for logs and the audit.
func (l LearnedQuirk) String() string { return l.key().String() + ": " + string(l.Quirk) }

func learnedOf(k modelKey, q Quirk) LearnedQuirk {
	return LearnedQuirk{Vendor: k.vendor, Manufacturer: k.manufacturer, Model: k.model, Product: k.product, Quirk: q}
}

// Learned lists what the client learned (and was given), by model.
func (c *Client) Learned() []LearnedQuirk {
	c.quirks.mu.Lock()
	defer c.quirks.mu.Unlock()
	var out []LearnedQuirk
	for k, qs := range c.quirks.learned {
		for _, q := range qs {
			out = append(out, learnedOf(k, q))
		}
	}
	slices.SortFunc(out, func(a, b LearnedQuirk) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// lookup is the quirks of a model: the table's rows first, then what was
// learned.
func (b *quirkBook) lookup(k modelKey) quirkSet {
	q := quirkSet{key: k}
	for _, r := range b.table {
		if !r.matches(k) {
			continue
		}
		for _, x := range r.Quirks {
			if !q.has(x) {
				q.notes = append(q.notes, QuirkNote{Quirk: x, From: "table: " + first(r.Source, r.Vendor+" "+r.Model)})
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, x := range b.learned[k] {
		if !q.has(x) {
			q.notes = append(q.notes, QuirkNote{Quirk: x, From: "learned"})
		}
	}
	return q
}

// learn records a behaviour seen on a BMC of model k. It reports whether it
// was new.
func (b *quirkBook) learn(k modelKey, x Quirk) bool {
	if k == (modelKey{}) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.Contains(b.learned[k], x) {
		return false
	}
	if len(b.learned) >= maxKeys {
		return false // bounded: a hostile network of made-up models cannot grow it
	}
	b.learned[k] = append(b.learned[k], x)
	return true
}

func (b *quirkBook) setHost(hostPort string, k modelKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.hosts) >= maxKeys {
		for h, m := range b.hosts {
			if time.Since(m.at) > hostModelTTL {
				delete(b.hosts, h)
			}
		}
		if len(b.hosts) >= maxKeys {
			clear(b.hosts)
		}
	}
	b.hosts[hostPort] = hostModel{key: k, at: time.Now()}
}

func (b *quirkBook) host(hostPort string) (modelKey, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.hosts[hostPort]
	if !ok || time.Since(m.at) > hostModelTTL {
		return modelKey{}, false
	}
	return m.key, true
}

// QuirkTable returns the rows the client matches BMCs against (the site's
// rows, then DefaultQuirks), followed by one row per vendor and model whose
// behaviour it learned, with Source "learned": the list a technician reads,
// and the rows worth adding to a site's table.
func (c *Client) QuirkTable() []QuirkRule {
	out := slices.Clone(c.quirks.table)
	c.quirks.mu.Lock()
	defer c.quirks.mu.Unlock()
	keys := make([]modelKey, 0, len(c.quirks.learned))
	for k := range c.quirks.learned {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b modelKey) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		out = append(out, QuirkRule{Vendor: first(k.vendor, k.manufacturer), Model: first(k.model, k.product),
			Quirks: slices.Clone(c.quirks.learned[k]), Source: "learned"})
	}
	return out
}

// quirkNote is the Result note naming the quirks an operation used.
func quirkNote(note string, used ...Quirk) string {
	if len(used) == 0 {
		return note
	}
	s := make([]string, len(used))
	for i, q := range used {
		s[i] = string(q)
	}
	q := "quirks: " + strings.Join(s, ", ")
	if note == "" {
		return q
	}
	return note + "; " + q
}
