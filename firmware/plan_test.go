package firmware

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

func TestCompliance(t *testing.T) {
	t.Parallel()
	bmcPkg := &Package{File: "/srv/fw/bmc-1.5.0.bin", SHA256: sha1, Version: "1.5.0", Reset: ResetBMC}
	nicPkg := &Package{File: "/srv/fw/cx6-26.40.1000.bin", SHA256: sha2, Version: "26.40.1000", Reset: ResetNone}
	exact := Rule{ID: "BMC", Version: "1.5.0", Package: bmcPkg}
	minimum := Rule{Name: "ConnectX-6*", Minimum: "26.36.1010", Package: nicPkg}
	for name, tc := range map[string]struct {
		rule Rule
		comp inventory.FirmwareComponent
		want Status
	}{
		"exact, equal":           {exact, fc("BMC", "BMC Firmware", "1.5.0"), Status{Component: "BMC", Name: "BMC Firmware", Current: "1.5.0", Required: "1.5.0", State: Compliant}},
		"exact, equal spelled":   {exact, fc("BMC", "", "v1.5"), Status{Component: "BMC", Current: "v1.5", Required: "1.5.0", State: Compliant}},
		"exact, older":           {exact, fc("BMC", "", "1.4.2"), Status{Component: "BMC", Current: "1.4.2", Required: "1.5.0", State: Behind, Package: "bmc-1.5.0.bin"}},
		"exact, pre-release":     {exact, fc("BMC", "", "1.5.0-rc1"), Status{Component: "BMC", Current: "1.5.0-rc1", Required: "1.5.0", State: Behind, Package: "bmc-1.5.0.bin"}},
		"exact, newer":           {exact, fc("BMC", "", "1.10.0"), Status{Component: "BMC", Current: "1.10.0", Required: "1.5.0", State: Ahead, Note: "newer than the baseline; not downgraded"}},
		"exact, no version":      {exact, fc("BMC", "", ""), Status{Component: "BMC", Required: "1.5.0", State: Unknown, Note: "the BMC reports no version"}},
		"exact, garbage":         {exact, fc("BMC", "", "--"), Status{Component: "BMC", Current: "--", Required: "1.5.0", State: Unknown, Note: `version "--" cannot be compared`}},
		"id is case-insensitive": {exact, fc("bmc", "", "1.5.0"), Status{Component: "bmc", Current: "1.5.0", Required: "1.5.0", State: Compliant}},
		"minimum, above":         {minimum, fc("NIC1", "ConnectX-6 Lx", "28.39.1002"), Status{Component: "NIC1", Name: "ConnectX-6 Lx", Current: "28.39.1002", Required: ">= 26.36.1010", State: Compliant}},
		"minimum, equal":         {minimum, fc("NIC1", "ConnectX-6 Lx", "26.36.1010"), Status{Component: "NIC1", Name: "ConnectX-6 Lx", Current: "26.36.1010", Required: ">= 26.36.1010", State: Compliant}},
		"minimum, below":         {minimum, fc("NIC1", "ConnectX-6 Lx", "22.31.1014"), Status{Component: "NIC1", Name: "ConnectX-6 Lx", Current: "22.31.1014", Required: ">= 26.36.1010", State: Behind, Package: "cx6-26.40.1000.bin"}},
		"behind, no package":     {Rule{ID: "CPLD", Version: "F1.0B"}, fc("CPLD", "", "F1.0A"), Status{Component: "CPLD", Current: "F1.0A", Required: "F1.0B", State: Behind, Note: "the baseline names no package for it"}},
		"id pattern":             {Rule{ID: "GPU[0-7]", Version: "96.00.99.00.01"}, fc("GPU3", "", "96.00.74.00.01"), Status{Component: "GPU3", Current: "96.00.74.00.01", Required: "96.00.99.00.01", State: Behind, Note: "the baseline names no package for it"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := &Baseline{Name: "b", Components: []Rule{tc.rule}}
			got := Compliance(b, []inventory.FirmwareComponent{tc.comp})
			if diff := cmp.Diff([]Status{tc.want}, got); diff != "" {
				t.Errorf("Compliance(%+v, %+v) mismatch (-want +got):\n%s", tc.rule, tc.comp, diff)
			}
		})
	}
}

