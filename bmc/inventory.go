package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/bmc-toolbox/common"
	gfcommon "github.com/stmcginnis/gofish/common"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// optional drops a 404: a linked resource the BMC does not really have is
// left out of the inventory rather than failing it.
func optional(err error) error {
	var ge *gfcommon.Error
	if errors.As(err, &ge) && ge.HTTPReturnedStatusCode == 404 {
		return nil
	}
	return err
}

// identity is what a BMC's service root and system say about the machine.
type identity struct {
	root   rfServiceRoot
	system rfSystem
}

// readIdentity reads the service root and the (first) computer system. The
// root (readable without credentials) already tells the vendor: a BMC the
// quirks table lists as session-only gets a session before the system is
// read. The BMC's model is remembered for the operations that read no
// identity.
func (r *rfReader) readIdentity(ctx context.Context) (*identity, error) {
	id := &identity{}
	if err := r.get(ctx, "/redfish/v1/", &id.root); err != nil {
		return nil, err
	}
	r.key = modelKey{vendor: rootVendor(id.root), product: strings.TrimSpace(id.root.Product)}
	if r.book != nil && r.book.lookup(r.key).has(QuirkSessionAuth) {
		r.useSession = true
	}
	systems, err := r.members(ctx, first(id.root.Systems.ID, "/redfish/v1/Systems"))
	if err != nil {
		return nil, err
	}
	if len(systems) == 0 {
		return nil, fmt.Errorf("%w: the service lists no ComputerSystem", ErrUnsupported)
	}
	if err := r.get(ctx, systems[0], &id.system); err != nil {
		return nil, err
	}
	r.key.manufacturer, r.key.model = strings.TrimSpace(id.system.Manufacturer), strings.TrimSpace(id.system.Model)
	if r.book != nil {
		r.book.setHost(r.hostPort, r.key)
	}
	return id, nil
}

// rootVendor is the service root's Vendor or, before Redfish 1.5, its
// (first) Oem key.
func rootVendor(r rfServiceRoot) string {
	vendor := strings.TrimSpace(r.Vendor)
	if vendor == "" {
		for k := range r.Oem {
			if vendor == "" || k < vendor {
				vendor = k
			}
		}
	}
	return vendor
}

