package collect

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

var fixedNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

const gib = 1 << 30

// dgxLike writes a two-socket GPU server: DMI, SMBIOS with DIMMs, a GPU, a
// ConnectX NIC, an NVMe and a SATA disk, with the noise a real host has
// (loopback, a bond, loop and zram devices, a bridge with an untrained link).
func dgxLike(t *testing.T) *tree {
	tr := newTree(t)
	tr.files("/sys/class/dmi/id", map[string]string{
		"sys_vendor": "NVIDIA", "product_name": "DGXH100", "product_sku": "DGXH100-SKU",
		"product_serial": "1660123000123", "product_uuid": "4c4c4544-0042-3510-8052-b2c04f4e3133",
		"product_family": "DGX", "board_vendor": "NVIDIA", "board_name": "DGXH100",
		"board_version": "A03", "board_serial": "BRD0001", "chassis_vendor": "NVIDIA",
		"chassis_type": "23", "chassis_serial": "CHS0001", "chassis_asset_tag": "RACK7-U12",
		"bios_vendor": "American Megatrends International, LLC.", "bios_version": "1.5.0",
		"bios_date": "03/14/2024",
	})
	tr.file(smbiosTables, concat(
		type4(0x0400, "CPU0", 3800, 56, 112),
		type4(0x0401, "CPU1", 3800, 56, 112),
		type4Empty(0x0402, "CPU2"),
		type17(0x1100, "CPU0_DIMM_A1", 64*1024, 4800, "S0001"),
		type17(0x1101, "CPU0_DIMM_B1", 0, 0, ""),
		type17(0x1102, "CPU1_DIMM_A1", 64*1024, 4800, "S0002"),
		type17(0x1103, "CPU1_DIMM_B1", 16*1024, 4400, "S0003"),
		endOfTable(),
	))
	var cpuinfo strings.Builder
	for i := range 8 { // 2 sockets × 2 cores × 2 threads
		pkg, core := i/4, (i/2)%2
		cpuinfo.WriteString("processor\t: " + itoa(i) + "\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\ncpu MHz\t\t: 2000.000\nphysical id\t: " +
			itoa(pkg) + "\nsiblings\t: 4\ncore id\t\t: " + itoa(core) + "\ncpu cores\t: 2\nflags\t\t: fpu vme\n\n")
	}
	tr.file("/proc/cpuinfo", cpuinfo.String())
	tr.file("/proc/meminfo", "MemTotal:       131072000 kB\nMemFree:        1000 kB\n")

	pci := func(addr, bus, vendor, device, class, driver string, attrs map[string]string) {
		dir := "/sys/devices/pci0000:" + bus + "/" + addr
		a := map[string]string{"vendor": "0x" + vendor, "device": "0x" + device, "class": "0x" + class,
			"subsystem_vendor": "0x10de", "subsystem_device": "0x16c1"}
		for k, v := range attrs {
			a[k] = v
		}
		tr.files(dir, a)
		if driver != "" {
			tr.link(dir+"/driver", "../../../bus/pci/drivers/"+driver)
		}
		tr.link("/sys/bus/pci/devices/"+addr, "../../../devices/pci0000:"+bus+"/"+addr)
	}
	pci("0000:17:00.0", "17", "10de", "2330", "030200", "nvidia", map[string]string{
		"current_link_speed": "32.0 GT/s PCIe", "max_link_speed": "32.0 GT/s PCIe",
		"current_link_width": "16", "max_link_width": "16"})
	pci("0000:18:00.0", "18", "15b3", "1021", "020000", "mlx5_core", map[string]string{
		"current_link_speed": "16.0 GT/s PCIe", "max_link_speed": "32.0 GT/s PCIe",
		"current_link_width": "8", "max_link_width": "16"})
	pci("0000:19:00.0", "19", "144d", "a80a", "010802", "nvme", map[string]string{
		"current_link_speed": "16.0 GT/s PCIe", "max_link_speed": "16.0 GT/s PCIe",
		"current_link_width": "4", "max_link_width": "4"})
	pci("0000:00:1f.2", "00", "8086", "a182", "010601", "ahci", nil)
	pci("0000:00:01.0", "00", "8086", "09a2", "060400", "pcieport", map[string]string{
		"current_link_speed": "Unknown", "max_link_speed": "8.0 GT/s PCIe",
		"current_link_width": "255", "max_link_width": "16"})
	tr.file("/sys/bus/pci/slots/5/address", "0000:17:00\n")
	tr.file("/sys/bus/pci/slots/7/address", "0000:18:00\n")
	tr.file("/usr/share/misc/pci.ids", "# test database\n10de  NVIDIA Corporation\n\t2330  GH100 [H100 SXM5 80GB]\n\t\t10de 16c1  H100 SXM5 80GB\n"+
		"15b3  Mellanox Technologies\n\t1021  MT2910 Family [ConnectX-7]\n144d  Samsung Electronics Co Ltd\n\ta80a  NVMe SSD Controller PM9A1/PM9A3/980PRO\n"+
		"8086  Intel Corporation\nC 02  Network controller\n\t00  Ethernet controller\n")

	// NICs: a ConnectX port (up), its second port (down), a bond and lo.
	nic := func(name, pciDir, addr, mac, speed, carrier string) {
		dir := pciDir + "/net/" + name
		tr.files(dir, map[string]string{"address": mac, "speed": speed, "carrier": carrier, "operstate": map[string]string{"1": "up", "0": "down"}[carrier]})
		tr.link(dir+"/device", "../../../"+addr)
		tr.link("/sys/class/net/"+name, "../.."+dir[len("/sys"):])
	}
	nic("ens1f0np0", "/sys/devices/pci0000:18/0000:18:00.0", "0000:18:00.0", "B8:3F:D2:00:00:01", "400000", "1")
	nic("ens1f1np1", "/sys/devices/pci0000:18/0000:18:00.0", "0000:18:00.0", "b8:3f:d2:00:00:02", "-1", "0")
	tr.files("/sys/devices/virtual/net/bond0", map[string]string{"address": "b8:3f:d2:00:00:01"})
	tr.link("/sys/class/net/bond0", "../../devices/virtual/net/bond0")
	tr.files("/sys/devices/virtual/net/lo", map[string]string{"address": "00:00:00:00:00:00"})
	tr.link("/sys/class/net/lo", "../../devices/virtual/net/lo")
	tr.file("/sys/module/mlx5_core/version", "24.01-0.3.3\n")
	tr.file("/sys/devices/pci0000:18/0000:18:00.0/infiniband/mlx5_0/fw_ver", "28.41.1000\n")

	// Disks: an NVMe namespace, a SATA SSD, and loop/zram noise.
	nvmeCtl := "/sys/devices/pci0000:19/0000:19:00.0/nvme/nvme0"
	tr.files(nvmeCtl, map[string]string{"model": "SAMSUNG MZ1L21T9HCLS-00A07", "serial": "S6L7NA0T100001", "firmware_rev": "GDC7302Q"})
	tr.files(nvmeCtl+"/nvme0n1", map[string]string{"size": "3750748848", "wwid": "eui.36344730524000010025384100000001"})
	tr.link(nvmeCtl+"/nvme0n1/device", "../../nvme0")
	tr.link("/sys/block/nvme0n1", "../devices/pci0000:19/0000:19:00.0/nvme/nvme0/nvme0n1")
	sda := "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
	tr.files(sda, map[string]string{"vendor": "ATA     ", "model": "Micron_5400_MTFD", "rev": "U002", "wwid": "naa.500a0751e5a00001"})
	// VPD page 0x80: 4-byte header, then the serial.
	tr.file(sda+"/vpd_pg80", "\x00\x80\x00\x14"+"    22373E5A0001    ")
	tr.files(sda+"/block/sda", map[string]string{"size": "937703088", "queue/rotational": "0"})
	tr.link(sda+"/block/sda/device", "../../../0:0:0:0")
	tr.link("/sys/block/sda", "../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda")
	tr.files("/sys/devices/virtual/block/loop0", map[string]string{"size": "0"})
	tr.link("/sys/block/loop0", "../devices/virtual/block/loop0")
	tr.files("/sys/devices/virtual/block/zram0", map[string]string{"size": "100"})
	tr.link("/sys/block/zram0", "../devices/virtual/block/zram0")
	return tr
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestCollectFixtureHost(t *testing.T) {
	t.Parallel()
	tr := dgxLike(t)
	res := Collect(context.Background(), Options{Root: tr.root, Collector: "rackstrap-agent test", Now: func() time.Time { return fixedNow }})
	want := inventory.Inventory{
		Source: inventory.InBand, CollectedAt: fixedNow, Collector: "rackstrap-agent test",
		System: inventory.System{Vendor: "NVIDIA", Model: "DGXH100", SKU: "DGXH100-SKU", Serial: "1660123000123",
			UUID: "4c4c4544-0042-3510-8052-b2c04f4e3133", Family: "DGX"},
		Baseboard: inventory.Baseboard{Vendor: "NVIDIA", Model: "DGXH100", Version: "A03", Serial: "BRD0001"},
		Chassis:   inventory.Chassis{Vendor: "NVIDIA", Type: "Rack Mount Chassis", Serial: "CHS0001", AssetTag: "RACK7-U12"},
		BIOS:      inventory.BIOS{Vendor: "American Megatrends International, LLC.", Version: "1.5.0", Date: "03/14/2024"},
		CPUs: []inventory.CPU{
			{Socket: "CPU0", Vendor: "GenuineIntel", Model: "Intel(R) Xeon(R) Platinum 8480C", Cores: 2, Threads: 4, SpeedMHz: 3800},
			{Socket: "CPU1", Vendor: "GenuineIntel", Model: "Intel(R) Xeon(R) Platinum 8480C", Cores: 2, Threads: 4, SpeedMHz: 3800},
		},
		Memory: inventory.Memory{TotalBytes: 144 * gib, DIMMs: []inventory.DIMM{
			{Slot: "CPU0_DIMM_A1", SizeBytes: 64 * gib, SpeedMTs: 4800, Type: "DDR5", Manufacturer: "Samsung", PartNumber: "M321R8GA0BB0-CQKZJ", Serial: "S0001"},
			{Slot: "CPU0_DIMM_B1", Empty: true},
			{Slot: "CPU1_DIMM_A1", SizeBytes: 64 * gib, SpeedMTs: 4800, Type: "DDR5", Manufacturer: "Samsung", PartNumber: "M321R8GA0BB0-CQKZJ", Serial: "S0002"},
			{Slot: "CPU1_DIMM_B1", SizeBytes: 16 * gib, SpeedMTs: 4400, Type: "DDR5", Manufacturer: "Samsung", PartNumber: "M321R8GA0BB0-CQKZJ", Serial: "S0003"},
		}},
		PCI: []inventory.PCIDevice{
			{Address: "0000:00:01.0", VendorID: "8086", DeviceID: "09a2", SubVendorID: "10de", SubDeviceID: "16c1", Class: "060400", Vendor: "Intel Corporation", Driver: "pcieport", MaxLinkSpeedGTs: 8, MaxLinkWidth: 16},
			{Address: "0000:00:1f.2", VendorID: "8086", DeviceID: "a182", SubVendorID: "10de", SubDeviceID: "16c1", Class: "010601", Vendor: "Intel Corporation", Driver: "ahci"},
			{Address: "0000:17:00.0", VendorID: "10de", DeviceID: "2330", SubVendorID: "10de", SubDeviceID: "16c1", Class: "030200", Vendor: "NVIDIA Corporation", Device: "GH100 [H100 SXM5 80GB]", Driver: "nvidia", Slot: "5", LinkSpeedGTs: 32, MaxLinkSpeedGTs: 32, LinkWidth: 16, MaxLinkWidth: 16},
			{Address: "0000:18:00.0", VendorID: "15b3", DeviceID: "1021", SubVendorID: "10de", SubDeviceID: "16c1", Class: "020000", Vendor: "Mellanox Technologies", Device: "MT2910 Family [ConnectX-7]", Driver: "mlx5_core", Slot: "7", LinkSpeedGTs: 16, MaxLinkSpeedGTs: 32, LinkWidth: 8, MaxLinkWidth: 16},
			{Address: "0000:19:00.0", VendorID: "144d", DeviceID: "a80a", SubVendorID: "10de", SubDeviceID: "16c1", Class: "010802", Vendor: "Samsung Electronics Co Ltd", Device: "NVMe SSD Controller PM9A1/PM9A3/980PRO", Driver: "nvme", LinkSpeedGTs: 16, MaxLinkSpeedGTs: 16, LinkWidth: 4, MaxLinkWidth: 4},
		},
		NICs: []inventory.NIC{
			{Name: "ens1f0np0", MAC: "b8:3f:d2:00:00:01", Vendor: "Mellanox Technologies", Model: "MT2910 Family [ConnectX-7]", Driver: "mlx5_core", DriverVersion: "24.01-0.3.3", Firmware: "28.41.1000", SpeedMbps: 400000, LinkUp: true, PCIAddress: "0000:18:00.0", Slot: "7"},
			{Name: "ens1f1np1", MAC: "b8:3f:d2:00:00:02", Vendor: "Mellanox Technologies", Model: "MT2910 Family [ConnectX-7]", Driver: "mlx5_core", DriverVersion: "24.01-0.3.3", Firmware: "28.41.1000", PCIAddress: "0000:18:00.0", Slot: "7"},
		},
		Disks: []inventory.BlockDevice{
			{Name: "nvme0n1", Model: "SAMSUNG MZ1L21T9HCLS-00A07", Serial: "S6L7NA0T100001", WWN: "eui.36344730524000010025384100000001", SizeBytes: 3750748848 * 512, Type: inventory.DiskNVMe, Firmware: "GDC7302Q", PCIAddress: "0000:19:00.0"},
			{Name: "sda", Model: "Micron_5400_MTFD", Vendor: "ATA", Serial: "22373E5A0001", WWN: "naa.500a0751e5a00001", SizeBytes: 937703088 * 512, Type: inventory.DiskSSD, Firmware: "U002", PCIAddress: "0000:00:1f.2"},
		},
	}
	if diff := cmp.Diff(want, res.Inventory); diff != "" {
		t.Errorf("Collect(fixture) inventory mismatch (-want +got):\n%s", diff)
	}
	if len(res.Notes) != 0 {
		t.Errorf("Collect(fixture) notes = %q, want none", res.Notes)
	}
	// The model's own reading of it agrees.
	if got := res.Inventory.Memory.InstalledBytes(); got != 144*gib {
		t.Errorf("InstalledBytes() = %d, want %d", got, uint64(144*gib))
	}
	if got := len(res.Inventory.Memory.PopulatedDIMMs()); got != 3 {
		t.Errorf("PopulatedDIMMs() = %d, want 3", got)
	}
}

func TestCollectSMBIOSFallbackAndMemoryBlocks(t *testing.T) {
	t.Parallel()
	// A VM: no /sys/class/dmi/id, SMBIOS tables with type 1 but no
	// DIMMs, no physical id in cpuinfo, memory from memory blocks.
	tr := newTree(t)
	uuid := [16]byte{0x44, 0x45, 0x4c, 0x4c, 0x42, 0x00, 0x10, 0x35, 0x80, 0x52, 0xb2, 0xc0, 0x4f, 0x4e, 0x31, 0x33}
	tr.file(smbiosTables, concat(type1("QEMU", "Standard PC (Q35 + ICH9, 2009)", "VM-0001", uuid), endOfTable()))
	tr.file("/proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
	tr.file("/sys/devices/system/memory/block_size_bytes", "8000000\n")
	for i, online := range []string{"1", "1", "0", "1"} {
		tr.file("/sys/devices/system/memory/memory"+itoa(i)+"/online", online+"\n")
	}
	tr.file("/sys/devices/system/memory/auto_online_blocks", "online\n")
	tr.dir("/sys/bus/pci/devices")
	tr.dir("/sys/class/net")
	tr.dir("/sys/block")
	res := Collect(context.Background(), Options{Root: tr.root, Now: func() time.Time { return fixedNow }})
	inv := res.Inventory
	wantSys := inventory.System{Vendor: "QEMU", Model: "Standard PC (Q35 + ICH9, 2009)", Serial: "VM-0001", SKU: "SKU-1", Family: "DGX", UUID: "4c4c4544-0042-3510-8052-b2c04f4e3133"}
	if diff := cmp.Diff(wantSys, inv.System); diff != "" {
		t.Errorf("system from SMBIOS tables (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]inventory.CPU{{Vendor: "AuthenticAMD", Model: "AMD EPYC", Cores: 2, Threads: 2}}, inv.CPUs); diff != "" {
		t.Errorf("cpus (-want +got):\n%s", diff)
	}
	if want := uint64(3 * 0x8000000); inv.Memory.TotalBytes != want {
		t.Errorf("memory total = %d, want %d (3 online blocks of 128 MiB)", inv.Memory.TotalBytes, want)
	}
	wantNotes := []string{"dmi: " + dmiDir + " absent", "smbios: no SMBIOS type 17", "nic: no network interface"}
	checkNotes(t, res.Notes, wantNotes)
}

// checkNotes wants one note starting with each prefix, and no other.
func checkNotes(t *testing.T, got, prefixes []string) {
	t.Helper()
	if len(got) != len(prefixes) {
		t.Errorf("notes = %q, want %d notes starting with %q", got, len(prefixes), prefixes)
		return
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(got[i], p) {
			t.Errorf("note %d = %q, want prefix %q", i, got[i], p)
		}
	}
}

func TestCollectEmptyRootLosesNothingElse(t *testing.T) {
	t.Parallel()
	// Only /proc/meminfo and a disk: every other collector fails with a
	// note and the rest is still reported.
	tr := newTree(t)
	tr.file("/proc/meminfo", "MemTotal:       2048 kB\n")
	tr.files("/sys/devices/virtual/block/vda", map[string]string{"size": "2048", "serial": "disk-1"})
	tr.link("/sys/block/vda", "../devices/virtual/block/vda")
	res := Collect(context.Background(), Options{Root: tr.root})
	if res.Inventory.Source != inventory.InBand || res.Inventory.CollectedAt.IsZero() {
		t.Errorf("source/collectedAt = %q/%v, want in-band and a time", res.Inventory.Source, res.Inventory.CollectedAt)
	}
	if res.Inventory.Memory.TotalBytes != 2048*1024 {
		t.Errorf("memory = %d, want %d", res.Inventory.Memory.TotalBytes, 2048*1024)
	}
	wantDisks := []inventory.BlockDevice{{Name: "vda", Serial: "disk-1", SizeBytes: 2048 * 512, Type: inventory.DiskVirtual}}
	if diff := cmp.Diff(wantDisks, res.Inventory.Disks); diff != "" {
		t.Errorf("disks (-want +got):\n%s", diff)
	}
	checkNotes(t, res.Notes, []string{
		"dmi: " + dmiDir + " absent",
		"smbios: " + smbiosTables + " absent",
		"cpu: read /proc/cpuinfo",
		"memory: total is /proc/meminfo MemTotal",
		"pci: read /sys/bus/pci/devices",
		"nic: read /sys/class/net",
	})
}

func TestCollectMalformedSMBIOS(t *testing.T) {
	t.Parallel()
	tr := dgxLike(t)
	good := type17(0x1100, "DIMM_A1", 32*1024, 4800, "S1")
	// A structure whose length runs past the end, then garbage.
	tr.file(smbiosTables, concat(good, []byte{17, 0xff, 0x01, 0x11, 1, 2, 3}))
	res := Collect(context.Background(), Options{Root: tr.root})
	if got := len(res.Inventory.Memory.DIMMs); got != 1 {
		t.Errorf("DIMMs = %d, want the 1 before the malformed structure", got)
	}
	if len(res.Inventory.PCI) != 5 || len(res.Inventory.NICs) != 2 || len(res.Inventory.Disks) != 2 || res.Inventory.System.Serial == "" {
		t.Errorf("other collectors lost data: pci %d nics %d disks %d serial %q", len(res.Inventory.PCI), len(res.Inventory.NICs), len(res.Inventory.Disks), res.Inventory.System.Serial)
	}
	checkNotes(t, res.Notes, []string{"smbios: " + smbiosTables + ": malformed structure at byte " + itoa(len(good)/10) + itoa(len(good)%10)})
}

func TestCollectCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Collect(ctx, Options{Root: dgxLike(t).root})
	if len(res.Notes) != len(collectors) || len(res.Inventory.PCI) != 0 {
		t.Errorf("canceled Collect: notes %q, pci %d; want one note per collector and nothing read", res.Notes, len(res.Inventory.PCI))
	}
}

func TestCollectNICInfoHook(t *testing.T) {
	t.Parallel()
	tr := dgxLike(t)
	var asked []string
	var mu sync.Mutex
	res := Collect(context.Background(), Options{Root: tr.root, NICInfo: func(name string) (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, name)
		if name == "ens1f1np1" {
			return "", "", errors.New("ethtool ens1f1np1: driver info: no such device")
		}
		return "6.1.0-18-amd64", firmwareVersion("28.42.1000 (MT_0000000838)"), nil
	}})
	nics := res.Inventory.NICs
	if nics[0].Firmware != "28.42.1000" || nics[0].DriverVersion != "24.01-0.3.3" {
		t.Errorf("nic 0 firmware %q driver %q, want ethtool's firmware and the module's version", nics[0].Firmware, nics[0].DriverVersion)
	}
	if nics[1].Firmware != "28.41.1000" {
		t.Errorf("nic 1 firmware %q, want the sysfs fw_ver when ethtool fails", nics[1].Firmware)
	}
	if diff := cmp.Diff([]string{"ens1f0np0", "ens1f1np1"}, asked); diff != "" {
		t.Errorf("NICInfo asked for (-want +got):\n%s", diff)
	}
	checkNotes(t, res.Notes, []string{"nic: ethtool ens1f1np1: driver info: no such device"})
	for in, want := range map[string]string{"28.41.1000 (MT_0000000838)": "28.41.1000", "0x80000f0d, 1.2829.0": "0x80000f0d", "N/A": "", "": "", "1.2.3": "1.2.3"} {
		if got := firmwareVersion(in); got != want {
			t.Errorf("firmwareVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseHelpers(t *testing.T) {
	t.Parallel()
	speeds := map[string]float64{"2.5 GT/s": 2.5, "5.0 GT/s PCIe": 5, "8.0 GT/s PCIe": 8, "16.0 GT/s PCIe": 16, "32.0 GT/s PCIe": 32, "64.0 GT/s PCIe": 64, "Unknown": 0, "": 0, "-1 GT/s": 0, "5 MB/s": 0}
	for in, want := range speeds {
		if got := parseLinkSpeed(in); got != want {
			t.Errorf("parseLinkSpeed(%q) = %v, want %v", in, got, want)
		}
	}
	widths := map[string]int{"16": 16, "x8": 8, "255": 0, "0": 0, "": 0, "abc": 0}
	for in, want := range widths {
		if got := parseLinkWidth(in); got != want {
			t.Errorf("parseLinkWidth(%q) = %v, want %v", in, got, want)
		}
	}
	chassis := map[string]string{"23": "Rack Mount Chassis", "17": "Main Server Chassis", "151": "Rack Mount Chassis" /* lock bit */, "99": "99", "x": "x", "": ""}
	for in, want := range chassis {
		if got := chassisTypeName(in); got != want {
			t.Errorf("chassisTypeName(%q) = %q, want %q", in, got, want)
		}
	}
	addrs := map[string]bool{"0000:17:00.0": true, "0000:AF:1f.7": true, "0000:17:00": false, "pci0000:17": false, "0000:17:00.g": false}
	for in, want := range addrs {
		if got := isPCIAddress(in); got != want {
			t.Errorf("isPCIAddress(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzParseSMBIOS(f *testing.F) {
	f.Add([]byte(concat(type17(1, "A1", 1024, 3200, "s"), type4(2, "CPU0", 3000, 8, 16), endOfTable())))
	f.Add([]byte(concat(type1("v", "p", "s", [16]byte{1}), endOfTable())))
	f.Add([]byte{17, 0xff, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var inv inventory.Inventory
		r := &reader{root: "/nonexistent"}
		// Whatever the firmware wrote, decoding ends (no panic escapes
		// runCollector, and the table parser advances or stops).
		_, err := runCollector(collector{"smbios", func(r *reader, inv *inventory.Inventory) ([]string, error) {
			return applySMBIOS(data, r, inv), nil
		}}, r, &inv)
		if err != nil && !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("unexpected error %v", err)
		}
		for _, d := range inv.Memory.DIMMs {
			if d.Empty && d.SizeBytes != 0 {
				t.Fatalf("empty DIMM with a size: %+v", d)
			}
		}
	})
}

func FuzzParseCPUInfo(f *testing.F) {
	f.Add([]byte("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: X\nphysical id\t: 0\ncore id\t\t: 0\ncpu cores\t: 1\n\n"))
	f.Add([]byte("processor\t: 0\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nphysical id\t: 1\n"))
	f.Add([]byte("Hardware\t: BCM2835\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cpus, err := parseCPUInfo(data)
		if err != nil {
			return
		}
		for _, c := range cpus {
			if c.Threads < 1 || c.Cores < 1 {
				t.Fatalf("cpu %+v: want at least one core and thread", c)
			}
		}
	})
}

func FuzzParsePCIIDs(f *testing.F) {
	f.Add("10de  NVIDIA Corporation\n\t2330  GH100 [H100 SXM5 80GB]\n\t\t10de 16c1  H100 SXM5 80GB\nC 02  Network controller\n")
	f.Add("\t1234  orphan device\nzz\n")
	f.Fuzz(func(t *testing.T, data string) {
		ids := &pciIDs{vendors: map[string]string{}, devices: map[string]string{}}
		ids.parse(data)
		for k := range ids.devices {
			if len(k) != 9 || k[4] != ':' {
				t.Fatalf("device key %q is not vvvv:dddd", k)
			}
		}
	})
}
