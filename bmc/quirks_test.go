package bmc

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// quirkyNode is a simulated machine of the given flavor, model and quirks.
func quirkyNode(i int, flavor redfishsim.Flavor, model string, q redfishsim.Quirks) redfishsim.Node {
	n := redfishsim.SampleNode(i)
	n.Flavor = flavor
	if model != "" {
		n.Hardware.System.Model = model
	}
	n.Quirks = q
	return n
}

func quirkClient(t *testing.T, site ...QuirkRule) *Client {
	return New(Config{Timeout: 20 * time.Second, SettleTimeout: 5 * time.Second, PollInterval: 20 * time.Millisecond, Logger: testLogger(t), Quirks: site})
}

// learnedRow is the QuirkTable row the client learned for a model, if any.
func learnedRow(c *Client, model string) (QuirkRule, bool) {
	for _, r := range c.QuirkTable() {
		if r.Source == "learned" && r.Model == model {
			return r, true
		}
	}
	return QuirkRule{}, false
}

func TestQuirkTableMatching(t *testing.T) {
	t.Parallel()
	book := newQuirkBook([]QuirkRule{{Vendor: "Contoso", Model: "RS-SESSION", Quirks: []Quirk{QuirkSessionAuth}, Source: "site"}})
	cases := map[string]struct {
		key  modelKey
		want []Quirk
	}{
		"hpe by root vendor":        {modelKey{vendor: "HPE", manufacturer: "Rackstrap Sim", model: "ProLiant"}, []Quirk{QuirkBootWithoutMode}},
		"dell by manufacturer":      {modelKey{manufacturer: "Dell Inc.", model: "PowerEdge XE9680"}, []Quirk{QuirkMediaUnderSystem, QuirkLogsUnderManager}},
		"case-insensitive":          {modelKey{vendor: "dell"}, []Quirk{QuirkMediaUnderSystem, QuirkLogsUnderManager}},
		"site row by product":       {modelKey{vendor: "Contoso", product: "RS-SESSION-2"}, []Quirk{QuirkSessionAuth}},
		"site row by model":         {modelKey{vendor: "Contoso", model: "rs-session-9"}, []Quirk{QuirkSessionAuth}},
		"site row, other model":     {modelKey{vendor: "Contoso", model: "RS-8GPU"}, nil},
		"unknown vendor: defaults":  {modelKey{vendor: "Supermicro", model: "SYS-821GE"}, nil},
		"vendor must be the prefix": {modelKey{vendor: "Not Dell"}, nil},
		"nothing known":             {modelKey{}, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := book.lookup(tc.key).names()
			if len(got) == 0 {
				got = nil
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("lookup(%+v) (-want +got):\n%s", tc.key, d)
			}
		})
	}
	for _, r := range DefaultQuirks() {
		if r.Source == "" || len(r.Quirks) == 0 {
			t.Errorf("default row %+v has no source or no quirk", r)
		}
		for _, q := range r.Quirks {
			if !slices.Contains(AllQuirks, q) {
				t.Errorf("default row %s names unknown quirk %q", r.Vendor, q)
			}
		}
	}
}

