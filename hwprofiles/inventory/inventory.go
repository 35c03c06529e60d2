// Package inventory is Rackstrap's one hardware inventory model. The in-band
// agent (SMBIOS, sysfs, NVML) and the BMC's out-of-band inventory (Redfish)
// both fill an Inventory; Merge combines the two into the view the validator
// and the reports read.
//
// Conventions, so that every producer fills the model the same way:
//   - sizes are bytes, NIC speeds Mbit/s, DIMM speeds MT/s, PCIe link speeds
//     GT/s (2.5, 5, 8, 16, 32, 64);
//   - a zero value or empty string means "not reported", never "zero";
//   - PCI addresses are domain:bus:device.function in lower case
//     ("0000:17:00.0"); PCI ids are lower-case hex without "0x" (vendor
//     "10de", device "2330", class "030200"); MACs are lower-case colon form;
//   - strings are reported as the hardware gives them, trimmed.
//
// The JSON form (lower-camel keys) is what the agent sends, what the store
// keeps and what `rackstrap validate --inventory` reads. Fields are only ever
// added to it; none is renamed or removed.
package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Source says where an inventory came from.
type Source string

const (
	// InBand is an inventory the agent took from inside the host's OS.
	InBand Source = "in-band"
	// OutOfBand is an inventory read from the BMC (Redfish, IPMI FRU).
	OutOfBand Source = "out-of-band"
	// Merged is the result of Merge.
	Merged Source = "merged"
)

