//go:build conformance

package bmc

import (
	"context"
	"testing"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// The simulator serving the DMTF mockup (redfishsim.LoadMockup, `rackstrap
// simulate bmc --mockup DIR`): each instance answers with the mockup's tree
// and its own serial, UUID and MACs, and the client's whole control path
// works against it.
func TestConformanceMockupSimulator(t *testing.T) {
	t.Parallel()
	m, err := redfishsim.LoadMockup(mockupDir(t))
	if err != nil {
		t.Fatal(err)
	}
	nodes := []redfishsim.Node{redfishsim.SampleNode(1), redfishsim.SampleNode(2)}
	f := startSims(t, redfishsim.Config{Mockup: m}, nodes...)
	c := conformanceClient(t)
	ctx := context.Background()
	seen := map[string]bool{}
	for i, sim := range f.BMCs() {
		hw := nodes[i].Hardware
		ep := endpointOf(sim)
		s, err := c.Survey(ctx, ep)
		if err != nil {
			t.Fatalf("Survey: %v", err)
		}
		if s.Serial != hw.System.Serial || s.UUID != hw.System.UUID || s.Manufacturer != "Contoso" || s.Model != "3500" ||
			s.BMCMAC != hw.BMC.MAC || len(s.HostMACs) != 2 || s.HostMACs[0] != hw.NICs[0].MAC || s.HostMACs[1] != hw.NICs[1].MAC {
			t.Errorf("Survey of mockup instance %d = %+v", i, s)
		}
		if seen[s.Serial] || seen[s.HostMACs[0]] {
			t.Errorf("instance %d repeats another's identity", i)
		}
		seen[s.Serial], seen[s.HostMACs[0]] = true, true

		// The mockup starts powered on with a one-time UEFI PXE override.
		if res, err := c.Power(ctx, ep, ActionOff, ""); err != nil || !res.Changed || sim.PowerState() != redfishsim.PowerOff {
			t.Errorf("Power off = %+v, %v", res, err)
		}
		if res, err := c.SetBootOnce(ctx, ep, BootDisk, true, ""); err != nil || !res.Changed || sim.BootOverride().Target != "Hdd" {
			t.Errorf("SetBootOnce disk = %+v, %v", res, err)
		}
		if res, err := c.Power(ctx, ep, ActionOn, ""); err != nil || !res.Changed || sim.PowerState() != redfishsim.PowerOn {
			t.Errorf("Power on = %+v, %v", res, err)
		}
		if res, err := c.InsertMedia(ctx, ep, "http://10.0.0.1/live.iso", ""); err != nil || !res.Changed {
			t.Errorf("InsertMedia = %+v, %v", res, err)
		}
		if res, err := c.EjectMedia(ctx, ep, ""); err != nil || !res.Changed {
			t.Errorf("EjectMedia = %+v, %v", res, err)
		}
		if sel, err := c.SEL(ctx, ep); err != nil || len(sel) == 0 {
			t.Errorf("SEL = %+v, %v", sel, err)
		}
		if _, err := c.ClearSEL(ctx, ep, ""); err != nil {
			t.Errorf("ClearSEL: %v", err)
		}
		if n := sim.Sessions(); n != 0 {
			t.Errorf("%d sessions left open", n)
		}
	}
}
