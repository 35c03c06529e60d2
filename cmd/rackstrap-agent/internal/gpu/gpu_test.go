//go:build cgo

package gpu

import (
	"fmt"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// health is what one mocked GPU reports beyond the basics the mock servers
// answer themselves.
type health struct {
	gen, maxGen, width, maxWidth int
	ecc, eccPending              nvml.EnableState
	links, linksUp               int
	powerMW                      uint32
}

// wire sets the funcs go-nvml's server mocks leave nil (PCIe, NVLink, ECC,
// VBIOS, InfoROM, serial, power, bus id) on every device of s.
func wire(t *testing.T, s *server.Server, h func(i int) health) {
	t.Helper()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		hh := h(i)
		busID := dev.PciBusID // "0000:0i:00.0"
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			p.PciDeviceId = dev.Config.PciDeviceId
			id := "0000" + busID // NVML's 8-digit domain: "00000000:0i:00.0"
			for j := range id {
				p.BusId[j] = int8(id[j])
			}
			return p, nvml.SUCCESS
		}
		dev.GetSerialFunc = func() (string, nvml.Return) { return fmt.Sprintf("165232000%04d", i), nvml.SUCCESS }
		dev.GetVbiosVersionFunc = func() (string, nvml.Return) { return "96.00.89.00.01", nvml.SUCCESS }
		dev.GetInforomImageVersionFunc = func() (string, nvml.Return) { return "G520.0200.00.05", nvml.SUCCESS }
		dev.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return hh.gen, nvml.SUCCESS }
		dev.GetMaxPcieLinkGenerationFunc = func() (int, nvml.Return) { return hh.maxGen, nvml.SUCCESS }
		dev.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return hh.width, nvml.SUCCESS }
		dev.GetMaxPcieLinkWidthFunc = func() (int, nvml.Return) { return hh.maxWidth, nvml.SUCCESS }
		dev.GetEccModeFunc = func() (nvml.EnableState, nvml.EnableState, nvml.Return) {
			return hh.ecc, hh.eccPending, nvml.SUCCESS
		}
		dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
			if link >= hh.links {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			if link < hh.linksUp {
				return nvml.FEATURE_ENABLED, nvml.SUCCESS
			}
			return nvml.FEATURE_DISABLED, nvml.SUCCESS
		}
		dev.GetPowerManagementLimitFunc = func() (uint32, nvml.Return) { return hh.powerMW, nvml.SUCCESS }
	}
}

func TestCollectDGXH100(t *testing.T) {
	t.Parallel()
	s := dgxh100.New()
	wire(t, s, func(int) health {
		return health{gen: 5, maxGen: 5, width: 16, maxWidth: 16, ecc: nvml.FEATURE_ENABLED, eccPending: nvml.FEATURE_ENABLED, links: 18, linksUp: 18, powerMW: 700000}
	})
	res := Collect(s)
	if res.Unavailable != "" || len(res.Notes) != 0 {
		t.Fatalf("Collect(DGX H100) unavailable %q notes %q, want neither", res.Unavailable, res.Notes)
	}
	if res.DriverVersion != "550.54.15" {
		t.Errorf("driver version = %q, want 550.54.15", res.DriverVersion)
	}
	if len(res.GPUs) != 8 {
		t.Fatalf("GPUs = %d, want 8", len(res.GPUs))
	}
	uuids := map[string]bool{}
	for i, g := range res.GPUs {
		want := inventory.GPU{
			Index: i, Name: "NVIDIA H100 80GB HBM3", Serial: fmt.Sprintf("165232000%04d", i),
			MemoryBytes: 80 << 30, VBIOS: "96.00.89.00.01", PCIAddress: fmt.Sprintf("0000:%02x:00.0", i),
			PCIeGen: 5, MaxPCIeGen: 5, PCIeWidth: 16, MaxPCIeWidth: 16, ECC: inventory.ECCEnabled,
			NVLinkUp: 18, NVLinkTotal: 18, DriverVersion: "550.54.15", InfoROM: "G520.0200.00.05", PowerLimitWatts: 700,
		}
		// UUIDs are random per mock run: check their form, not their value.
		if diff := cmp.Diff(want, g, cmpopts.IgnoreFields(inventory.GPU{}, "UUID")); diff != "" {
			t.Errorf("gpu %d (-want +got):\n%s", i, diff)
		}
		if !strings.HasPrefix(g.UUID, "GPU-") || len(g.UUID) != 40 || uuids[g.UUID] {
			t.Errorf("gpu %d uuid = %q, want a distinct GPU-<uuid>", i, g.UUID)
		}
		uuids[g.UUID] = true
	}
}