func fc(id, name, v string) inventory.FirmwareComponent {
	return inventory.FirmwareComponent{ID: id, Name: name, Version: v}
}

func TestComplianceRulesAndOrder(t *testing.T) {
	t.Parallel()
	b := &Baseline{Name: "b", Components: []Rule{
		{ID: "NIC1", Version: "26.40.1000"},        // specific first ...
		{Name: "ConnectX*", Minimum: "26.36.1010"}, // ... general after: NIC1 is governed by the first
		{ID: "PSU*", Version: "1.0"},               // matches nothing
	}}
	got := Compliance(b, []inventory.FirmwareComponent{
		fc("BMC", "BMC Firmware", "1.4.2"), // governed by no rule: left out
		fc("NIC1", "ConnectX-6 Lx", "26.36.1010"),
		fc("NIC2", "ConnectX-6 Lx", "26.36.1010"),
	})
	want := []Status{
		{Component: "NIC1", Name: "ConnectX-6 Lx", Current: "26.36.1010", Required: "26.40.1000", State: Behind, Note: "the baseline names no package for it", Rule: 0},
		{Component: "NIC2", Name: "ConnectX-6 Lx", Current: "26.36.1010", Required: ">= 26.36.1010", State: Compliant, Rule: 1},
		{Component: "id PSU*", Required: "1.0", State: Unknown, Note: "the BMC lists no component matching id PSU*", Rule: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Compliance mismatch (-want +got):\n%s", diff)
	}
	if s := Summary(got); s[Behind] != 1 || s[Compliant] != 1 || s[Unknown] != 1 {
		t.Errorf("Summary = %v", s)
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	bmcPkg := &Package{File: "/srv/fw/bmc-1.5.0.bin", SHA256: sha1, Version: "1.5.0", Reset: ResetBMC}
	biosPkg := &Package{File: "/srv/fw/bios-2.2.0.bin", SHA256: sha2, Version: "2.2.0", Reset: ResetHost}
	b := &Baseline{Name: "b", Components: []Rule{
		{ID: "BMC", Version: "1.5.0", Package: bmcPkg},
		{ID: "BIOS", Minimum: "2.2.0", Package: biosPkg},
		{ID: "CPLD", Version: "F1.0B"},
	}}
	// The inventory lists BIOS before BMC; the plan follows the baseline.
	n1 := NodeInventory{Node: "r1-n01", Components: []inventory.FirmwareComponent{fc("BIOS", "BIOS", "2.1.7"), fc("BMC", "BMC Firmware", "1.4.2"), fc("CPLD", "", "F1.0A")}}
	n2 := NodeInventory{Node: "r1-n02", Components: []inventory.FirmwareComponent{fc("BIOS", "BIOS", "2.3.0"), fc("BMC", "BMC Firmware", "1.5.0")}}
	n3 := NodeInventory{Node: "r1-n03", Components: []inventory.FirmwareComponent{fc("BIOS", "BIOS", "2.1.7"), fc("BMC", "BMC Firmware", "1.6.0")}}
	plans := Plan(b, n1, n2, n3)
	got := map[string][]Update{}
	for _, p := range plans {
		got[p.Node] = p.Updates
	}
	want := map[string][]Update{
		"r1-n01": {
			{Component: "BMC", Name: "BMC Firmware", From: "1.4.2", To: "1.5.0", Package: *bmcPkg, Rule: 0},
			{Component: "BIOS", Name: "BIOS", From: "2.1.7", To: "2.2.0", Package: *biosPkg, Rule: 1},
		},
		"r1-n02": nil,                                                                                         // BIOS newer than the minimum is compliant
		"r1-n03": {{Component: "BIOS", Name: "BIOS", From: "2.1.7", To: "2.2.0", Package: *biosPkg, Rule: 1}}, // BMC ahead: not downgraded
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r1-n01", "r1-n03"}, Pending(plans)); diff != "" {
		t.Errorf("Pending mismatch (-want +got):\n%s", diff)
	}
	if k := plans[0].Updates[0].Key("r1-n01"); k != "firmware/r1-n01/BMC/"+sha1[:16] {
		t.Errorf("Key = %q", k)
	}
}

func TestWaves(t *testing.T) {
	t.Parallel()
	nodes := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}
	for name, tc := range map[string]struct {
		nodes []string
		p     WavePolicy
		want  [][]string
	}{
		"defaults: canary of one, then ten": {nodes, WavePolicy{}, [][]string{{"n1"}, {"n2", "n3", "n4", "n5", "n6", "n7"}}},
		"waves of three":                    {nodes, WavePolicy{WaveSize: 3}, [][]string{{"n1"}, {"n2", "n3", "n4"}, {"n5", "n6", "n7"}}},
		"canary of two, waves of two":       {nodes, WavePolicy{Canary: 2, WaveSize: 2}, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}, {"n7"}}},
		"canary larger than the fleet":      {nodes[:2], WavePolicy{Canary: 5}, [][]string{{"n1", "n2"}}},
		"one node":                          {nodes[:1], WavePolicy{WaveSize: 3}, [][]string{{"n1"}}},
		"nothing to do":                     {nil, WavePolicy{}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, Waves(tc.nodes, tc.p)); diff != "" {
				t.Errorf("Waves(%v, %+v) mismatch (-want +got):\n%s", tc.nodes, tc.p, diff)
			}
		})
	}
}