// An HPE BMC refuses BootSourceOverrideMode: the table sends the override
// without it, so the BMC refuses nothing. A BMC nobody listed that refuses
// it still works (bmclib retries without the mode), and its model is
// learned, so the next BMC of that model gets the right request at once.
func TestQuirkBootWithoutMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("table", func(t *testing.T) {
		t.Parallel()
		sim := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorHPE, "", redfishsim.Quirks{})).BMCs()[0]
		c := quirkClient(t)
		res, err := c.SetBootOnce(ctx, endpointOf(sim), BootPXE, true, "")
		if err != nil || !res.Changed || !strings.Contains(res.Note, string(QuirkBootWithoutMode)) {
			t.Fatalf("SetBootOnce = %+v, %v; want a change noting the quirk", res, err)
		}
		if got := sim.BootOverride(); got.Enabled != "Once" || got.Target != "Pxe" {
			t.Errorf("simulator override = %+v", got)
		}
		if n := sim.ErrorReplies(); n != 0 {
			t.Errorf("the BMC refused %d requests, want none: %v", n, sim.RequestLog())
		}
	})
	t.Run("learned", func(t *testing.T) {
		t.Parallel()
		q := redfishsim.Quirks{RejectBootMode: true}
		f := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorGeneric, "RS-NOMODE", q), quirkyNode(2, redfishsim.FlavorGeneric, "RS-NOMODE", q))
		first, second := f.BMCs()[0], f.BMCs()[1]
		c := quirkClient(t)
		if _, err := c.SetBootOnce(ctx, endpointOf(first), BootPXE, false, ""); err != nil {
			t.Fatalf("SetBootOnce on a BMC nobody listed: %v", err)
		}
		if first.ErrorReplies() == 0 {
			t.Error("the unlisted BMC refused nothing; the test's BMC does not refuse the mode")
		}
		if r, ok := learnedRow(c, "RS-NOMODE"); !ok || !slices.Contains(r.Quirks, QuirkBootWithoutMode) {
			t.Fatalf("QuirkTable() = %+v; want a learned row for RS-NOMODE", c.QuirkTable())
		}
		res, err := c.SetBootOnce(ctx, endpointOf(second), BootPXE, false, "")
		if err != nil || !strings.Contains(res.Note, string(QuirkBootWithoutMode)) {
			t.Errorf("SetBootOnce on a second BMC of the model = %+v, %v", res, err)
		}
		if n := second.ErrorReplies(); n != 0 {
			t.Errorf("the second BMC refused %d requests, want none: %v", n, second.RequestLog())
		}
	})
	// What one client learned and handed to OnLearn, a new client given it
	// as Config.Learned (a restarted controller) knows without a refusal.
	t.Run("kept across clients", func(t *testing.T) {
		t.Parallel()
		q := redfishsim.Quirks{RejectBootMode: true}
		f := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorGeneric, "RS-KEPT", q), quirkyNode(2, redfishsim.FlavorGeneric, "RS-KEPT", q))
		first, second := f.BMCs()[0], f.BMCs()[1]
		var mu sync.Mutex
		var kept []LearnedQuirk
		c := New(Config{Timeout: 20 * time.Second, Logger: testLogger(t), OnLearn: func(l LearnedQuirk) {
			mu.Lock()
			defer mu.Unlock()
			kept = append(kept, l)
		}})
		for range 2 { // learned once, reported once
			if _, err := c.SetBootOnce(ctx, endpointOf(first), BootPXE, false, ""); err != nil {
				t.Fatalf("SetBootOnce: %v", err)
			}
		}
		mu.Lock()
		got := slices.Clone(kept)
		mu.Unlock()
		if len(got) != 1 || got[0].Quirk != QuirkBootWithoutMode || got[0].Model != "RS-KEPT" {
			t.Fatalf("OnLearn got %+v; want one %s for RS-KEPT", got, QuirkBootWithoutMode)
		}
		if diff := cmp.Diff(got, c.Learned()); diff != "" {
			t.Errorf("Learned() differs from what OnLearn saw (-OnLearn +Learned):\n%s", diff)
		}
		restarted := New(Config{Timeout: 20 * time.Second, Logger: testLogger(t), Learned: got})
		res, err := restarted.SetBootOnce(ctx, endpointOf(second), BootPXE, false, "")
		if err != nil || !strings.Contains(res.Note, string(QuirkBootWithoutMode)) {
			t.Errorf("SetBootOnce from a client given the learned quirk = %+v, %v", res, err)
		}
		if n := second.ErrorReplies(); n != 0 {
			t.Errorf("the BMC refused %d requests of a client that was told the quirk: %v", n, second.RequestLog())
		}
	})
}