func TestCollectDGXA100Degraded(t *testing.T) {
	t.Parallel()
	s := dgxa100.New()
	wire(t, s, func(i int) health {
		h := health{gen: 4, maxGen: 4, width: 16, maxWidth: 16, ecc: nvml.FEATURE_ENABLED, eccPending: nvml.FEATURE_ENABLED, links: 12, linksUp: 12, powerMW: 400000}
		switch i {
		case 3: // a riser that trained at Gen3 x8
			h.gen, h.width = 3, 8
		case 5: // two NVLinks down, ECC turned off at the next reset
			h.linksUp = 10
			h.eccPending = nvml.FEATURE_DISABLED
		}
		return h
	})
	// GPU 6 has fallen off the bus; GPU 7's driver cannot read ECC.
	base := s.DeviceGetHandleByIndexFunc
	s.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 6 {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return base(i)
	}
	s.Devices[7].(*server.Device).GetEccModeFunc = func() (nvml.EnableState, nvml.EnableState, nvml.Return) {
		return 0, 0, nvml.ERROR_NOT_SUPPORTED
	}
	res := Collect(s)
	if len(res.GPUs) != 8 {
		t.Fatalf("GPUs = %d, want 8 (the lost one kept by index)", len(res.GPUs))
	}
	g := res.GPUs
	if g[0].Name != "Mock NVIDIA A100-SXM4-40GB" || g[0].MemoryBytes != 40<<30 || g[0].NVLinkUp != 12 || g[0].NVLinkTotal != 12 {
		t.Errorf("gpu 0 = %+v", g[0])
	}
	if g[3].PCIeGen != 3 || g[3].PCIeWidth != 8 || g[3].MaxPCIeGen != 4 || g[3].MaxPCIeWidth != 16 {
		t.Errorf("gpu 3 link = gen %d x%d (max gen %d x%d), want gen 3 x8 (max gen 4 x16)", g[3].PCIeGen, g[3].PCIeWidth, g[3].MaxPCIeGen, g[3].MaxPCIeWidth)
	}
	if g[5].NVLinkUp != 10 || g[5].NVLinkTotal != 12 || g[5].ECC != inventory.ECCEnabled || g[5].ECCPending != inventory.ECCDisabled {
		t.Errorf("gpu 5 nvlink %d/%d ecc %q pending %q, want 10/12 enabled pending disabled", g[5].NVLinkUp, g[5].NVLinkTotal, g[5].ECC, g[5].ECCPending)
	}
	if diff := cmp.Diff(inventory.GPU{Index: 6, DriverVersion: "550.54.15"}, g[6]); diff != "" {
		t.Errorf("lost gpu 6 (-want +got):\n%s", diff)
	}
	if g[7].ECC != inventory.ECCUnsupported || g[7].UUID == "" {
		t.Errorf("gpu 7 ecc = %q uuid %q, want unsupported and a uuid", g[7].ECC, g[7].UUID)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "gpu 6: handle: ERROR_GPU_IS_LOST") {
		t.Errorf("notes = %q, want one about gpu 6", res.Notes)
	}
}

// TestCollectMockAsShipped leaves the funcs go-nvml's mock does not set:
// calling them panics, and every GPU must still be reported with what the
// mock does answer.
func TestCollectMockAsShipped(t *testing.T) {
	t.Parallel()
	res := Collect(dgxh100.New())
	if len(res.GPUs) != 8 || res.Unavailable != "" {
		t.Fatalf("GPUs = %d unavailable %q, want 8 and none", len(res.GPUs), res.Unavailable)
	}
	for _, g := range res.GPUs {
		if g.Name != "NVIDIA H100 80GB HBM3" || g.UUID == "" || g.MemoryBytes != 80<<30 {
			t.Errorf("gpu %d = %+v: basics missing", g.Index, g)
		}
	}
	for _, what := range []string{"serial", "vbios", "pcie link", "ecc mode", "nvlink", "power limit"} {
		if !hasNote(res.Notes, "gpu 0: "+what+":") {
			t.Errorf("no note for gpu 0 %s in %q", what, res.Notes)
		}
	}
}

func hasNote(notes []string, prefix string) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

func TestCollectNoDriver(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		ret  nvml.Return
		want string
	}{
		"library absent":    {nvml.ERROR_LIBRARY_NOT_FOUND, NoDriver},
		"module not loaded": {nvml.ERROR_DRIVER_NOT_LOADED, DriverNotUp},
		"other":             {nvml.ERROR_NO_PERMISSION, "NVML init: ERROR_NO_PERMISSION"},
	} {
		t.Run(name, func(t *testing.T) {
			s := dgxh100.New()
			s.InitFunc = func() nvml.Return { return tc.ret }
			res := Collect(s)
			if res.Unavailable != tc.want || len(res.GPUs) != 0 {
				t.Errorf("Collect(init %v) = unavailable %q, %d GPUs; want %q, none", tc.ret, res.Unavailable, len(res.GPUs), tc.want)
			}
			var inv inventory.Inventory
			res.Apply(&inv)
			if inv.GPUDriverError != tc.want {
				t.Errorf("Apply: GPUDriverError = %q, want %q", inv.GPUDriverError, tc.want)
			}
		})
	}
}

// TestProbeThisHost runs the real NVML path: on a host without the NVIDIA
// driver (the CI machines) it must report "no NVIDIA driver" and not fail;
// on a GPU host it must read GPUs.
func TestProbeThisHost(t *testing.T) {
	t.Parallel()
	res := Probe()
	t.Logf("Probe() = %d GPUs, driver %q, unavailable %q, notes %q", len(res.GPUs), res.DriverVersion, res.Unavailable, res.Notes)
	switch res.Unavailable {
	case NoDriver, DriverNotUp:
		if len(res.GPUs) != 0 {
			t.Errorf("no driver but %d GPUs", len(res.GPUs))
		}
	case "":
		if res.DriverVersion == "" {
			t.Error("NVML answered but gave no driver version")
		}
	default:
		t.Errorf("Probe() unavailable = %q, want no driver or GPUs", res.Unavailable)
	}
}

func TestBusID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"00000000:18:00.0": "0000:18:00.0",
		"0000:AF:00.0":     "0000:af:00.0",
		"00000001:18:00.0": "0001:18:00.0",
		"":                 "",
		"garbage":          "garbage",
	} {
		var p nvml.PciInfo
		for i := range in {
			p.BusId[i] = int8(in[i])
		}
		if got := busID(p); got != want {
			t.Errorf("busID(%q) = %q, want %q", in, got, want)
		}
	}
}