func TestNextWave(t *testing.T) {
	t.Parallel()
	waves := [][]string{{"n1"}, {"n2", "n3", "n4"}, {"n5", "n6"}}
	ok, bad := Succeeded, Failed
	for name, tc := range map[string]struct {
		outcomes map[string]Outcome
		p        WavePolicy
		want     Decision
	}{
		"start: the canary":          {nil, WavePolicy{}, Decision{Wave: 0, Nodes: []string{"n1"}}},
		"canary done: next wave":     {map[string]Outcome{"n1": ok}, WavePolicy{}, Decision{Wave: 1, Nodes: []string{"n2", "n3", "n4"}}},
		"resume mid-wave":            {map[string]Outcome{"n1": ok, "n3": ok}, WavePolicy{}, Decision{Wave: 1, Nodes: []string{"n2", "n4"}}},
		"wave done: the last":        {map[string]Outcome{"n1": ok, "n2": ok, "n3": ok, "n4": ok}, WavePolicy{}, Decision{Wave: 2, Nodes: []string{"n5", "n6"}}},
		"all done":                   {map[string]Outcome{"n1": ok, "n2": ok, "n3": ok, "n4": ok, "n5": ok, "n6": ok}, WavePolicy{}, Decision{Wave: 3, Done: true}},
		"canary fails: stop":         {map[string]Outcome{"n1": bad}, WavePolicy{MaxFailures: 5}, Decision{Wave: 0, Stop: true, Reason: "canary n1 failed; fix it before the rest of the fleet is touched"}},
		"first failure stops":        {map[string]Outcome{"n1": ok, "n3": bad}, WavePolicy{}, Decision{Wave: 1, Stop: true, Reason: "1 node(s) failed (n3), reaching the limit of 1"}},
		"below the limit: go on":     {map[string]Outcome{"n1": ok, "n3": bad}, WavePolicy{MaxFailures: 2}, Decision{Wave: 1, Nodes: []string{"n2", "n4"}}},
		"failed wave still advances": {map[string]Outcome{"n1": ok, "n2": ok, "n3": bad, "n4": ok}, WavePolicy{MaxFailures: 2}, Decision{Wave: 2, Nodes: []string{"n5", "n6"}}},
		"limit reached: stop":        {map[string]Outcome{"n1": ok, "n2": bad, "n3": ok, "n4": ok, "n5": bad}, WavePolicy{MaxFailures: 2}, Decision{Wave: 2, Stop: true, Reason: "2 node(s) failed (n2, n5), reaching the limit of 2"}},
		"failure on the last node":   {map[string]Outcome{"n1": ok, "n2": ok, "n3": ok, "n4": ok, "n5": ok, "n6": bad}, WavePolicy{MaxFailures: 1}, Decision{Wave: 3, Stop: true, Reason: "1 node(s) failed (n6), reaching the limit of 1"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, NextWave(waves, tc.outcomes, tc.p)); diff != "" {
				t.Errorf("NextWave(%v, %+v) mismatch (-want +got):\n%s", tc.outcomes, tc.p, diff)
			}
		})
	}
	if d := NextWave(nil, nil, WavePolicy{}); !d.Done {
		t.Errorf("NextWave(no waves) = %+v, want done", d)
	}
}