// iDRAC lists virtual media under the system: the table goes there straight
// away and never walks the managers; an unlisted BMC with the same layout
// is found by the walk and learned.
func TestQuirkMediaUnderSystem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const iso = "http://10.0.0.1/live.iso"
	t.Run("table", func(t *testing.T) {
		t.Parallel()
		sim := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorDell, "", redfishsim.Quirks{})).BMCs()[0]
		c := quirkClient(t)
		ep := endpointOf(sim)
		if _, err := c.Identify(ctx, ep); err != nil {
			t.Fatal(err)
		}
		before := len(sim.RequestLog())
		res, err := c.InsertMedia(ctx, ep, iso, "")
		if err != nil || !res.Changed || !strings.Contains(res.Note, string(QuirkMediaUnderSystem)) {
			t.Fatalf("InsertMedia = %+v, %v", res, err)
		}
		if m := sim.Media()[0]; !m.Inserted || m.Image != iso {
			t.Errorf("simulator CD = %+v", m)
		}
		// Another image replaces the one inserted (ejected first).
		const other = "http://10.0.0.1/other.iso"
		if res, err := c.InsertMedia(ctx, ep, other, ""); err != nil || !res.Changed || sim.Media()[0].Image != other {
			t.Fatalf("InsertMedia over an inserted image = %+v, %v (simulator %+v)", res, err, sim.Media()[0])
		}
		if res, err := c.EjectMedia(ctx, ep, ""); err != nil || !res.Changed {
			t.Fatalf("EjectMedia = %+v, %v", res, err)
		}
		for _, r := range sim.RequestLog()[before:] {
			if strings.Contains(r, "/Managers") {
				t.Errorf("the client read the managers (%s) although the table says the media is under the system", r)
			}
		}
		if n := sim.ErrorReplies(); n != 0 {
			t.Errorf("the BMC refused %d requests", n)
		}
	})
	t.Run("learned", func(t *testing.T) {
		t.Parallel()
		sim := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorGeneric, "RS-VMSYS", redfishsim.Quirks{VirtualMediaOnSystem: true})).BMCs()[0]
		c := quirkClient(t)
		if res, err := c.InsertMedia(ctx, endpointOf(sim), iso, ""); err != nil || !res.Changed {
			t.Fatalf("InsertMedia = %+v, %v", res, err)
		}
		if r, ok := learnedRow(c, "RS-VMSYS"); !ok || !slices.Contains(r.Quirks, QuirkMediaUnderSystem) {
			t.Errorf("QuirkTable() = %+v; want a learned row for RS-VMSYS", c.QuirkTable())
		}
	})
}

// iDRAC keeps its event log under the manager only: the table clears it
// there directly; an unlisted BMC is cleared there after bmclib's clear
// left it full, and learned.
func TestQuirkLogsUnderManager(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, tc := range map[string]struct {
		node    redfishsim.Node
		learned bool
	}{
		"table":   {quirkyNode(1, redfishsim.FlavorDell, "", redfishsim.Quirks{}), false},
		"learned": {quirkyNode(2, redfishsim.FlavorGeneric, "RS-MGRLOG", redfishsim.Quirks{LogsUnderManagerOnly: true}), true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSims(t, redfishsim.Config{}, tc.node).BMCs()[0]
			sim.Log("Critical", "GPU3 Xid 79")
			sim.Log("Warning", "PSU2 lost input")
			c := quirkClient(t)
			res, err := c.ClearSEL(ctx, endpointOf(sim), "")
			if err != nil {
				t.Fatalf("ClearSEL: %v", err)
			}
			if n := len(sim.SEL()); n != 1 {
				t.Errorf("simulator SEL has %d entries after clearing, want 1", n)
			}
			_, learned := learnedRow(c, "RS-MGRLOG")
			if learned != tc.learned {
				t.Errorf("learned a row for the model: %v, want %v (%+v)", learned, tc.learned, c.QuirkTable())
			}
			if !tc.learned && !strings.Contains(res.Note, string(QuirkLogsUnderManager)) {
				t.Errorf("ClearSEL note %q does not name the quirk", res.Note)
			}
		})
	}
}

// A BMC that refuses basic auth: a site row makes every request carry a
// session token from the start; an unlisted one is recognised by its 401
// without a Basic challenge, once. Sessions are logged out either way.
func TestQuirkSessionAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	row := QuirkRule{Vendor: "Contoso", Model: "RS-SESSION", Quirks: []Quirk{QuirkSessionAuth}, Source: "test site row"}
	for name, tc := range map[string]struct {
		site      []QuirkRule
		maxErrors uint64
	}{
		"table":   {[]QuirkRule{row}, 0},
		"learned": {nil, 1},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorGeneric, "RS-SESSION-1", redfishsim.Quirks{SessionOnly: true})).BMCs()[0]
			c := quirkClient(t, tc.site...)
			ep := endpointOf(sim)
			id, err := c.Identify(ctx, ep)
			if err != nil || id.Serial != sim.Serial() || !slices.Contains(id.Quirks, QuirkSessionAuth) {
				t.Fatalf("Identify = %+v, %v", id, err)
			}
			if _, err := c.Power(ctx, ep, ActionOn, ""); err != nil {
				t.Fatalf("Power on: %v", err)
			}
			if _, err := c.Inventory(ctx, ep); err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			if n := sim.ErrorReplies(); n > tc.maxErrors {
				t.Errorf("the BMC refused %d requests, want at most %d: %v", n, tc.maxErrors, sim.RequestLog())
			}
			if n := sim.Sessions(); n != 0 {
				t.Errorf("%d sessions left open", n)
			}
		})
	}
	// A wrong password on a BMC that offers basic auth costs one refused
	// request, not a second login attempt.
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		sim := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(3)).BMCs()[0]
		ep := endpointOf(sim)
		ep.Password = "wrong"
		if _, err := quirkClient(t).Identify(ctx, ep); FailureClass(err) != ClassAuth {
			t.Fatalf("Identify with a wrong password = %v", err)
		}
		for _, r := range sim.RequestLog() {
			if strings.Contains(r, "SessionService/Sessions") {
				t.Errorf("the client tried a session after a Basic challenge: %s", r)
			}
		}
	})
}

