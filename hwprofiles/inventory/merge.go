package inventory

import (
	"fmt"
	"strconv"
	"strings"
)

// Merge combines an in-band and an out-of-band inventory of the same machine
// into one (Source Merged). Either may be nil; Merge never modifies its
// arguments.
//
// The rules:
//
//   - Host-visible facts come from in-band first: system, baseboard, chassis,
//     BIOS, CPUs, memory, PCI devices, NICs, disks and GPUs. The OS sees what
//     the host really trained and enumerated; a BMC often reports what is
//     cabled or cached.
//   - BMC facts come from out-of-band first: the BMC itself and the firmware
//     inventory.
//   - A field the preferred source left empty is filled from the other one.
//     When both reported a field and the values differ (ignoring case and
//     surrounding space), the preferred value is kept and a Conflict records
//     both.
//   - Lists: the preferred source's list decides which items exist. Its items
//     are matched to the other source's items by identity (GPU UUID, serial
//     or PCI address; NIC MAC; disk serial or name; DIMM and CPU slot; PCI
//     address); items without a matching identity are paired in order. Each
//     matched pair is merged field by field as above. An item only the other
//     source reported is not added: it becomes a Conflict (a GPU the BMC sees
//     but the host does not is exactly what validation must catch). When the
//     preferred source reported no items at all, the other source's list is
//     taken whole.
//   - The firmware inventory is the union of both lists by component ID.
//   - GPUDriverError is in-band only; CollectedAt is the later of the two.
func Merge(inband, outofband *Inventory) *Inventory {
	var in, oob Inventory
	if inband != nil {
		in = *inband
	}
	if outofband != nil {
		oob = *outofband
	}
	m := &merger{}
	out := &Inventory{Source: Merged}
	out.CollectedAt = in.CollectedAt
	if oob.CollectedAt.After(out.CollectedAt) {
		out.CollectedAt = oob.CollectedAt
	}
	out.Collector = joinNonEmpty(" + ", in.Collector, oob.Collector)

	out.System = System{
		Vendor: m.str("system.vendor", in.System.Vendor, oob.System.Vendor, InBand),
		Model:  m.str("system.model", in.System.Model, oob.System.Model, InBand),
		SKU:    m.str("system.sku", in.System.SKU, oob.System.SKU, InBand),
		Serial: m.str("system.serial", in.System.Serial, oob.System.Serial, InBand),
		UUID:   m.str("system.uuid", in.System.UUID, oob.System.UUID, InBand),
		Family: m.str("system.family", in.System.Family, oob.System.Family, InBand),
	}
	out.Baseboard = Baseboard{
		Vendor:  m.str("baseboard.vendor", in.Baseboard.Vendor, oob.Baseboard.Vendor, InBand),
		Model:   m.str("baseboard.model", in.Baseboard.Model, oob.Baseboard.Model, InBand),
		Version: m.str("baseboard.version", in.Baseboard.Version, oob.Baseboard.Version, InBand),
		Serial:  m.str("baseboard.serial", in.Baseboard.Serial, oob.Baseboard.Serial, InBand),
	}
	out.Chassis = Chassis{
		Vendor:   m.str("chassis.vendor", in.Chassis.Vendor, oob.Chassis.Vendor, InBand),
		Type:     m.str("chassis.type", in.Chassis.Type, oob.Chassis.Type, InBand),
		Serial:   m.str("chassis.serial", in.Chassis.Serial, oob.Chassis.Serial, InBand),
		AssetTag: m.str("chassis.assetTag", in.Chassis.AssetTag, oob.Chassis.AssetTag, InBand),
	}
	out.BIOS = BIOS{
		Vendor:  m.str("bios.vendor", in.BIOS.Vendor, oob.BIOS.Vendor, InBand),
		Version: m.str("bios.version", in.BIOS.Version, oob.BIOS.Version, InBand),
		Date:    m.str("bios.date", in.BIOS.Date, oob.BIOS.Date, InBand),
	}
	out.BMC = BMC{
		Vendor:          m.str("bmc.vendor", in.BMC.Vendor, oob.BMC.Vendor, OutOfBand),
		Model:           m.str("bmc.model", in.BMC.Model, oob.BMC.Model, OutOfBand),
		FirmwareVersion: m.str("bmc.firmwareVersion", in.BMC.FirmwareVersion, oob.BMC.FirmwareVersion, OutOfBand),
		MAC:             m.str("bmc.mac", in.BMC.MAC, oob.BMC.MAC, OutOfBand),
		Address:         m.str("bmc.address", in.BMC.Address, oob.BMC.Address, OutOfBand),
	}

	out.CPUs = mergeList(m, "cpus", in.CPUs, oob.CPUs, InBand,
		func(c CPU) []string { return keys(slotKey(c.Socket)) },
		func(m *merger, p string, a, b CPU) CPU {
			return CPU{
				Socket:   first(a.Socket, b.Socket),
				Vendor:   m.str(p+".vendor", a.Vendor, b.Vendor, InBand),
				Model:    m.str(p+".model", a.Model, b.Model, InBand),
				Cores:    m.num(p+".cores", a.Cores, b.Cores, InBand),
				Threads:  m.num(p+".threads", a.Threads, b.Threads, InBand),
				SpeedMHz: m.num(p+".speedMHz", a.SpeedMHz, b.SpeedMHz, InBand),
			}
		})

	out.Memory.TotalBytes = m.u64("memory.totalBytes", in.Memory.TotalBytes, oob.Memory.TotalBytes, InBand)
	out.Memory.DIMMs = mergeList(m, "memory.dimms", in.Memory.DIMMs, oob.Memory.DIMMs, InBand,
		func(d DIMM) []string { return keys(slotKey(d.Slot)) },
		func(m *merger, p string, a, b DIMM) DIMM {
			if a.Empty != b.Empty {
				m.add(p+".empty", strconv.FormatBool(a.Empty), strconv.FormatBool(b.Empty), InBand)
			}
			if a.Empty {
				return a // an empty slot has no other facts to fill
			}
			return DIMM{
				Slot:         first(a.Slot, b.Slot),
				Empty:        a.Empty,
				SizeBytes:    m.u64(p+".sizeBytes", a.SizeBytes, b.SizeBytes, InBand),
				SpeedMTs:     m.num(p+".speedMTs", a.SpeedMTs, b.SpeedMTs, InBand),
				Type:         m.str(p+".type", a.Type, b.Type, InBand),
				Manufacturer: m.str(p+".manufacturer", a.Manufacturer, b.Manufacturer, InBand),
				PartNumber:   m.str(p+".partNumber", a.PartNumber, b.PartNumber, InBand),
				Serial:       m.str(p+".serial", a.Serial, b.Serial, InBand),
			}
		})

	out.PCI = mergeList(m, "pci", in.PCI, oob.PCI, InBand,
		func(d PCIDevice) []string { return keys(strings.ToLower(d.Address)) },
		func(m *merger, p string, a, b PCIDevice) PCIDevice {
			return PCIDevice{
				Address:         m.str(p+".address", a.Address, b.Address, InBand),
				VendorID:        m.str(p+".vendorId", a.VendorID, b.VendorID, InBand),
				DeviceID:        m.str(p+".deviceId", a.DeviceID, b.DeviceID, InBand),
				SubVendorID:     m.str(p+".subVendorId", a.SubVendorID, b.SubVendorID, InBand),
				SubDeviceID:     m.str(p+".subDeviceId", a.SubDeviceID, b.SubDeviceID, InBand),
				Class:           m.str(p+".class", a.Class, b.Class, InBand),
				Vendor:          m.str(p+".vendor", a.Vendor, b.Vendor, InBand),
				Device:          m.str(p+".device", a.Device, b.Device, InBand),
				Driver:          m.str(p+".driver", a.Driver, b.Driver, InBand),
				Slot:            m.str(p+".slot", a.Slot, b.Slot, InBand),
				LinkSpeedGTs:    m.flt(p+".linkSpeedGTs", a.LinkSpeedGTs, b.LinkSpeedGTs, InBand),
				MaxLinkSpeedGTs: m.flt(p+".maxLinkSpeedGTs", a.MaxLinkSpeedGTs, b.MaxLinkSpeedGTs, InBand),
				LinkWidth:       m.num(p+".linkWidth", a.LinkWidth, b.LinkWidth, InBand),
				MaxLinkWidth:    m.num(p+".maxLinkWidth", a.MaxLinkWidth, b.MaxLinkWidth, InBand),
			}
		})

	out.NICs = mergeList(m, "nics", in.NICs, oob.NICs, InBand,
		func(n NIC) []string { return keys(strings.ToLower(n.MAC)) },
		func(m *merger, p string, a, b NIC) NIC {
			n := NIC{
				Name:          m.str(p+".name", a.Name, b.Name, InBand),
				MAC:           m.str(p+".mac", a.MAC, b.MAC, InBand),
				Vendor:        m.str(p+".vendor", a.Vendor, b.Vendor, InBand),
				Model:         m.str(p+".model", a.Model, b.Model, InBand),
				Driver:        m.str(p+".driver", a.Driver, b.Driver, InBand),
				DriverVersion: m.str(p+".driverVersion", a.DriverVersion, b.DriverVersion, InBand),
				Firmware:      m.str(p+".firmware", a.Firmware, b.Firmware, InBand),
				SpeedMbps:     m.num(p+".speedMbps", a.SpeedMbps, b.SpeedMbps, InBand),
				LinkUp:        a.LinkUp || b.LinkUp,
				PCIAddress:    m.str(p+".pciAddress", a.PCIAddress, b.PCIAddress, InBand),
				Slot:          m.str(p+".slot", a.Slot, b.Slot, InBand),
				LLDP:          a.LLDP,
			}
			if n.LLDP == nil && b.LLDP != nil {
				l := *b.LLDP
				n.LLDP = &l
			}
			return n
		})

	out.Disks = mergeList(m, "disks", in.Disks, oob.Disks, InBand,
		func(d BlockDevice) []string { return keys(strings.ToLower(d.Serial), strings.ToLower(d.WWN)) },
		func(m *merger, p string, a, b BlockDevice) BlockDevice {
			return BlockDevice{
				Name:       m.str(p+".name", a.Name, b.Name, InBand),
				Model:      m.str(p+".model", a.Model, b.Model, InBand),
				Vendor:     m.str(p+".vendor", a.Vendor, b.Vendor, InBand),
				Serial:     m.str(p+".serial", a.Serial, b.Serial, InBand),
				WWN:        m.str(p+".wwn", a.WWN, b.WWN, InBand),
				SizeBytes:  m.u64(p+".sizeBytes", a.SizeBytes, b.SizeBytes, InBand),
				Type:       DiskType(m.str(p+".type", string(a.Type), string(b.Type), InBand)),
				Firmware:   m.str(p+".firmware", a.Firmware, b.Firmware, InBand),
				PCIAddress: m.str(p+".pciAddress", a.PCIAddress, b.PCIAddress, InBand),
				Slot:       m.str(p+".slot", a.Slot, b.Slot, InBand),
			}
		})

	out.GPUs = mergeList(m, "gpus", in.GPUs, oob.GPUs, InBand,
		func(g GPU) []string {
			return keys(strings.ToLower(g.UUID), strings.ToLower(g.Serial), strings.ToLower(g.PCIAddress))
		},
		func(m *merger, p string, a, b GPU) GPU {
			return GPU{
				Index:           a.Index,
				Name:            m.str(p+".name", a.Name, b.Name, InBand),
				UUID:            m.str(p+".uuid", a.UUID, b.UUID, InBand),
				Serial:          m.str(p+".serial", a.Serial, b.Serial, InBand),
				MemoryBytes:     m.u64(p+".memoryBytes", a.MemoryBytes, b.MemoryBytes, InBand),
				VBIOS:           m.str(p+".vbios", a.VBIOS, b.VBIOS, InBand),
				PCIAddress:      m.str(p+".pciAddress", a.PCIAddress, b.PCIAddress, InBand),
				Slot:            m.str(p+".slot", a.Slot, b.Slot, InBand),
				PCIeGen:         m.num(p+".pcieGen", a.PCIeGen, b.PCIeGen, InBand),
				MaxPCIeGen:      m.num(p+".maxPcieGen", a.MaxPCIeGen, b.MaxPCIeGen, InBand),
				PCIeWidth:       m.num(p+".pcieWidth", a.PCIeWidth, b.PCIeWidth, InBand),
				MaxPCIeWidth:    m.num(p+".maxPcieWidth", a.MaxPCIeWidth, b.MaxPCIeWidth, InBand),
				ECC:             ECCMode(m.str(p+".ecc", string(a.ECC), string(b.ECC), InBand)),
				ECCPending:      ECCMode(m.str(p+".eccPending", string(a.ECCPending), string(b.ECCPending), InBand)),
				NVLinkUp:        m.num(p+".nvlinkUp", a.NVLinkUp, b.NVLinkUp, InBand),
				NVLinkTotal:     m.num(p+".nvlinkTotal", a.NVLinkTotal, b.NVLinkTotal, InBand),
				DriverVersion:   m.str(p+".driverVersion", a.DriverVersion, b.DriverVersion, InBand),
				InfoROM:         m.str(p+".inforom", a.InfoROM, b.InfoROM, InBand),
				PowerLimitWatts: m.num(p+".powerLimitWatts", a.PowerLimitWatts, b.PowerLimitWatts, InBand),
			}
		})
	out.GPUDriverError = in.GPUDriverError

	// Firmware: union by ID, out-of-band first.
	out.Firmware = append([]FirmwareComponent(nil), oob.Firmware...)
	seen := map[string]int{}
	for i, c := range out.Firmware {
		seen[strings.ToLower(c.ID)] = i
	}
	for _, c := range in.Firmware {
		i, ok := seen[strings.ToLower(c.ID)]
		if !ok {
			out.Firmware = append(out.Firmware, c)
			continue
		}
		o := out.Firmware[i]
		p := "firmware[" + o.ID + "]"
		out.Firmware[i] = FirmwareComponent{
			ID:      o.ID,
			Name:    m.str(p+".name", c.Name, o.Name, OutOfBand),
			Version: m.str(p+".version", c.Version, o.Version, OutOfBand),
			Device:  m.str(p+".device", c.Device, o.Device, OutOfBand),
		}
	}
	if len(out.Firmware) == 0 {
		out.Firmware = nil
	}
	out.Conflicts = m.conflicts
	return out
}