// A staged run over a simulated rack, driven the way the controller will:
// NextWave decides, Apply acts, outcomes are recorded; one node's BMC is
// down, and the run stops when failures reach the limit.
func TestStagedRunOverASimulatedRack(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	dir := t.TempDir()
	bmcPkg := writePackage(t, dir, "bmc-1.5.0.bin", "1.5.0", ResetNone, &k)
	b := &Baseline{Name: "rack", Components: []Rule{{ID: "BMC", Version: "1.5.0", Package: &bmcPkg}}}
	fleet := startFleet(t, redfishsim.Config{HTTP: true, Options: redfishsim.Options{UpdateDuration: 30 * time.Millisecond}},
		redfishsim.SampleNode(31), redfishsim.SampleNode(32), redfishsim.SampleNode(33), redfishsim.SampleNode(34),
		redfishsim.SampleNode(35), redfishsim.SampleNode(36), redfishsim.SampleNode(37))
	sims := map[string]*redfishsim.BMC{}
	c := New(fastConfig(t, k))
	ctx := context.Background()
	var invs []NodeInventory
	for i, sim := range fleet.BMCs() {
		node := fmt.Sprintf("n%d", i+1)
		sims[node] = sim
		comps, err := c.Inventory(ctx, endpointOf(sim))
		if err != nil {
			t.Fatal(err)
		}
		invs = append(invs, NodeInventory{Node: node, Components: comps})
	}
	invs[1].Components[0].Version = "1.5.0" // n2 was updated already: not in the plan
	plans := Plan(b, invs...)
	byNode := map[string]NodePlan{}
	for _, p := range plans {
		byNode[p.Node] = p
	}
	policy := WavePolicy{Canary: 1, WaveSize: 2, MaxFailures: 2}
	waves := Waves(Pending(plans), policy)
	if diff := cmp.Diff([][]string{{"n1"}, {"n3", "n4"}, {"n5", "n6"}, {"n7"}}, waves); diff != "" {
		t.Fatalf("Waves mismatch (-want +got):\n%s", diff)
	}
	// Between planning and applying, two BMCs go bad.
	sims["n4"].SetFaults(redfishsim.Faults{Refuse: true})
	sims["n6"].SetFaults(redfishsim.Faults{Path: "/redfish/v1/UpdateService/Actions", Status: 500})

	outcomes := map[string]Outcome{}
	var order []string
	var d Decision
	for range 10 {
		d = NextWave(waves, outcomes, policy)
		if d.Stop || d.Done {
			break
		}
		for _, node := range d.Nodes {
			order = append(order, node)
			outcomes[node] = Succeeded
			for _, u := range byNode[node].Updates {
				if _, err := c.Apply(ctx, endpointOf(sims[node]), Request{Key: u.Key(node), Component: u.Component, Package: u.Package, ImageURI: imageURI(filepath.Base(u.Package.File))}); err != nil {
					outcomes[node] = Failed
				}
			}
		}
	}
	if !d.Stop || d.Reason != "2 node(s) failed (n4, n6), reaching the limit of 2" {
		t.Errorf("the run ended with %+v, want a stop at two failures", d)
	}
	if diff := cmp.Diff([]string{"n1", "n3", "n4", "n5", "n6"}, order); diff != "" {
		t.Errorf("apply order mismatch (-want +got):\n%s", diff)
	}
	for node, want := range map[string]string{"n1": "1.5.0", "n2": "1.4.2", "n3": "1.5.0", "n4": "1.4.2", "n5": "1.5.0", "n6": "1.4.2", "n7": "1.4.2"} {
		if got := fwVersion(sims[node], "BMC"); got != want {
			t.Errorf("%s BMC firmware = %s, want %s", node, got, want)
		}
	}
}
