package discover

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/ipmisim"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

func startFleet(t *testing.T, cfg redfishsim.Config, nodes ...redfishsim.Node) *redfishsim.Fleet {
	t.Helper()
	f, err := redfishsim.Start(cfg, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A /24 of loopback addresses holding HTTPS and HTTP Redfish simulators, a
// BMC with other credentials, a dead one, a silent one and a real IPMI BMC.
func TestScan(t *testing.T) {
	t.Parallel()
	var nodes []redfishsim.Node
	for i := range 20 {
		nodes = append(nodes, redfishsim.SampleNode(100+i))
	}
	https := startFleet(t, redfishsim.Config{First: netip.MustParseAddr("127.13.0.1")}, nodes...)
	http := startFleet(t, redfishsim.Config{First: netip.MustParseAddr("127.13.0.101"), HTTP: true},
		redfishsim.SampleNode(200), redfishsim.SampleNode(201), redfishsim.SampleNode(202))
	ipmi := ipmisim.StartAt(t, netip.MustParseAddr("127.13.0.200"), "admin", "password")

	bmcs := https.BMCs()
	bmcs[3].SetFaults(redfishsim.Faults{BadCredentials: true})
	bmcs[4].SetFaults(redfishsim.Faults{Refuse: true})
	bmcs[5].SetFaults(redfishsim.Faults{Blackhole: true})

	cfg := Config{
		HTTPSPort: https.Port(), HTTPPort: http.Port(), IPMIPort: ipmi.Addr.Port(),
		HostTimeout: 5 * time.Second, // generous: 2 cores under -race
		Credentials: []Credential{{"admin", "wrong"}, {"admin", "password"}},
	}
	start := time.Now()
	found, err := Scan(context.Background(), netip.MustParsePrefix("127.13.0.0/24"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned a /24 in %v", time.Since(start))

	byAddr := map[netip.Addr]Found{}
	for _, f := range found {
		byAddr[f.Address] = f
	}
	if len(found) != 20-2+3+1 {
		t.Errorf("found %d BMCs, want 22 (20 HTTPS less a dead and a silent one, 3 HTTP, 1 IPMI)", len(found))
	}
	for i, sim := range append(https.BMCs(), http.BMCs()...) {
		f, ok := byAddr[sim.Addr().Addr()]
		switch {
		case i == 4 || i == 5:
			if ok {
				t.Errorf("%s (down) was found: %+v", sim.Addr(), f)
			}
			continue
		case !ok:
			t.Errorf("%s not found", sim.Addr())
			continue
		case i == 3:
			if f.Enrolled || f.AuthClass != bmc.ClassAuth {
				t.Errorf("%s (other credentials) = enrolled %v, class %q", sim.Addr(), f.Enrolled, f.AuthClass)
			}
			continue
		}
		hw := sim.Node().Hardware
		want := bmc.Survey{
			Identity: bmc.Identity{
				Vendor: "Supermicro", Product: hw.System.Model, RedfishVersion: "1.15.0", Manufacturer: hw.System.Vendor,
				Model: hw.System.Model, Serial: hw.System.Serial, UUID: hw.System.UUID, PowerState: bmc.PowerOff,
			},
			BMCFirmware: hw.BMC.FirmwareVersion, BMCMAC: hw.BMC.MAC, HostMACs: []string{hw.NICs[0].MAC, hw.NICs[1].MAC},
		}
		got := f.Survey
		got.ServiceUUID, got.CertSHA256 = "", ""
		if d := cmp.Diff(want, got); d != "" || !f.Enrolled || f.Endpoint.Password != "password" {
			t.Errorf("%s: enrolled %v; survey (-want +got):\n%s", sim.Addr(), f.Enrolled, d)
		}
		if wantScheme := strings.SplitN(sim.Endpoint(), ":", 2)[0]; !strings.HasPrefix(f.Endpoint.Address, wantScheme+"://") {
			t.Errorf("%s endpoint %q, want %s", sim.Addr(), f.Endpoint.Address, wantScheme)
		}
		if strings.HasPrefix(f.Endpoint.Address, "https") && len(f.Endpoint.CertSHA256) != 64 {
			t.Errorf("%s: no certificate pinned", sim.Addr())
		}
	}
	f, ok := byAddr[ipmi.Addr.Addr()]
	if !ok || f.IPMI == nil || f.Redfish != nil || !f.Enrolled || f.Endpoint.Protocol != bmc.IPMI {
		t.Errorf("ipmi_sim: %+v", f)
	}
}

func TestScanRefusesHugePrefixes(t *testing.T) {
	t.Parallel()
	if _, err := Scan(context.Background(), netip.MustParsePrefix("10.0.0.0/8"), Config{}); err == nil {
		t.Error("Scan of a /8 succeeded")
	}
	addrs, err := hosts(netip.MustParsePrefix("10.0.0.0/30"), 100)
	if err != nil || len(addrs) != 2 {
		t.Errorf("hosts(/30) = %v, %v; want the 2 usable addresses", addrs, err)
	}
}

func TestMatchManifest(t *testing.T) {
	t.Parallel()
	found := func(addr, serial, mac string) Found {
		return Found{Address: netip.MustParseAddr(addr), Survey: bmc.Survey{Identity: bmc.Identity{Serial: serial}, BMCMAC: mac}}
	}
	a := found("10.0.0.1", "S1", "02:00:00:00:00:01")
	b := found("10.0.0.2", "S2", "02:00:00:00:00:02")
	noCreds := found("10.0.0.3", "", "")
	type result struct{ Matched, Mismatched, Missing, Unexpected []string }
	summarize := func(r Report) result {
		var out result
		for _, m := range r.Matched {
			out.Matched = append(out.Matched, m.Expected.Slot+"="+m.Found.Address.String())
		}
		for _, m := range r.Mismatched {
			out.Mismatched = append(out.Mismatched, m.Expected.Slot+": "+strings.Join(m.Reasons, "; "))
		}
		for _, e := range r.Missing {
			out.Missing = append(out.Missing, e.Slot)
		}
		for _, f := range r.Unexpected {
			out.Unexpected = append(out.Unexpected, f.Address.String())
		}
		return out
	}
	cases := map[string]struct {
		expected []Expected
		found    []Found
		want     result
	}{
		"all match by serial": {
			[]Expected{{Slot: "U1", Serial: "s1"}, {Slot: "U2", Serial: "S2"}}, []Found{a, b},
			result{Matched: []string{"U1=10.0.0.1", "U2=10.0.0.2"}},
		},
		"match by BMC MAC and address": {
			[]Expected{{Slot: "U1", BMCMAC: "02-00-00-00-00-01"}, {Slot: "U3", BMCAddress: netip.MustParseAddr("10.0.0.3")}}, []Found{a, noCreds},
			result{Matched: []string{"U1=10.0.0.1", "U3=10.0.0.3"}},
		},
		"missing and unexpected": {
			[]Expected{{Slot: "U1", Serial: "S1"}, {Slot: "U9", Serial: "S9"}}, []Found{a, b},
			result{Matched: []string{"U1=10.0.0.1"}, Missing: []string{"U9"}, Unexpected: []string{"10.0.0.2"}},
		},
		"wrong machine in slot": {
			[]Expected{{Slot: "U2", Serial: "S7", BMCMAC: "02:00:00:00:00:02"}}, []Found{b},
			result{Mismatched: []string{"U2: serial S2, manifest says S7"}},
		},
		"BMC at another address": {
			[]Expected{{Slot: "U1", Serial: "S1", BMCAddress: netip.MustParseAddr("10.0.0.9")}}, []Found{a},
			result{Mismatched: []string{"U1: BMC address 10.0.0.1, manifest says 10.0.0.9"}},
		},
		"serial unverifiable": {
			[]Expected{{Slot: "U3", Serial: "S3", BMCAddress: netip.MustParseAddr("10.0.0.3")}}, []Found{noCreds},
			result{Mismatched: []string{"U3: serial unknown (no working BMC credentials), manifest says S3"}},
		},
		"a BMC is used once": {
			[]Expected{{Slot: "U1", Serial: "S1"}, {Slot: "U1b", Serial: "S1"}}, []Found{a},
			result{Matched: []string{"U1=10.0.0.1"}, Missing: []string{"U1b"}},
		},
		"empty": {nil, nil, result{}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, summarize(MatchManifest(tc.expected, tc.found))); d != "" {
				t.Errorf("MatchManifest (-want +got):\n%s", d)
			}
		})
	}
}