// merger accumulates the conflicts of one Merge.
type merger struct{ conflicts []Conflict }

func (m *merger) add(field, in, oob string, keep Source) {
	m.conflicts = append(m.conflicts, Conflict{Field: field, InBand: in, OutOfBand: oob, Kept: keep})
}

// pick returns the preferred value unless it is empty, recording a conflict
// when both are set and differ.
func pick[T comparable](m *merger, field string, in, oob T, keep Source, differ func(a, b T) bool, format func(T) string) T {
	var zero T
	switch {
	case in == zero:
		return oob
	case oob == zero:
		return in
	}
	if differ(in, oob) {
		m.add(field, format(in), format(oob), keep)
	}
	if keep == InBand {
		return in
	}
	return oob
}

func (m *merger) str(field, in, oob string, keep Source) string {
	in, oob = strings.TrimSpace(in), strings.TrimSpace(oob)
	return pick(m, field, in, oob, keep, func(a, b string) bool { return !strings.EqualFold(a, b) }, func(s string) string { return s })
}

func (m *merger) num(field string, in, oob int, keep Source) int {
	return pick(m, field, in, oob, keep, func(a, b int) bool { return a != b }, strconv.Itoa)
}

func (m *merger) u64(field string, in, oob uint64, keep Source) uint64 {
	return pick(m, field, in, oob, keep, func(a, b uint64) bool { return a != b }, func(v uint64) string { return strconv.FormatUint(v, 10) })
}