// Inventory is one machine's hardware, as one source saw it.
type Inventory struct {
	Source      Source    `json:"source"`
	CollectedAt time.Time `json:"collectedAt,omitzero"`
	// Collector names the producer and its version ("rackstrap-agent v0.3",
	// "redfish 1.15.1 (Dell iDRAC9)").
	Collector string `json:"collector,omitempty"`

	System    System              `json:"system"`
	Baseboard Baseboard           `json:"baseboard,omitzero"`
	Chassis   Chassis             `json:"chassis,omitzero"`
	BIOS      BIOS                `json:"bios,omitzero"`
	BMC       BMC                 `json:"bmc,omitzero"`
	CPUs      []CPU               `json:"cpus,omitempty"`
	Memory    Memory              `json:"memory,omitzero"`
	PCI       []PCIDevice         `json:"pci,omitempty"`
	NICs      []NIC               `json:"nics,omitempty"`
	Disks     []BlockDevice       `json:"disks,omitempty"`
	GPUs      []GPU               `json:"gpus,omitempty"`
	Firmware  []FirmwareComponent `json:"firmware,omitempty"`
	// GPUDriverError says why GPUs may be missing in-band: "" when NVML answered,
	// otherwise e.g. "no NVIDIA driver" (libnvidia-ml absent).
	GPUDriverError string `json:"gpuDriverError,omitempty"`

	// Conflicts are the facts on which the two sources of a merged inventory
	// disagreed (only set by Merge).
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// System is SMBIOS type 1 / Redfish ComputerSystem identity.
type System struct {
	Vendor string `json:"vendor,omitempty"` // manufacturer: "Dell Inc.", "NVIDIA", "Supermicro", "QEMU"
	Model  string `json:"model,omitempty"`  // product name: "PowerEdge XE9680", "DGXH100"
	SKU    string `json:"sku,omitempty"`
	Serial string `json:"serial,omitempty"`
	UUID   string `json:"uuid,omitempty"`
	Family string `json:"family,omitempty"`
}

// Baseboard is SMBIOS type 2 (the motherboard).
type Baseboard struct {
	Vendor  string `json:"vendor,omitempty"`
	Model   string `json:"model,omitempty"`
	Version string `json:"version,omitempty"`
	Serial  string `json:"serial,omitempty"`
}

// Chassis is SMBIOS type 3 / Redfish Chassis.
type Chassis struct {
	Vendor   string `json:"vendor,omitempty"`
	Type     string `json:"type,omitempty"` // "Rack Mount Chassis", "RackMount"
	Serial   string `json:"serial,omitempty"`
	AssetTag string `json:"assetTag,omitempty"`
}

// BIOS is the system firmware (SMBIOS type 0 / Redfish BiosVersion).
type BIOS struct {
	Vendor  string `json:"vendor,omitempty"`
	Version string `json:"version,omitempty"`
	Date    string `json:"date,omitempty"` // as reported, e.g. "03/14/2024"
}

// BMC is the baseboard management controller.
type BMC struct {
	Vendor          string `json:"vendor,omitempty"`
	Model           string `json:"model,omitempty"`
	FirmwareVersion string `json:"firmwareVersion,omitempty"`
	MAC             string `json:"mac,omitempty"`
	Address         string `json:"address,omitempty"` // management IP or host name
}

// CPU is one processor package (socket).
type CPU struct {
	Socket   string `json:"socket,omitempty"` // locator: "CPU0", "CPU 1", "Socket 2"
	Vendor   string `json:"vendor,omitempty"`
	Model    string `json:"model,omitempty"` // "Intel(R) Xeon(R) Platinum 8480C"
	Cores    int    `json:"cores,omitempty"`
	Threads  int    `json:"threads,omitempty"`
	SpeedMHz int    `json:"speedMHz,omitempty"` // rated (max) speed
}

// Memory is the installed memory.
type Memory struct {
	// TotalBytes is the installed total (the sum of the DIMMs where they are
	// known; what the OS or BMC reports otherwise).
	TotalBytes uint64 `json:"totalBytes,omitempty"`
	// DIMMs lists the memory slots, populated or not: a reported empty slot
	// has Empty set, which is how the validator names the slot of a missing
	// DIMM.
	DIMMs []DIMM `json:"dimms,omitempty"`
}

// DIMM is one memory slot.
type DIMM struct {
	Slot         string `json:"slot"` // SMBIOS/Redfish device locator: "DIMM_A1", "CPU1_DIMM_A1", "PROC 1 DIMM 1"
	Empty        bool   `json:"empty,omitempty"`
	SizeBytes    uint64 `json:"sizeBytes,omitempty"`
	SpeedMTs     int    `json:"speedMTs,omitempty"` // configured speed, MT/s
	Type         string `json:"type,omitempty"`     // "DDR5"
	Manufacturer string `json:"manufacturer,omitempty"`
	PartNumber   string `json:"partNumber,omitempty"`
	Serial       string `json:"serial,omitempty"`
}

// PCIDevice is one PCI function.
type PCIDevice struct {
	Address     string `json:"address"`            // "0000:17:00.0"
	VendorID    string `json:"vendorId,omitempty"` // "10de"
	DeviceID    string `json:"deviceId,omitempty"` // "2330"
	SubVendorID string `json:"subVendorId,omitempty"`
	SubDeviceID string `json:"subDeviceId,omitempty"`
	Class       string `json:"class,omitempty"` // class, subclass, prog-if: "030200"
	Vendor      string `json:"vendor,omitempty"`
	Device      string `json:"device,omitempty"`
	Driver      string `json:"driver,omitempty"`
	Slot        string `json:"slot,omitempty"` // physical slot label, when known
	// Link speed in GT/s and width in lanes, as trained now and at most.
	LinkSpeedGTs    float64 `json:"linkSpeedGTs,omitempty"`
	MaxLinkSpeedGTs float64 `json:"maxLinkSpeedGTs,omitempty"`
	LinkWidth       int     `json:"linkWidth,omitempty"`
	MaxLinkWidth    int     `json:"maxLinkWidth,omitempty"`
}

// NIC is one network port.
type NIC struct {
	Name          string `json:"name,omitempty"` // OS interface name: "eno1", "ens3"
	MAC           string `json:"mac,omitempty"`
	Vendor        string `json:"vendor,omitempty"`
	Model         string `json:"model,omitempty"` // "MT2910 Family [ConnectX-7]", "Virtio network device"
	Driver        string `json:"driver,omitempty"`
	DriverVersion string `json:"driverVersion,omitempty"`
	Firmware      string `json:"firmware,omitempty"`
	SpeedMbps     int    `json:"speedMbps,omitempty"` // negotiated; 0 when down or unknown
	LinkUp        bool   `json:"linkUp,omitempty"`
	PCIAddress    string `json:"pciAddress,omitempty"`
	Slot          string `json:"slot,omitempty"` // physical slot label, when known
	LLDP          *LLDP  `json:"lldp,omitempty"`
}

// LLDP is the neighbour a NIC port sees: the switch port it is cabled to.
type LLDP struct {
	ChassisID       string `json:"chassisId,omitempty"`
	SystemName      string `json:"systemName,omitempty"`
	PortID          string `json:"portId,omitempty"`
	PortDescription string `json:"portDescription,omitempty"`
	MgmtAddress     string `json:"mgmtAddress,omitempty"`
}

// DiskType is the kind of a block device.
type DiskType string

const (
	DiskNVMe    DiskType = "nvme"
	DiskSSD     DiskType = "ssd"
	DiskHDD     DiskType = "hdd"
	DiskVirtual DiskType = "virtual" // virtio-blk, virtio-scsi and other paravirtual disks
)

// BlockDevice is one disk.
type BlockDevice struct {
	Name       string   `json:"name,omitempty"` // "nvme0n1", "vda"
	Model      string   `json:"model,omitempty"`
	Vendor     string   `json:"vendor,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	WWN        string   `json:"wwn,omitempty"`
	SizeBytes  uint64   `json:"sizeBytes,omitempty"`
	Type       DiskType `json:"type,omitempty"`
	Firmware   string   `json:"firmware,omitempty"`
	PCIAddress string   `json:"pciAddress,omitempty"`
	Slot       string   `json:"slot,omitempty"` // drive bay, when known
}

// ECCMode is a GPU's ECC state.
type ECCMode string

const (
	ECCEnabled     ECCMode = "enabled"
	ECCDisabled    ECCMode = "disabled"
	ECCUnsupported ECCMode = "unsupported"
)

// GPU is one accelerator.
type GPU struct {
	Index       int    `json:"index"`          // NVML index (in-band) or position in the BMC's list
	Name        string `json:"name,omitempty"` // NVML name / model: "NVIDIA H100 80GB HBM3"
	UUID        string `json:"uuid,omitempty"`
	Serial      string `json:"serial,omitempty"`
	MemoryBytes uint64 `json:"memoryBytes,omitempty"`
	VBIOS       string `json:"vbios,omitempty"`
	PCIAddress  string `json:"pciAddress,omitempty"`
	// Slot is the physical position a technician can find: the SXM module
	// or PCIe slot label ("GPU5", "SXM5", "Slot 3"), when known.
	Slot            string  `json:"slot,omitempty"`
	PCIeGen         int     `json:"pcieGen,omitempty"`
	MaxPCIeGen      int     `json:"maxPcieGen,omitempty"`
	PCIeWidth       int     `json:"pcieWidth,omitempty"`
	MaxPCIeWidth    int     `json:"maxPcieWidth,omitempty"`
	ECC             ECCMode `json:"ecc,omitempty"`
	ECCPending      ECCMode `json:"eccPending,omitempty"` // mode after the next reset, when it differs
	NVLinkUp        int     `json:"nvlinkUp,omitempty"`
	NVLinkTotal     int     `json:"nvlinkTotal,omitempty"`
	DriverVersion   string  `json:"driverVersion,omitempty"`
	InfoROM         string  `json:"inforom,omitempty"`
	PowerLimitWatts int     `json:"powerLimitWatts,omitempty"`
}

// FirmwareComponent is one entry of a firmware inventory (Redfish
// UpdateService FirmwareInventory, or what the agent read).
type FirmwareComponent struct {
	ID      string `json:"id"`             // "BMC", "BIOS", "CPLD", "NIC.Slot.3-1", "GPU5"
	Name    string `json:"name,omitempty"` // human name
	Version string `json:"version,omitempty"`
	// Device ties the component to a device of this inventory, when known:
	// a PCI address, GPU UUID or NIC MAC.
	Device string `json:"device,omitempty"`
}

// Conflict is one fact on which the two sources disagreed.
type Conflict struct {
	// Field is the fact's path: "system.serial", "gpus[0000:18:00.0].serial",
	// "gpus" (an item seen by one source only).
	Field     string `json:"field"`
	InBand    string `json:"inBand"`
	OutOfBand string `json:"outOfBand"`
	// Kept is the source whose value the merged inventory carries.
	Kept Source `json:"kept"`
}

// Parse decodes an inventory from JSON, strictly: unknown keys are errors
// (a typo in a fixture must not silently read as "not reported").
func Parse(data []byte) (*Inventory, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var inv Inventory
	if err := dec.Decode(&inv); err != nil {
		return nil, fmt.Errorf("parse inventory: %w", err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, fmt.Errorf("parse inventory: trailing data after the JSON object")
	}
	switch inv.Source {
	case InBand, OutOfBand, Merged, "":
	default:
		return nil, fmt.Errorf("parse inventory: unknown source %q; use %q, %q or %q", inv.Source, InBand, OutOfBand, Merged)
	}
	return &inv, nil
}

// Sockets is the number of processor packages.
func (inv *Inventory) Sockets() int { return len(inv.CPUs) }

// PopulatedDIMMs returns the DIMMs that are installed.
func (m Memory) PopulatedDIMMs() []DIMM {
	var out []DIMM
	for _, d := range m.DIMMs {
		if !d.Empty {
			out = append(out, d)
		}
	}
	return out
}

// InstalledBytes is TotalBytes, or the sum of the populated DIMMs when the
// total was not reported.
func (m Memory) InstalledBytes() uint64 {
	if m.TotalBytes != 0 {
		return m.TotalBytes
	}
	var sum uint64
	for _, d := range m.DIMMs {
		if !d.Empty {
			sum += d.SizeBytes
		}
	}
	return sum
}

// PCIeGen maps a link speed in GT/s to its PCIe generation (0 if unknown).
func PCIeGen(gts float64) int {
	switch {
	case gts <= 0:
		return 0
	case gts < 4:
		return 1 // 2.5 GT/s
	case gts < 7:
		return 2 // 5 GT/s
	case gts < 12:
		return 3 // 8 GT/s
	case gts < 24:
		return 4 // 16 GT/s
	case gts < 48:
		return 5 // 32 GT/s
	case gts < 96:
		return 6 // 64 GT/s
	default:
		return 7 // 128 GT/s
	}
}

// PCIeSpeedGTs is the link speed of a PCIe generation in GT/s (0 if unknown).
func PCIeSpeedGTs(gen int) float64 {
	switch gen {
	case 1:
		return 2.5
	case 2:
		return 5
	case 3:
		return 8
	case 4:
		return 16
	case 5:
		return 32
	case 6:
		return 64
	case 7:
		return 128
	}
	return 0
}

// NormalizeHexID returns a PCI id in the model's form: lower case, no "0x",
// zero-padded to width digits ("0x10DE" → "10de").
func NormalizeHexID(s string, width int) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0x")
	for len(s) < width {
		s = "0" + s
	}
	return s
}

// Normalize puts identifiers into the model's canonical form, in place:
// MACs lower-case colon form, PCI addresses lower case with a domain
// ("17:00.0" → "0000:17:00.0"), PCI ids lower-case hex without "0x". Producers
// (the agent, the BMC mapping) call it before sending an inventory.
func (inv *Inventory) Normalize() {
	inv.BMC.MAC = normMAC(inv.BMC.MAC)
	for i := range inv.PCI {
		d := &inv.PCI[i]
		d.Address = NormalizePCIAddress(d.Address)
		d.VendorID, d.DeviceID = normID(d.VendorID, 4), normID(d.DeviceID, 4)
		d.SubVendorID, d.SubDeviceID = normID(d.SubVendorID, 4), normID(d.SubDeviceID, 4)
		d.Class = normID(d.Class, 6)
	}
	for i := range inv.NICs {
		n := &inv.NICs[i]
		n.MAC = normMAC(n.MAC)
		n.PCIAddress = NormalizePCIAddress(n.PCIAddress)
	}
	for i := range inv.Disks {
		inv.Disks[i].PCIAddress = NormalizePCIAddress(inv.Disks[i].PCIAddress)
	}
	for i := range inv.GPUs {
		inv.GPUs[i].PCIAddress = NormalizePCIAddress(inv.GPUs[i].PCIAddress)
	}
}

func normID(s string, width int) string {
	if s == "" {
		return ""
	}
	return NormalizeHexID(s, width)
}

func normMAC(s string) string {
	if hw, err := net.ParseMAC(strings.TrimSpace(s)); err == nil {
		return hw.String()
	}
	return s
}

// NormalizePCIAddress returns a PCI address as domain:bus:device.function in
// lower case; NVML's "00000000:17:00.0" and lspci's "17:00.0" both become
// "0000:17:00.0". Anything else is returned trimmed and lower-cased.
func NormalizePCIAddress(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		return "0000:" + s
	case 3:
		if d := strings.TrimLeft(parts[0], "0"); len(parts[0]) > 4 && len(d) <= 4 {
			return fmt.Sprintf("%04s:%s:%s", d, parts[1], parts[2])
		}
	}
	return s
}
