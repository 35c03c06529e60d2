package inventory

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	tests := map[string]struct {
		in, oob *Inventory
		want    *Inventory
	}{
		"both nil": {
			want: &Inventory{Source: Merged},
		},
		"out-of-band only is taken whole": {
			oob: &Inventory{Source: OutOfBand, System: System{Serial: "S1"},
				GPUs: []GPU{{Index: 0, Serial: "G0"}}, BMC: BMC{FirmwareVersion: "1.0"}},
			want: &Inventory{Source: Merged, System: System{Serial: "S1"},
				GPUs: []GPU{{Index: 0, Serial: "G0"}}, BMC: BMC{FirmwareVersion: "1.0"}},
		},
		"in-band wins host facts, out-of-band wins BMC facts, empties filled": {
			in: &Inventory{Source: InBand, CollectedAt: t0, Collector: "agent",
				System: System{Vendor: "NVIDIA", Model: "DGXH100", Serial: "1234"},
				BIOS:   BIOS{Version: "1.5.0"},
				BMC:    BMC{FirmwareVersion: "24.01", MAC: "aa:bb:cc:dd:ee:ff"}},
			oob: &Inventory{Source: OutOfBand, CollectedAt: t1, Collector: "redfish",
				System: System{Vendor: "nvidia", Model: "DGX H100", SKU: "DGXH100-SKU", Serial: "1234"},
				BIOS:   BIOS{Version: "1.4.0", Date: "01/02/2024"},
				BMC:    BMC{FirmwareVersion: "24.02", Address: "10.0.0.5"}},
			want: &Inventory{Source: Merged, CollectedAt: t1, Collector: "agent + redfish",
				System: System{Vendor: "NVIDIA", Model: "DGXH100", SKU: "DGXH100-SKU", Serial: "1234"},
				BIOS:   BIOS{Version: "1.5.0", Date: "01/02/2024"},
				BMC:    BMC{FirmwareVersion: "24.02", MAC: "aa:bb:cc:dd:ee:ff", Address: "10.0.0.5"},
				Conflicts: []Conflict{
					{Field: "system.model", InBand: "DGXH100", OutOfBand: "DGX H100", Kept: InBand},
					{Field: "bios.version", InBand: "1.5.0", OutOfBand: "1.4.0", Kept: InBand},
					{Field: "bmc.firmwareVersion", InBand: "24.01", OutOfBand: "24.02", Kept: OutOfBand},
				}},
		},
		"GPU seen only by the BMC is a conflict, not a GPU": {
			in: &Inventory{GPUs: []GPU{
				{Index: 0, UUID: "GPU-a", PCIAddress: "0000:18:00.0", PCIeWidth: 16},
				{Index: 1, UUID: "GPU-b", PCIAddress: "0000:2a:00.0", PCIeWidth: 8},
			}},
			oob: &Inventory{GPUs: []GPU{
				{Index: 0, Serial: "S-b", PCIAddress: "0000:2a:00.0", Slot: "GPU2"},
				{Index: 1, Serial: "S-a", PCIAddress: "0000:18:00.0", Slot: "GPU1", VBIOS: "96.00.74.00.01"},
				{Index: 2, Serial: "S-c", PCIAddress: "0000:3a:00.0", Slot: "GPU3"},
			}},
			want: &Inventory{Source: Merged, GPUs: []GPU{
				{Index: 0, UUID: "GPU-a", Serial: "S-a", PCIAddress: "0000:18:00.0", Slot: "GPU1", PCIeWidth: 16, VBIOS: "96.00.74.00.01"},
				{Index: 1, UUID: "GPU-b", Serial: "S-b", PCIAddress: "0000:2a:00.0", Slot: "GPU2", PCIeWidth: 8},
			}, Conflicts: []Conflict{
				{Field: "gpus", InBand: "(absent)", OutOfBand: "reported GPU3 0000:3a:00.0 S-c", Kept: InBand},
			}},
		},
		"DIMMs match by normalised slot; an empty slot disagreement is recorded": {
			in: &Inventory{Memory: Memory{TotalBytes: 64 << 30, DIMMs: []DIMM{
				{Slot: "DIMM_A1", SizeBytes: 32 << 30},
				{Slot: "DIMM_B1", Empty: true},
			}}},
			oob: &Inventory{Memory: Memory{DIMMs: []DIMM{
				{Slot: "DIMM A1", SizeBytes: 32 << 30, PartNumber: "M321R4GA3BB6-CQK"},
				{Slot: "DIMM B1", SizeBytes: 32 << 30},
			}}},
			want: &Inventory{Source: Merged, Memory: Memory{TotalBytes: 64 << 30, DIMMs: []DIMM{
				{Slot: "DIMM_A1", SizeBytes: 32 << 30, PartNumber: "M321R4GA3BB6-CQK"},
				{Slot: "DIMM_B1", Empty: true},
			}}, Conflicts: []Conflict{
				{Field: "memory.dimms[dimmb1].empty", InBand: "true", OutOfBand: "false", Kept: InBand},
			}},
		},
		"items without identity pair in order": {
			in:  &Inventory{CPUs: []CPU{{Model: "Xeon 8480C", Cores: 56}, {Model: "Xeon 8480C", Cores: 56}}},
			oob: &Inventory{CPUs: []CPU{{Socket: "CPU1", Threads: 112}, {Socket: "CPU2", Threads: 112}}},
			want: &Inventory{Source: Merged, CPUs: []CPU{
				{Socket: "CPU1", Model: "Xeon 8480C", Cores: 56, Threads: 112},
				{Socket: "CPU2", Model: "Xeon 8480C", Cores: 56, Threads: 112},
			}},
		},
		"firmware is the union, out-of-band first": {
			in:  &Inventory{Firmware: []FirmwareComponent{{ID: "nic0", Version: "28.39.1002"}, {ID: "BIOS", Version: "1.5.0"}}},
			oob: &Inventory{Firmware: []FirmwareComponent{{ID: "BMC", Version: "24.02"}, {ID: "bios", Name: "System BIOS", Version: "1.5.0"}}},
			want: &Inventory{Source: Merged, Firmware: []FirmwareComponent{
				{ID: "BMC", Version: "24.02"}, {ID: "bios", Name: "System BIOS", Version: "1.5.0"}, {ID: "nic0", Version: "28.39.1002"},
			}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := Merge(tc.in, tc.oob)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Merge() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeDoesNotModifyArguments(t *testing.T) {
	t.Parallel()
	in := &Inventory{GPUs: []GPU{{UUID: "a"}}}
	oob := &Inventory{GPUs: []GPU{{UUID: "a", Serial: "s"}}}
	Merge(in, oob)
	if in.GPUs[0].Serial != "" {
		t.Errorf("Merge modified its in-band argument: %+v", in.GPUs[0])
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in      string
		wantErr string
	}{
		"ok":            {in: `{"source":"in-band","system":{"vendor":"QEMU"},"gpus":[{"index":0,"ecc":"enabled"}]}`},
		"unknown key":   {in: `{"source":"in-band","sytem":{}}`, wantErr: `unknown field "sytem"`},
		"bad source":    {in: `{"source":"agent"}`, wantErr: `unknown source "agent"`},
		"trailing data": {in: `{} {}`, wantErr: "trailing data"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.in))
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Parse(%s) = %v, want no error", tc.in, err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Parse(%s) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

// TestJSONKeys pins the wire form: keys are lower camel and empty facts are
// left out, so producers and consumers stay compatible.
func TestJSONKeys(t *testing.T) {
	t.Parallel()
	inv := Inventory{Source: InBand, System: System{Vendor: "QEMU"},
		NICs: []NIC{{Name: "ens3", MAC: "52:54:00:12:34:01", SpeedMbps: 1000, LLDP: &LLDP{SystemName: "tor1", PortID: "Eth1/1"}}},
		GPUs: []GPU{{Index: 0, PCIeGen: 5, MaxPCIeWidth: 16, NVLinkUp: 18, ECC: ECCEnabled}}}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"source":"in-band","system":{"vendor":"QEMU"},"nics":[{"name":"ens3","mac":"52:54:00:12:34:01","speedMbps":1000,"lldp":{"systemName":"tor1","portId":"Eth1/1"}}],"gpus":[{"index":0,"pcieGen":5,"maxPcieWidth":16,"ecc":"enabled","nvlinkUp":18}]}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s\nwant %s", b, want)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&inv, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestPCIeGen(t *testing.T) {
	t.Parallel()
	for gen := 1; gen <= 7; gen++ {
		if got := PCIeGen(PCIeSpeedGTs(gen)); got != gen {
			t.Errorf("PCIeGen(PCIeSpeedGTs(%d)) = %d, want %d", gen, got, gen)
		}
	}
	if got := PCIeGen(0); got != 0 {
		t.Errorf("PCIeGen(0) = %d, want 0", got)
	}
	if got := NormalizeHexID("0x10DE", 4); got != "10de" {
		t.Errorf("NormalizeHexID(0x10DE) = %q, want 10de", got)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	inv := &Inventory{
		BMC:  BMC{MAC: "AA-BB-CC-DD-EE-FF"},
		PCI:  []PCIDevice{{Address: "17:00.0", VendorID: "0x10DE", DeviceID: "2330", Class: "0x30200"}},
		NICs: []NIC{{MAC: "94:6D:AE:00:00:01", PCIAddress: "0000:1A:00.0"}},
		GPUs: []GPU{{PCIAddress: "00000000:1B:00.0"}},
	}
	inv.Normalize()
	want := &Inventory{
		BMC:  BMC{MAC: "aa:bb:cc:dd:ee:ff"},
		PCI:  []PCIDevice{{Address: "0000:17:00.0", VendorID: "10de", DeviceID: "2330", Class: "030200"}},
		NICs: []NIC{{MAC: "94:6d:ae:00:00:01", PCIAddress: "0000:1a:00.0"}},
		GPUs: []GPU{{PCIAddress: "0000:1b:00.0"}},
	}
	if diff := cmp.Diff(want, inv); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
}