func (m *merger) flt(field string, in, oob float64, keep Source) float64 {
	return pick(m, field, in, oob, keep, func(a, b float64) bool { return a != b }, func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) })
}

// mergeList merges two lists of items as Merge documents: keys gives an
// item's identities (empty strings ignored), fill merges a matched pair.
func mergeList[T any](m *merger, field string, in, oob []T, keep Source, keys func(T) []string, fill func(m *merger, path string, in, oob T) T) []T {
	pref, other := in, oob
	if keep == OutOfBand {
		pref, other = oob, in
	}
	if len(pref) == 0 {
		if len(other) == 0 {
			return nil
		}
		return append([]T(nil), other...)
	}
	used := make([]bool, len(other))
	match := make([]int, len(pref))
	// Pass 1: by identity.
	for i, p := range pref {
		match[i] = -1
		pk := keys(p)
	search:
		for j, o := range other {
			if used[j] {
				continue
			}
			for _, ok := range keys(o) {
				for _, k := range pk {
					if k == ok {
						match[i], used[j] = j, true
						break search
					}
				}
			}
		}
	}
	// Pass 2: items with no identity in common are paired in order, but
	// only with items whose identities cannot contradict them.
	for i, p := range pref {
		if match[i] >= 0 {
			continue
		}
		for j, o := range other {
			if !used[j] && !(len(keys(p)) > 0 && len(keys(o)) > 0) {
				match[i], used[j] = j, true
				break
			}
		}
	}
	out := make([]T, len(pref))
	for i, p := range pref {
		path := fmt.Sprintf("%s[%s]", field, label(keys(p), i))
		if match[i] < 0 {
			out[i] = p
			continue
		}
		o := other[match[i]]
		if keep == InBand {
			out[i] = fill(m, path, p, o)
		} else {
			out[i] = fill(m, path, o, p)
		}
	}
	for j, o := range other {
		if used[j] {
			continue
		}
		l := "reported " + label(keys(o), j)
		if d, ok := any(o).(interface{ describe() string }); ok {
			l = "reported " + d.describe()
		}
		if keep == InBand {
			m.add(field, "(absent)", l, keep)
		} else {
			m.add(field, l, "(absent)", keep)
		}
	}
	return out
}

func keys(ks ...string) []string {
	var out []string
	for _, k := range ks {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

func label(ks []string, i int) string {
	if len(ks) > 0 {
		return ks[0]
	}
	return "#" + strconv.Itoa(i)
}

// slotKey normalises a slot locator so that "DIMM_A1", "DIMM A1" and
// "dimm-a1" are the same slot.
func slotKey(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// first returns a unless it is empty: for identity fields, which matched.
func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// describe names an item that only one source reported, for its Conflict.
func (g GPU) describe() string {
	return describeParts(g.Slot, g.PCIAddress, g.Serial, g.UUID, g.Name)
}

func (n NIC) describe() string { return describeParts(n.Slot, n.Name, n.PCIAddress, n.MAC) }

func (d BlockDevice) describe() string {
	return describeParts(d.Slot, d.Name, d.Serial, d.Model)
}

func (d DIMM) describe() string { return describeParts(d.Slot, d.Serial) }

func describeParts(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "an item without identity"
	}
	return strings.Join(out, " ")
}
