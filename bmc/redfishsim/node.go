package redfishsim

import (
	"crypto/sha256"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Flavor names the vendor implementation a simulated BMC imitates: its
// resource ids and its known quirks. The zero value is FlavorSupermicro.
type Flavor string

const (
	// FlavorSupermicro: Systems/1, Managers/1, Chassis/1; virtual media under
	// the manager.
	FlavorSupermicro Flavor = "supermicro"
	// FlavorDell: iDRAC ids (System.Embedded.1, iDRAC.Embedded.1), virtual
	// media under the system, as iDRAC 6+ exposes it, and the event log
	// under the manager and system only (none under the chassis).
	FlavorDell Flavor = "dell"
	// FlavorHPE: ids 1/1/1 and a boot override PATCH that rejects
	// BootSourceOverrideMode (as some iLO/HPE Gen10 firmware does).
	FlavorHPE Flavor = "hpe"
	// FlavorOpenBMC: Systems/system, Managers/bmc, Chassis/chassis.
	FlavorOpenBMC Flavor = "openbmc"
	// FlavorGeneric: ids shaped like the DMTF public-rackmount1 mockup
	// (Systems/<serial>, Managers/BMC, Chassis/1U), which bmclib's inventory
	// does not recognise.
	FlavorGeneric Flavor = "generic"
)

// flavorSpec is what a Flavor means.
type flavorSpec struct {
	vendor               string // ServiceRoot.Vendor
	systemID, managerID  string
	chassisID            string
	bmcModel             string
	virtualMediaOnSystem bool
	rejectBootMode       bool
	noChassisLog         bool // the event log is not listed under the chassis
	sessionOnly          bool
	resetTypes           []string // ComputerSystem.Reset types accepted (default all)
	powerLag             time.Duration
}

// Quirks are vendor behaviours a Node's BMC shows on top of (or instead of)
// its Flavor's, so that a test can make a BMC behave like a model the
// flavors do not cover. The zero value adds nothing.
type Quirks struct {
	// RejectBootMode: a boot override PATCH naming BootSourceOverrideMode
	// is refused (400 PropertyNotWritable).
	RejectBootMode bool
	// VirtualMediaOnSystem: virtual media is listed under the system, not
	// the manager.
	VirtualMediaOnSystem bool
	// SessionOnly: basic authentication is refused (401); only a Redfish
	// session's X-Auth-Token is accepted.
	SessionOnly bool
	// ResetTypes, when set, are the only ComputerSystem.Reset types
	// accepted (and advertised); others are refused with 400.
	ResetTypes []string
	// PowerLag: after a power change the BMC goes on reporting the old
	// power state for this long.
	PowerLag time.Duration
	// LogsUnderManagerOnly: the event log is listed under the manager and
	// the system, none under the chassis.
	LogsUnderManagerOnly bool
}

// apply adds q to the flavor's behaviour.
func (s flavorSpec) apply(q Quirks) flavorSpec {
	s.rejectBootMode = s.rejectBootMode || q.RejectBootMode
	s.virtualMediaOnSystem = s.virtualMediaOnSystem || q.VirtualMediaOnSystem
	s.sessionOnly = s.sessionOnly || q.SessionOnly
	if len(q.ResetTypes) > 0 {
		s.resetTypes = slices.Clone(q.ResetTypes)
	}
	s.powerLag = max(s.powerLag, q.PowerLag)
	s.noChassisLog = s.noChassisLog || q.LogsUnderManagerOnly
	return s
}

func (f Flavor) spec(serial string) (flavorSpec, error) {
	switch f {
	case "", FlavorSupermicro:
		return flavorSpec{vendor: "Supermicro", systemID: "1", managerID: "1", chassisID: "1", bmcModel: "X13 AST2600"}, nil
	case FlavorDell:
		return flavorSpec{vendor: "Dell", systemID: "System.Embedded.1", managerID: "iDRAC.Embedded.1", chassisID: "System.Embedded.1", bmcModel: "16G Monolithic", virtualMediaOnSystem: true, noChassisLog: true}, nil
	case FlavorHPE:
		return flavorSpec{vendor: "HPE", systemID: "1", managerID: "1", chassisID: "1", bmcModel: "iLO 6", rejectBootMode: true}, nil
	case FlavorOpenBMC:
		return flavorSpec{vendor: "OpenBMC", systemID: "system", managerID: "bmc", chassisID: "chassis", bmcModel: "OpenBMC"}, nil
	case FlavorGeneric:
		id := safeID(serial)
		if id == "" {
			id = "System1"
		}
		return flavorSpec{vendor: "Contoso", systemID: id, managerID: "BMC", chassisID: "1U", bmcModel: "Joo Janta 200"}, nil
	}
	return flavorSpec{}, fmt.Errorf("unknown flavor %q; use supermicro, dell, hpe, openbmc or generic", f)
}

// Node is one simulated machine: the hardware its BMC reports and how the
// BMC behaves. Hardware uses the shared inventory model, so the same value
// can seed a simulated host's in-band inventory and its BMC's Redfish tree.
//
// What the BMC serves from Hardware: System (vendor, model, SKU, serial,
// UUID), Chassis, BIOS.Version, BMC (firmware version, MAC, model), CPUs,
// Memory.DIMMs (empty slots as Absent), NICs (host EthernetInterfaces), Disks
// (Storage drives), GPUs (as GPU processors and PCIe devices) and Firmware
// (UpdateService FirmwareInventory; BIOS and BMC entries are added when
// missing).
type Node struct {
	Hardware inventory.Inventory
	Flavor   Flavor
	// Quirks add vendor behaviours to the flavor's.
	Quirks Quirks
	// Username and Password are the BMC's one account (default
	// "admin"/"password").
	Username string
	Password string
}

func (n Node) withDefaults() Node {
	if n.Flavor == "" {
		n.Flavor = FlavorSupermicro
	}
	if n.Username == "" {
		n.Username = "admin"
	}
	if n.Password == "" {
		n.Password = "password"
	}
	return n
}

func (n Node) validate() error {
	hw := n.Hardware
	if strings.TrimSpace(hw.System.Serial) == "" {
		return fmt.Errorf("node has no system serial")
	}
	for i, nic := range hw.NICs {
		if _, err := net.ParseMAC(nic.MAC); err != nil {
			return fmt.Errorf("node %s: nic %d: invalid MAC %q", hw.System.Serial, i, nic.MAC)
		}
	}
	if hw.BMC.MAC != "" {
		if _, err := net.ParseMAC(hw.BMC.MAC); err != nil {
			return fmt.Errorf("node %s: invalid BMC MAC %q", hw.System.Serial, hw.BMC.MAC)
		}
	}
	for _, rt := range n.Quirks.ResetTypes {
		if !slices.Contains(resetTypes, rt) {
			return fmt.Errorf("node %s: unknown reset type %q; use one of %v", hw.System.Serial, rt, resetTypes)
		}
	}
	_, err := n.Flavor.spec(hw.System.Serial)
	return err
}

// SampleNode returns a plausible 8-GPU server, distinct for each i: serial
// RSIM000042, a stable UUID, locally administered MACs (02:52:53:...), two
// CPUs, 16 DIMMs (one slot empty), two NVMe drives, eight GPUs and a
// firmware inventory. The same i always gives the same node.
func SampleNode(i int) Node {
	serial := fmt.Sprintf("RSIM%06d", i)
	hostMAC := func(port int) string {
		return fmt.Sprintf("02:52:%02x:%02x:%02x:%02x", 0x10+port, (i>>16)&0xff, (i>>8)&0xff, i&0xff)
	}
	hw := inventory.Inventory{
		Source: inventory.OutOfBand,
		System: inventory.System{
			Vendor: "Rackstrap Sim",
			Model:  "RS-8GPU-H100",
			SKU:    "RS8H100-A1",
			Serial: serial,
			UUID:   nameUUID("system/" + serial),
		},
		Chassis: inventory.Chassis{Vendor: "Rackstrap Sim", Type: "RackMount", Serial: serial},
		BIOS:    inventory.BIOS{Vendor: "Rackstrap Sim", Version: "2.1.7"},
		BMC: inventory.BMC{
			Vendor:          "Rackstrap Sim",
			Model:           "AST2600",
			FirmwareVersion: "1.4.2",
			MAC:             fmt.Sprintf("02:52:01:%02x:%02x:%02x", (i>>16)&0xff, (i>>8)&0xff, i&0xff),
		},
		NICs: []inventory.NIC{
			{MAC: hostMAC(0), SpeedMbps: 25000, LinkUp: true, Vendor: "Mellanox", Model: "ConnectX-6 Lx", Slot: "NIC1"},
			{MAC: hostMAC(1), SpeedMbps: 25000, LinkUp: false, Vendor: "Mellanox", Model: "ConnectX-6 Lx", Slot: "NIC2"},
		},
	}
	for s := 0; s < 2; s++ {
		hw.CPUs = append(hw.CPUs, inventory.CPU{Socket: fmt.Sprintf("CPU%d", s+1), Vendor: "Intel(R) Corporation", Model: "Intel(R) Xeon(R) Platinum 8480C", Cores: 56, Threads: 112, SpeedMHz: 3800})
	}
	for d := 0; d < 16; d++ {
		slot := fmt.Sprintf("CPU%d_DIMM_%c1", d/8+1, 'A'+d%8)
		if d == 15 {
			hw.Memory.DIMMs = append(hw.Memory.DIMMs, inventory.DIMM{Slot: slot, Empty: true})
			continue
		}
		hw.Memory.DIMMs = append(hw.Memory.DIMMs, inventory.DIMM{
			Slot: slot, SizeBytes: 64 << 30, SpeedMTs: 4800, Type: "DDR5",
			Manufacturer: "Samsung", PartNumber: "M321R8GA0BB0-CQKZJ", Serial: fmt.Sprintf("S%06d%02d", i, d),
		})
	}
	hw.Memory.TotalBytes = 15 * 64 << 30
	for d := 0; d < 2; d++ {
		hw.Disks = append(hw.Disks, inventory.BlockDevice{
			Model: "SAMSUNG MZQL23T8HCLS-00A07", Vendor: "Samsung", Serial: fmt.Sprintf("S64HNE0T%06d%d", i, d),
			SizeBytes: 3840755982336, Type: inventory.DiskNVMe, Firmware: "GDC5602Q", Slot: fmt.Sprintf("Disk.Bay.%d", d),
		})
	}
	for g := 0; g < 8; g++ {
		hw.GPUs = append(hw.GPUs, inventory.GPU{
			Index: g, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-" + nameUUID(fmt.Sprintf("gpu/%s/%d", serial, g)),
			Serial: fmt.Sprintf("1654%06d%03d", i, g), MemoryBytes: 80 << 30, VBIOS: "96.00.99.00.01", Slot: fmt.Sprintf("GPU%d", g+1),
		})
	}
	hw.Firmware = []inventory.FirmwareComponent{
		{ID: "BMC", Name: "BMC Firmware", Version: hw.BMC.FirmwareVersion},
		{ID: "BIOS", Name: "BIOS", Version: hw.BIOS.Version},
		{ID: "CPLD", Name: "Mainboard CPLD", Version: "F1.0A"},
		{ID: "NIC1", Name: "ConnectX-6 Lx", Version: "26.36.1010"},
	}
	return Node{Hardware: hw}
}

// nameUUID derives a stable RFC 4122 (version 5 style) UUID from a name.
func nameUUID(name string) string {
	h := sha256.Sum256([]byte("rackstrap-sim:" + name))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// safeID turns a label into a Redfish resource id: letters, digits, '.',
// '-' and '_' only.
func safeID(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ' || r == '/':
			b.WriteRune('_')
		}
	}
	return b.String()
}
