package validate

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
)

func getProfile(t *testing.T, name string) *profile.Profile {
	t.Helper()
	c, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parseProfile(t *testing.T, src string) *profile.Profile {
	t.Helper()
	c, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// short is the part of a finding the table asserts on.
type short struct {
	Rule, Severity, Location, Expected, Actual string
}

func shorten(fs []Finding) []short {
	out := []short{}
	for _, f := range fs {
		out = append(out, short{f.Rule, string(f.Severity), f.Location, f.Expected, f.Actual})
	}
	return out
}

const serial = "1650323000101"

// TestValidateDGXH100 covers the rules against the DGX H100 profile, one
// broken thing per case, starting from a healthy in-band + out-of-band pair.
func TestValidateDGXH100(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		breakIt     func(in, oob *inventory.Inventory)
		profile     string // YAML extending nvidia-dgx-h100; empty: the bundled profile
		want        []short
		wantVerdict Verdict
		wantHint    string // a hint that must appear
		ignoreInfo  bool   // compare only errors and warnings
	}{
		"healthy": {
			breakIt:     func(in, oob *inventory.Inventory) {},
			want:        []short{},
			wantVerdict: Pass,
		},
		"wrong system": {
			breakIt: func(in, oob *inventory.Inventory) { in.System.Model = "DGXA100"; oob.System.Model = "DGXA100" },
			want: []short{{"system.match", "error", "", `vendor NVIDIA; model one of DGXH100, DGX H100*`,
				`vendor "NVIDIA", model "DGXA100", SKU "DGXH100"`}},
			wantVerdict: Quarantine,
		},
		"one CPU socket": {
			breakIt:     func(in, oob *inventory.Inventory) { in.CPUs = in.CPUs[:1] },
			want:        []short{{"cpu.sockets", "error", "", "2", "1"}},
			wantVerdict: Quarantine,
		},
		"wrong CPU model, cores and SMT off": {
			breakIt: func(in, oob *inventory.Inventory) {
				in.CPUs[1].Model = "Intel(R) Xeon(R) Platinum 8468"
				in.CPUs[1].Cores = 48
				in.CPUs[1].Threads = 48
			},
			want: []short{
				{"cpu.model", "error", "CPU1", "*Xeon*8480C*", "Intel(R) Xeon(R) Platinum 8468"},
				{"cpu.cores", "error", "CPU1", "56", "48"},
				{"cpu.threads", "error", "CPU1", "one of 56, 112", "48"},
			},
			wantVerdict: Quarantine,
		},
		"one DIMM missing": {
			breakIt: func(in, oob *inventory.Inventory) {
				d := &in.Memory.DIMMs[9] // CPU0_DIMM_E2
				*d = inventory.DIMM{Slot: d.Slot, Empty: true}
				in.Memory.TotalBytes -= 64 << 30
				oob.Memory.TotalBytes -= 64 << 30
				oob.Memory.DIMMs = append(oob.Memory.DIMMs[:9], oob.Memory.DIMMs[10:]...)
			},
			want: []short{
				{"memory.dimm-count", "error", "", "32", "31"},
				{"memory.dimm-missing", "error", "DIMM CPU0_DIMM_E2", "populated", "empty"},
			},
			wantVerdict: Quarantine,
			wantHint:    "install or reseat the DIMM in slot CPU0_DIMM_E2",
		},
		"wrong DIMM size, slow DIMM": {
			breakIt: func(in, oob *inventory.Inventory) {
				in.Memory.DIMMs[3].SizeBytes = 32 << 30
				in.Memory.DIMMs[3].PartNumber = "M321R4GA3BB6-CQKET"
				in.Memory.DIMMs[4].SpeedMTs = 4000
				in.Memory.TotalBytes -= 32 << 30
				oob.Memory.TotalBytes -= 32 << 30
				oob.Memory.DIMMs[3].SizeBytes = 32 << 30
				oob.Memory.DIMMs[3].PartNumber = "M321R4GA3BB6-CQKET"
			},
			want: []short{
				{"memory.dimm-size", "error", "DIMM CPU0_DIMM_B2", "64 GiB", "32 GiB"},
				{"memory.dimm-speed", "warning", "DIMM CPU0_DIMM_C1", "at least 4400 MT/s", "4000 MT/s"},
			},
			wantVerdict: Quarantine,
		},
		"memory total below range": {
			profile:     "name: t\nextends: nvidia-dgx-h100\nmemory: {total: {min: 3TiB}}\n",
			breakIt:     func(in, oob *inventory.Inventory) {},
			want:        []short{{"memory.total", "error", "", "at least 3 TiB", "2 TiB"}},
			wantVerdict: Quarantine,
		},
		"required slot and DIMM type": {
			profile: "name: t\nextends: nvidia-dgx-h100\nmemory: {dimms: {slots: [CPU0 DIMM A1, CPU9_DIMM_Z9], type: DDR4}}\n",
			breakIt: func(in, oob *inventory.Inventory) {
				in.Memory.DIMMs = in.Memory.DIMMs[:1]
				oob.Memory.DIMMs = oob.Memory.DIMMs[:1]
			},
			want: []short{
				{"memory.dimm-count", "error", "", "32", "1"},
				{"memory.dimm-type", "error", "DIMM CPU0_DIMM_A1", "DDR4", "DDR5"},
				{"memory.dimm-missing", "error", "DIMM CPU9_DIMM_Z9", "populated", "not reported"},
			},
			wantVerdict: Quarantine,
		},
		"data drive missing and an OS drive of the wrong size": {
			breakIt: func(in, oob *inventory.Inventory) {
				in.Disks[1].SizeBytes = 960197124096
				in.Disks = in.Disks[:len(in.Disks)-1]
			},
			want: []short{
				{"disk.count", "error", "drive group os", "2", "1"},
				{"disk.size", "error", "disk nvme1n1 serial S61650323000101M21", "1.9 TB to 2 TB", "894.3 GiB"},
				{"disk.count", "error", "drive group data", "8", "7"},
			},
			wantVerdict: Quarantine,
		},
		"drive firmware": {
			profile: "name: t\nextends: nvidia-dgx-h100\ndisks:\n  - {name: os, type: nvme, size: {min: 1.9TB, max: 2TB}, count: 2, firmware: {min: GDC7502Q}}\n",
			breakIt: func(in, oob *inventory.Inventory) { in.Disks[1].Firmware = "" },
			want: []short{
				{"disk.firmware", "error", "disk nvme0n1 serial S61650323000101M20", "at least GDC7502Q", "GDC7402Q"},
				{"inventory.unreported", "warning", "disk nvme1n1 serial S61650323000101M21", "at least GDC7502Q", "not reported"},
			},
			wantVerdict: Quarantine,
		},
		"old NIC firmware": {
			breakIt: func(in, oob *inventory.Inventory) { in.NICs[3].Firmware = "28.39.1002" },
			want: []short{
				{"nic.firmware", "error", "nic ibp5es0 (0000:5e:00.0)", "at least 28.40.1000", "28.39.1002"},
			},
			wantVerdict: Quarantine,
			wantHint:    "update the adapter firmware to at least 28.40.1000",
		},
		"NIC port missing, slow and down": {
			profile: "name: t\nextends: nvidia-dgx-h100\nnics:\n  - {name: compute-and-storage, model: '*ConnectX-7*', count: 12, speedGbps: 400}\n",
			breakIt: func(in, oob *inventory.Inventory) {
				in.NICs[0].SpeedMbps = 200000
				in.NICs[1].LinkUp, in.NICs[1].SpeedMbps = false, 0
				in.NICs = append(in.NICs[:5], in.NICs[6:]...)
			},
			want: []short{
				{"nic.count", "error", "NIC group compute-and-storage", "12", "11"},
				{"nic.speed", "error", "nic ibp1as0 (0000:1a:00.0)", "400 Gb/s", "200 Gb/s"},
				{"nic.speed", "warning", "nic ibp40s0 (0000:40:00.0)", "400 Gb/s", "link down"},
			},
			wantVerdict: Quarantine,
			wantHint:    "cabled to leaf-1 port swp1",
		},
		"GPU at x8": {
			breakIt: func(in, oob *inventory.Inventory) { in.GPUs[4].PCIeWidth = 8 },
			want: []short{
				{"gpu.pcie-width", "error", "SXM5 (0000:9d:00.0)", "x16", "x8"},
			},
			wantVerdict: Quarantine,
			wantHint:    "reseat GPU in slot SXM5: link is x8, expected x16",
		},
		"GPU link can only train to Gen4": {
			breakIt: func(in, oob *inventory.Inventory) { in.GPUs[2].MaxPCIeGen, in.GPUs[2].PCIeGen = 4, 4 },
			want: []short{
				{"gpu.pcie-gen", "error", "SXM3 (0000:52:00.0)", "Gen5", "Gen4 (maximum)"},
			},
			wantVerdict: Quarantine,
		},
		"idle GPU at Gen1 with no maximum reported is a warning": {
			breakIt: func(in, oob *inventory.Inventory) { in.GPUs[2].MaxPCIeGen, in.GPUs[2].PCIeGen = 0, 1 },
			want: []short{
				{"gpu.pcie-gen", "warning", "SXM3 (0000:52:00.0)", "Gen5", "Gen1 (current)"},
			},
			wantVerdict: Pass,
		},
		"ECC off, ECC pending, NVLink down": {
			breakIt: func(in, oob *inventory.Inventory) {
				in.GPUs[0].ECC = inventory.ECCDisabled
				in.GPUs[1].ECC, in.GPUs[1].ECCPending = inventory.ECCDisabled, inventory.ECCEnabled
				in.GPUs[7].NVLinkUp = 16
			},
			want: []short{
				{"gpu.ecc", "error", "SXM1 (0000:1b:00.0)", "enabled", "disabled"},
				{"gpu.ecc", "warning", "SXM2 (0000:43:00.0)", "enabled", "disabled (enabled after reset)"},
				{"gpu.nvlink", "error", "SXM8 (0000:df:00.0)", "18 links up", "16 of 18 up"},
			},
			wantVerdict: Quarantine,
			wantHint:    "nvidia-smi -i 0 -e 1",
		},
		"missing GPU the BMC still sees": {
			breakIt: func(in, oob *inventory.Inventory) { in.GPUs = append(in.GPUs[:5], in.GPUs[6:]...) },
			want: []short{
				{"gpu.count", "error", "", "8", "7"},
				{"inventory.seen-out-of-band", "warning", "SXM6 0000:c3:00.0 1650001015 NVIDIA H100 80GB HBM3", "visible to the host", "reported by the BMC only"},
			},
			wantVerdict: Quarantine,
		},
		"no NVIDIA driver": {
			breakIt: func(in, oob *inventory.Inventory) {
				in.GPUs, oob.GPUs = nil, nil
				in.GPUDriverError = "no NVIDIA driver"
			},
			want: []short{
				{"gpu.driver", "error", "", "NVML available", "no NVIDIA driver"},
				{"gpu.count", "error", "", "8", "0"},
			},
			wantVerdict: Quarantine,
		},
		"wrong GPU model, memory, VBIOS and driver": {
			breakIt: func(in, oob *inventory.Inventory) {
				g := &in.GPUs[6]
				g.Name, g.MemoryBytes, g.VBIOS, g.DriverVersion = "NVIDIA H100 PCIe", 40<<30, "96.00.30.00.01", "520.61.05"
				oob.GPUs[6].VBIOS = "96.00.30.00.01"
				oob.GPUs[6].Name = "NVIDIA H100 PCIe"
			},
			want: []short{
				{"gpu.model", "error", "SXM7 (0000:d1:00.0)", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"},
				{"gpu.memory", "error", "SXM7 (0000:d1:00.0)", "at least 80 GB", "40 GiB"},
				{"gpu.vbios", "error", "SXM7 (0000:d1:00.0)", "at least 96.00.74.00.00", "96.00.30.00.01"},
				{"gpu.driver-version", "error", "SXM7 (0000:d1:00.0)", "at least 525.60.13", "520.61.05"},
			},
			wantVerdict: Quarantine,
		},
		"GPU facts not reported": {
			breakIt: func(in, oob *inventory.Inventory) {
				g := &in.GPUs[3]
				g.MemoryBytes, g.MaxPCIeGen, g.PCIeGen, g.PCIeWidth, g.NVLinkUp, g.NVLinkTotal, g.ECC, g.VBIOS = 0, 0, 0, 0, 0, 0, "", ""
				oob.GPUs[3].VBIOS = ""
			},
			want: []short{
				{"inventory.unreported", "warning", "SXM4 (0000:61:00.0)", "at least 80 GB", "not reported"},
				{"inventory.unreported", "warning", "SXM4 (0000:61:00.0)", "Gen5", "not reported"},
				{"inventory.unreported", "warning", "SXM4 (0000:61:00.0)", "x16", "not reported"},
				{"inventory.unreported", "warning", "SXM4 (0000:61:00.0)", "18 links up", "not reported"},
				{"inventory.unreported", "warning", "SXM4 (0000:61:00.0)", "enabled", "not reported"},
				{"inventory.unreported", "warning", "SXM4 (0000:61:00.0)", "at least 96.00.74.00.00", "not reported"},
			},
			wantVerdict: Pass,
		},
		"old BIOS and BMC, with a conflict": {
			breakIt: func(in, oob *inventory.Inventory) {
				in.BIOS.Version = "0.9.1"
				oob.BMC.FirmwareVersion = "23.05.1"
			},
			want: []short{
				{"bios.version", "error", "", "at least 1.0.0", "0.9.1"},
				{"bmc.version", "error", "", "at least 24.0.0", "23.05.1"},
				{"inventory.conflict", "info", "bios.version", "1.1.3 (out-of-band)", "0.9.1 (in-band)"},
			},
			wantVerdict: Quarantine,
		},
		"BMC of another machine": {
			breakIt: func(in, oob *inventory.Inventory) {
				o := fixtures.DGXH100OutOfBand("1650323000199")
				*oob = *o
			},
			want: []short{
				{"inventory.identity-mismatch", "error", "system.serial", "1650323000199 (out-of-band)", "1650323000101 (in-band)"},
				{"inventory.identity-mismatch", "error", "system.uuid",
					fixtures.DGXH100("1650323000199").System.UUID + " (out-of-band)", fixtures.DGXH100(serial).System.UUID + " (in-band)"},
			},
			wantVerdict: Quarantine,
			ignoreInfo:  true,
			wantHint:    "check which BMC this node was enrolled with",
		},
		"firmware components": {
			profile: "name: t\nextends: nvidia-dgx-h100\nfirmware:\n  components:\n" +
				"    - {id: CPLDMB_*, version: {min: 0.2.2}}\n" +
				"    - {id: HGX_FW_GPU_SXM_*, version: {min: 96.00.74.00.00}}\n" +
				"    - {id: PSU_*, version: {min: '1.0'}, required: true}\n",
			breakIt: func(in, oob *inventory.Inventory) {},
			want: []short{
				{"firmware.component", "error", "CPLDMB_0 (Motherboard CPLD)", "at least 0.2.2", "0.2.1.6"},
				{"firmware.component-missing", "error", "PSU_*", "at least 1.0", "absent"},
			},
			wantVerdict: Quarantine,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in, oob := fixtures.DGXH100(serial), fixtures.DGXH100OutOfBand(serial)
			tc.breakIt(in, oob)
			p := getProfile(t, "nvidia-dgx-h100")
			if tc.profile != "" {
				p = parseProfile(t, tc.profile)
			}
			res := Validate(inventory.Merge(in, oob), p)
			got := res.Findings
			if tc.ignoreInfo {
				got = nil
				for _, f := range res.Findings {
					if f.Severity != Info {
						got = append(got, f)
					}
				}
			}
			if diff := cmp.Diff(tc.want, shorten(got)); diff != "" {
				t.Errorf("Validate() findings (-want +got):\n%s", diff)
			}
			if res.Verdict != tc.wantVerdict {
				t.Errorf("Validate() verdict = %s, want %s", res.Verdict, tc.wantVerdict)
			}
			var hints []string
			for _, f := range res.Findings {
				if f.Message == "" || (f.Severity != Info && f.Hint == "") {
					t.Errorf("finding without message or hint: %+v", f)
				}
				if _, ok := Rules[f.Rule]; !ok {
					t.Errorf("finding with undocumented rule %q", f.Rule)
				}
				hints = append(hints, f.Hint)
			}
			if tc.wantHint != "" && !strings.Contains(strings.Join(hints, "\n"), tc.wantHint) {
				t.Errorf("hints %q lack %q", hints, tc.wantHint)
			}
		})
	}
}

// TestEveryRuleCovered fails when a rule is added without a test case that
// emits it.
func TestEveryRuleCovered(t *testing.T) {
	t.Parallel()
	covered := map[string]bool{}
	for _, f := range allFindingsOfTests(t) {
		covered[f.Rule] = true
	}
	var missing []string
	for r := range Rules {
		if !covered[r] {
			missing = append(missing, r)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("rules no test case emits: %v", missing)
	}
}

// allFindingsOfTests gathers the findings of a set of broken inventories that
// together touch every rule (the table above asserts their details).
func allFindingsOfTests(t *testing.T) []Finding {
	var out []Finding
	p := getProfile(t, "nvidia-dgx-h100")
	run := func(p *profile.Profile, f func(in, oob *inventory.Inventory)) {
		in, oob := fixtures.DGXH100(serial), fixtures.DGXH100OutOfBand(serial)
		f(in, oob)
		out = append(out, Validate(inventory.Merge(in, oob), p).Findings...)
	}
	run(p, func(in, oob *inventory.Inventory) {
		in.System.Model, oob.System.Model = "X", "X"
		oob.System.Serial = "another"
		in.CPUs = in.CPUs[:1]
		in.CPUs[0].Model, in.CPUs[0].Cores, in.CPUs[0].Threads = "x", 1, 1
		in.Memory.DIMMs[0] = inventory.DIMM{Slot: in.Memory.DIMMs[0].Slot, Empty: true}
		in.Memory.DIMMs[1].SizeBytes, in.Memory.DIMMs[1].SpeedMTs, in.Memory.DIMMs[1].Type = 1, 1, "DDR4"
		in.Memory.TotalBytes = 1
		in.Disks[0].SizeBytes = 1
		in.NICs[0].Firmware = "1"
		in.NICs = in.NICs[:12] // no management port
		in.GPUs[0].Name, in.GPUs[0].MemoryBytes, in.GPUs[0].MaxPCIeGen, in.GPUs[0].PCIeWidth = "x", 1, 1, 1
		in.GPUs[0].NVLinkUp, in.GPUs[0].ECC, in.GPUs[0].VBIOS, in.GPUs[0].DriverVersion = 1, inventory.ECCDisabled, "1", "1"
		in.GPUs = in.GPUs[:7]
		in.BIOS.Version, oob.BMC.FirmwareVersion = "0.1", "0.1"
		in.CPUs[0].SpeedMHz = 1
	})
	run(parseProfile(t, "name: t\nextends: nvidia-dgx-h100\n"+
		"memory: {dimms: {slots: [nowhere]}}\n"+
		"disks: [{name: os, type: nvme, size: {min: 1.9TB, max: 2TB}, count: 2, firmware: {min: Z}}]\n"+
		"nics: [{name: compute-and-storage, model: '*ConnectX-7*', count: 12, speedGbps: 800}]\n"+
		"firmware: {components: [{id: CPLD*, version: '9'}, {id: none, version: '1', required: true}]}\n"),
		func(in, oob *inventory.Inventory) {
			in.GPUs, oob.GPUs, in.GPUDriverError = nil, nil, "no NVIDIA driver"
			in.CPUs = nil
		})
	return out
}

func TestValidateQEMU(t *testing.T) {
	t.Parallel()
	p := getProfile(t, "qemu-vm")
	inv := fixtures.QEMUVM("52:54:00:12:34:01")
	res := Validate(inventory.Merge(inv, nil), p)
	if res.Verdict != Pass || len(res.Findings) != 0 {
		t.Fatalf("Validate(qemu fixture) = %+v, want a clean pass", res)
	}
	inv.Disks = nil
	inv.NICs[0].Driver = "rtl8139"
	res = Validate(inventory.Merge(inv, nil), p)
	want := []short{
		{"disk.count", "error", "drive group os", "at least 1", "0"},
		{"nic.count", "error", "NIC group provisioning", "at least 1", "0"},
	}
	if diff := cmp.Diff(want, shorten(res.Findings)); diff != "" {
		t.Errorf("Validate(broken qemu) (-want +got):\n%s", diff)
	}
	if res.Verdict != Quarantine || res.Errors != 2 {
		t.Errorf("verdict %s with %d errors, want quarantine with 2", res.Verdict, res.Errors)
	}
}

func TestNode(t *testing.T) {
	t.Parallel()
	cat, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	in, oob := fixtures.DGXH100(serial), fixtures.DGXH100OutOfBand(serial)
	merged, res, err := Node(cat, "", in, oob)
	if err != nil || res.Profile != "nvidia-dgx-h100" || res.Verdict != Pass || merged.BMC.FirmwareVersion != "24.09.17" {
		t.Fatalf("Node(auto) = %v, %+v, %v", merged.BMC, res, err)
	}
	if _, res, err := Node(cat, "qemu-vm", in, nil); err != nil || res.Verdict != Quarantine {
		t.Errorf("Node(dgx as qemu-vm) = %+v, %v; want quarantine", res, err)
	}
	in.System.Vendor = "ACME"
	if _, _, err := Node(cat, "", in, nil); !errors.Is(err, ErrNoProfile) {
		t.Errorf("Node(unknown system) = %v, want ErrNoProfile", err)
	}
	if _, _, err := Node(cat, "nope", in, nil); !errors.Is(err, profile.ErrNotFound) {
		t.Errorf("Node(unknown profile) = %v, want ErrNotFound", err)
	}
}

// TestBreakages checks the faults the demo injects: each quarantines with
// exactly one error.
func TestBreakages(t *testing.T) {
	t.Parallel()
	p := getProfile(t, "nvidia-dgx-h100")
	want := map[string]string{"dimm-missing": "memory.dimm-count", "gpu-x8": "gpu.pcie-width", "nic-firmware-old": "nic.firmware",
		"ecc-off": "gpu.ecc", "gpu-missing": "gpu.count", "bios-old": "bios.version"}
	if len(want) != len(fixtures.Breakages) {
		t.Errorf("%d breakages, the test knows %d", len(fixtures.Breakages), len(want))
	}
	for name, breakIt := range fixtures.Breakages {
		in, oob := fixtures.DGXH100(serial), fixtures.DGXH100OutOfBand(serial)
		breakIt(in, oob)
		res := Validate(inventory.Merge(in, oob), p)
		var errs []string
		for _, f := range res.Findings {
			if f.Severity == Error {
				errs = append(errs, f.Rule)
			}
		}
		if name == "dimm-missing" {
			// The count, and the empty slot by name.
			if diff := cmp.Diff([]string{"memory.dimm-count", "memory.dimm-missing"}, errs); diff != "" {
				t.Errorf("%s: errors (-want +got):\n%s", name, diff)
			}
			continue
		}
		if diff := cmp.Diff([]string{want[name]}, errs); diff != "" {
			t.Errorf("%s: errors (-want +got):\n%s", name, diff)
		}
	}
}