// A BMC that offers PowerCycle but not ForceRestart: a cycle sends
// PowerCycle (from the table, or learned from the reset action's allowable
// values); other BMCs get bmclib's ForceRestart.
func TestQuirkCycleWithPowerCycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	only := redfishsim.Quirks{ResetTypes: []string{"On", "ForceOff", "GracefulShutdown", "PowerCycle"}}
	row := QuirkRule{Vendor: "Contoso", Model: "RS-CYCLE", Quirks: []Quirk{QuirkCycleWithPowerCycle}, Source: "test site row"}
	for name, tc := range map[string]struct {
		node    redfishsim.Node
		site    []QuirkRule
		cause   string
		learned bool
	}{
		"table":       {quirkyNode(1, redfishsim.FlavorGeneric, "RS-CYCLE-1", only), []QuirkRule{row}, "PowerCycle", false},
		"learned":     {quirkyNode(2, redfishsim.FlavorGeneric, "RS-CYCLE-1", only), nil, "PowerCycle", true},
		"no quirk":    {quirkyNode(3, redfishsim.FlavorGeneric, "", redfishsim.Quirks{}), nil, "ForceRestart", false},
		"hpe default": {quirkyNode(4, redfishsim.FlavorHPE, "", redfishsim.Quirks{}), nil, "ForceRestart", false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSims(t, redfishsim.Config{}, tc.node).BMCs()[0]
			sim.SetPower(redfishsim.PowerOn, "test")
			var mu sync.Mutex
			var causes []string
			sim.OnPowerChange(func(e redfishsim.PowerEvent) { mu.Lock(); causes = append(causes, e.Cause); mu.Unlock() })
			c := quirkClient(t, tc.site...)
			res, err := c.Power(ctx, endpointOf(sim), ActionCycle, "")
			if err != nil || !res.Changed {
				t.Fatalf("Power cycle = %+v, %v", res, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(causes) == 0 || causes[0] != tc.cause {
				t.Errorf("power changes caused by %v, want %s", causes, tc.cause)
			}
			if used := strings.Contains(res.Note, string(QuirkCycleWithPowerCycle)); used != (tc.cause == "PowerCycle") {
				t.Errorf("note %q", res.Note)
			}
			if _, learned := learnedRow(c, "RS-CYCLE-1"); learned != tc.learned {
				t.Errorf("learned a row: %v, want %v", learned, tc.learned)
			}
			if n := sim.ErrorReplies(); n != 0 {
				t.Errorf("the BMC refused %d requests: %v", n, sim.RequestLog())
			}
		})
	}
}

// A BMC that reports power changes late: without the quirk the change is
// not confirmed within the settle time; with it the client waits longer.
func TestQuirkPowerStateLag(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	row := QuirkRule{Vendor: "Contoso", Model: "RS-LAG", Quirks: []Quirk{QuirkPowerStateLag}, Source: "test site row"}
	for name, tc := range map[string]struct {
		site  []QuirkRule
		class string
	}{
		"table":    {[]QuirkRule{row}, ""},
		"no quirk": {nil, ClassStateUnconfirmed},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSims(t, redfishsim.Config{}, quirkyNode(1, redfishsim.FlavorGeneric, "RS-LAG-1", redfishsim.Quirks{PowerLag: 1500 * time.Millisecond})).BMCs()[0]
			c := New(Config{Timeout: 20 * time.Second, SettleTimeout: 750 * time.Millisecond, PollInterval: 20 * time.Millisecond, Logger: testLogger(t), Quirks: tc.site})
			res, err := c.Power(ctx, endpointOf(sim), ActionOn, "")
			if got := FailureClass(err); got != tc.class {
				t.Fatalf("Power on = %+v, %v; want class %q", res, err, tc.class)
			}
			if tc.class == "" && !strings.Contains(res.Note, string(QuirkPowerStateLag)) {
				t.Errorf("note %q does not name the quirk", res.Note)
			}
		})
	}
}