// readInventory walks a Redfish service into the shared inventory model.
func (r *rfReader) readInventory(ctx context.Context, host string) (*inventory.Inventory, error) {
	id, err := r.readIdentity(ctx)
	if err != nil {
		return nil, err
	}
	sys := id.system
	inv := &inventory.Inventory{
		Source: inventory.OutOfBand,
		System: inventory.System{
			Vendor: strings.TrimSpace(sys.Manufacturer),
			Model:  strings.TrimSpace(sys.Model),
			SKU:    strings.TrimSpace(sys.SKU),
			Serial: strings.TrimSpace(sys.SerialNumber),
			UUID:   strings.ToLower(strings.TrimSpace(sys.UUID)),
		},
		BIOS:   inventory.BIOS{Version: strings.TrimSpace(sys.BiosVersion)},
		Memory: inventory.Memory{TotalBytes: uint64(float64(sys.MemorySummary.TotalSystemMemoryGiB) * (1 << 30))},
	}
	inv.Chassis.AssetTag = sys.AssetTag

	if err := r.each(ctx, sys.Processors.ID, func(p string) error {
		var pr rfProcessor
		if err := r.get(ctx, p, &pr); err != nil {
			return err
		}
		addProcessor(inv, pr)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := r.each(ctx, sys.Memory.ID, func(p string) error {
		var m rfMemory
		if err := r.get(ctx, p, &m); err != nil {
			return err
		}
		inv.Memory.DIMMs = append(inv.Memory.DIMMs, dimmOf(m))
		return nil
	}); err != nil {
		return nil, err
	}
	if inv.NICs, err = r.readNICs(ctx, sys); err != nil {
		return nil, err
	}
	if err := r.each(ctx, sys.Storage.ID, func(p string) error {
		var s rfStorage
		if err := r.get(ctx, p, &s); err != nil {
			return err
		}
		for _, d := range s.Drives {
			var dr rfDrive
			if err := optional(r.get(ctx, d.ID, &dr)); err != nil {
				return err
			}
			if dr.ID != "" || dr.SerialNumber != "" {
				inv.Disks = append(inv.Disks, diskOf(dr))
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if sys.Storage.ID == "" {
		if err := r.each(ctx, sys.SimpleStorage.ID, func(p string) error {
			var s rfSimpleStorage
			if err := r.get(ctx, p, &s); err != nil {
				return err
			}
			for _, d := range s.Devices {
				if d.Status.State == "Absent" {
					continue
				}
				inv.Disks = append(inv.Disks, inventory.BlockDevice{Model: d.Model, Vendor: d.Manufacturer, SizeBytes: d.CapacityBytes.u64(), Slot: d.Name})
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}

	chassis := ""
	if len(sys.Links.Chassis) > 0 {
		chassis = sys.Links.Chassis[0].ID
	}
	if chassis != "" {
		var ch rfChassis
		if err := optional(r.get(ctx, chassis, &ch)); err != nil {
			return nil, err
		}
		inv.Chassis = inventory.Chassis{Vendor: ch.Manufacturer, Type: ch.ChassisType, Serial: ch.SerialNumber, AssetTag: first(ch.AssetTag, sys.AssetTag)}
	}

	manager := ""
	if len(sys.Links.ManagedBy) > 0 {
		manager = sys.Links.ManagedBy[0].ID
	} else if ms, err := r.members(ctx, first(id.root.Managers.ID, "/redfish/v1/Managers")); err == nil && len(ms) > 0 {
		manager = ms[0]
	}
	inv.BMC = inventory.BMC{Vendor: id.root.Vendor, Address: host}
	if manager != "" {
		var m rfManager
		if err := optional(r.get(ctx, manager, &m)); err != nil {
			return nil, err
		}
		inv.BMC.Vendor = first(m.Manufacturer, id.root.Vendor)
		inv.BMC.Model = m.Model
		inv.BMC.FirmwareVersion = m.FirmwareVersion
		if err := r.each(ctx, m.EthernetInterfaces.ID, func(p string) error {
			var e rfEthernet
			if err := r.get(ctx, p, &e); err != nil {
				return err
			}
			if mac := e.mac(); mac != "" && inv.BMC.MAC == "" {
				inv.BMC.MAC = mac
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}

	var us rfUpdateService
	if id.root.UpdateService.ID != "" {
		if err := optional(r.get(ctx, id.root.UpdateService.ID, &us)); err != nil {
			return nil, err
		}
	}
	if err := r.each(ctx, us.FirmwareInventory.ID, func(p string) error {
		var sw rfSoftware
		if err := r.get(ctx, p, &sw); err != nil {
			return err
		}
		inv.Firmware = append(inv.Firmware, inventory.FirmwareComponent{ID: first(sw.ID, sw.SoftwareID), Name: sw.Name, Version: sw.Version})
		return nil
	}); err != nil {
		return nil, err
	}
	inv.Collector = strings.TrimSpace(fmt.Sprintf("redfish %s (%s)", id.root.RedfishVersion, first(id.root.Vendor, inv.BMC.Vendor)))
	return inv, nil
}

// readNICs reads the system's network interfaces (its EthernetInterfaces
// collection; none when the BMC lists none).
func (r *rfReader) readNICs(ctx context.Context, sys rfSystem) ([]inventory.NIC, error) {
	inv := &inventory.Inventory{}
	err := r.each(ctx, sys.EthernetInterfaces.ID, func(p string) error {
		var e rfEthernet
		if err := r.get(ctx, p, &e); err != nil {
			return err
		}
		addNIC(inv, e)
		return nil
	})
	return inv.NICs, err
}

// each calls fn for every member of the collection at path ("" or a
// collection the BMC lacks: none).
func (r *rfReader) each(ctx context.Context, path string, fn func(member string) error) error {
	if path == "" {
		return nil
	}
	ms, err := r.members(ctx, path)
	if err != nil {
		return optional(err)
	}
	for _, m := range ms {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

func first(ss ...string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}

var plainUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func addProcessor(inv *inventory.Inventory, p rfProcessor) {
	if p.Status.State == "Absent" {
		return
	}
	switch strings.ToUpper(p.ProcessorType) {
	case "CPU", "":
		inv.CPUs = append(inv.CPUs, inventory.CPU{
			Socket: first(p.Socket, p.ID), Vendor: p.Manufacturer, Model: strings.TrimSpace(p.Model),
			Cores: p.TotalCores.int(), Threads: p.TotalThreads.int(), SpeedMHz: p.MaxSpeedMHz.int(),
		})
	case "GPU", "ACCELERATOR":
		g := inventory.GPU{
			Index: len(inv.GPUs), Name: strings.TrimSpace(p.Model), Serial: strings.TrimSpace(p.SerialNumber),
			VBIOS: p.FirmwareVersion, Slot: first(p.Location.PartLocation.ServiceLabel, p.ID), UUID: p.UUID,
		}
		// NVML spells GPU UUIDs "GPU-<uuid>"; Redfish carries the bare UUID.
		if plainUUID.MatchString(g.UUID) && strings.HasPrefix(strings.ToUpper(p.Manufacturer), "NVIDIA") {
			g.UUID = "GPU-" + strings.ToLower(g.UUID)
		}
		for _, m := range p.ProcessorMemory {
			g.MemoryBytes += m.CapacityMiB.u64() << 20
		}
		inv.GPUs = append(inv.GPUs, g)
	}
}

func dimmOf(m rfMemory) inventory.DIMM {
	d := inventory.DIMM{Slot: first(m.DeviceLocator, m.ID)}
	if m.Status.State == "Absent" || m.CapacityMiB == 0 {
		d.Empty = true
		return d
	}
	d.SizeBytes = m.CapacityMiB.u64() << 20
	d.SpeedMTs = m.OperatingSpeedMhz.int()
	d.Type = m.MemoryDeviceType
	d.Manufacturer = m.Manufacturer
	d.PartNumber = m.PartNumber
	d.Serial = m.SerialNumber
	return d
}

func addNIC(inv *inventory.Inventory, e rfEthernet) {
	mac := e.mac()
	if mac == "" {
		return
	}
	for _, n := range inv.NICs {
		if n.MAC == mac { // VLAN interfaces repeat their parent's MAC
			return
		}
	}
	inv.NICs = append(inv.NICs, inventory.NIC{MAC: mac, SpeedMbps: e.SpeedMbps.int(), LinkUp: e.LinkStatus == "LinkUp"})
}

func diskOf(d rfDrive) inventory.BlockDevice {
	b := inventory.BlockDevice{
		Model: strings.TrimSpace(d.Model), Vendor: d.Manufacturer, Serial: strings.TrimSpace(d.SerialNumber),
		SizeBytes: d.CapacityBytes.u64(), Firmware: d.Revision, Slot: first(d.PhysicalLocation.PartLocation.ServiceLabel, d.ID),
	}
	switch {
	case strings.EqualFold(d.Protocol, "NVMe"):
		b.Type = inventory.DiskNVMe
	case strings.EqualFold(d.MediaType, "HDD"):
		b.Type = inventory.DiskHDD
	case strings.EqualFold(d.MediaType, "SSD"):
		b.Type = inventory.DiskSSD
	}
	return b
}

func normalizeMAC(s string) string {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 || hw.String() == "00:00:00:00:00:00" {
		return ""
	}
	return hw.String()
}

// FromCommonDevice maps bmclib's inventory (github.com/bmc-toolbox/common)
// into the shared inventory model.
func FromCommonDevice(d *common.Device) inventory.Inventory {
	inv := inventory.Inventory{Source: inventory.OutOfBand}
	if d == nil {
		return inv
	}
	inv.System = inventory.System{Vendor: d.Vendor, Model: d.Model, Serial: d.Serial}
	if d.BIOS != nil && d.BIOS.Firmware != nil {
		inv.BIOS.Version = d.BIOS.Firmware.Installed
	}
	if d.BMC != nil {
		inv.BMC.Vendor, inv.BMC.Model = d.BMC.Vendor, d.BMC.Model
		if d.BMC.Firmware != nil {
			inv.BMC.FirmwareVersion = d.BMC.Firmware.Installed
		}
	}
	for _, c := range d.CPUs {
		if c == nil {
			continue
		}
		inv.CPUs = append(inv.CPUs, inventory.CPU{Socket: first(c.Slot, c.ID), Vendor: c.Vendor, Model: c.Model, Cores: c.Cores, Threads: c.Threads, SpeedMHz: int(c.ClockSpeedHz / 1e6)})
	}
	for _, m := range d.Memory {
		if m == nil {
			continue
		}
		dimm := inventory.DIMM{Slot: m.Slot, Empty: m.SizeBytes == 0}
		if !dimm.Empty {
			dimm.SizeBytes, dimm.SpeedMTs, dimm.Type = uint64(m.SizeBytes), int(m.ClockSpeedHz/1e6), m.Type
			dimm.Manufacturer, dimm.PartNumber, dimm.Serial = m.Vendor, m.PartNumber, m.Serial
		}
		inv.Memory.DIMMs = append(inv.Memory.DIMMs, dimm)
	}
	for _, dr := range d.Drives {
		if dr == nil {
			continue
		}
		b := inventory.BlockDevice{Model: dr.Model, Vendor: dr.Vendor, Serial: dr.Serial, SizeBytes: uint64(max(dr.CapacityBytes, 0)), Slot: dr.ID}
		if dr.Firmware != nil {
			b.Firmware = dr.Firmware.Installed
		}
		switch {
		case strings.EqualFold(dr.Protocol, "NVMe"):
			b.Type = inventory.DiskNVMe
		case strings.EqualFold(dr.Type, "HDD"):
			b.Type = inventory.DiskHDD
		case strings.EqualFold(dr.Type, "SSD"):
			b.Type = inventory.DiskSSD
		}
		inv.Disks = append(inv.Disks, b)
	}
	for _, n := range d.NICs {
		if n == nil {
			continue
		}
		for _, p := range n.NICPorts {
			if p == nil || normalizeMAC(p.MacAddress) == "" {
				continue
			}
			inv.NICs = append(inv.NICs, inventory.NIC{MAC: normalizeMAC(p.MacAddress), Vendor: first(p.Vendor, n.Vendor), Model: first(p.Model, n.Model), SpeedMbps: int(p.SpeedBits / 1e6)})
		}
	}
	for i, g := range d.GPUs {
		if g == nil {
			continue
		}
		inv.GPUs = append(inv.GPUs, inventory.GPU{Index: i, Name: first(g.Model, g.ProductName), Serial: g.Serial})
	}
	return inv
}

// hasGaps reports whether inv lacks a field fillFrom could fill: only
// then is bmclib's own walk of the tree (about fifty more requests) worth
// its cost.
func hasGaps(inv *inventory.Inventory) bool {
	return inv.System.Vendor == "" || inv.System.Model == "" || inv.System.Serial == "" || inv.BIOS.Version == "" ||
		inv.BMC.Vendor == "" || inv.BMC.Model == "" || inv.BMC.FirmwareVersion == "" ||
		len(inv.CPUs) == 0 || len(inv.Memory.DIMMs) == 0 || len(inv.Disks) == 0 || len(inv.NICs) == 0 || len(inv.GPUs) == 0
}

// fillFrom fills what inv left empty from other (another reading of the same
// BMC): scalar fields one by one, lists only when inv has none.
func fillFrom(inv *inventory.Inventory, other inventory.Inventory) {
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&inv.System.Vendor, other.System.Vendor)
	fill(&inv.System.Model, other.System.Model)
	fill(&inv.System.Serial, other.System.Serial)
	fill(&inv.BIOS.Version, other.BIOS.Version)
	fill(&inv.BMC.Vendor, other.BMC.Vendor)
	fill(&inv.BMC.Model, other.BMC.Model)
	fill(&inv.BMC.FirmwareVersion, other.BMC.FirmwareVersion)
	if len(inv.CPUs) == 0 {
		inv.CPUs = other.CPUs
	}
	if len(inv.Memory.DIMMs) == 0 {
		inv.Memory.DIMMs = other.Memory.DIMMs
	}
	if len(inv.Disks) == 0 {
		inv.Disks = other.Disks
	}
	if len(inv.NICs) == 0 {
		inv.NICs = other.NICs
	}
	if len(inv.GPUs) == 0 {
		inv.GPUs = other.GPUs
	}
}
