package collect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/u-root/u-root/pkg/smbios"
)

const smbiosTables = "/sys/firmware/dmi/tables/DMI"

// smbiosProc is what SMBIOS type 4 says of one processor socket.
type smbiosProc struct {
	socket  string
	maxMHz  int
	cores   int
	threads int
}

// collectSMBIOS decodes the raw SMBIOS structure table: type 17 memory
// devices give the DIMMs (the only source for them in-band), type 4 the
// socket names and rated speeds, and types 0–3 fill identity fields that
// /sys/class/dmi/id left empty.
func collectSMBIOS(r *reader, inv *inventory.Inventory) ([]string, error) {
	data, err := os.ReadFile(r.path(smbiosTables))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errors.New(smbiosTables + " absent: DIMMs not reported (the firmware publishes no SMBIOS tables, or the kernel is older than 4.2)")
	case errors.Is(err, fs.ErrPermission):
		return nil, errors.New(smbiosTables + " unreadable: DIMMs not reported; run the agent as root")
	case err != nil:
		return nil, fmt.Errorf("read %s: %w; DIMMs not reported", smbiosTables, err)
	}
	return applySMBIOS(data, r, inv), nil
}

// applySMBIOS decodes a structure table into inv (and r.procs).
func applySMBIOS(data []byte, r *reader, inv *inventory.Inventory) []string {
	tables, perr := parseSMBIOS(data)
	var notes []string
	if perr != nil {
		notes = append(notes, fmt.Sprintf("%s: %v (kept the %d structures before it)", smbiosTables, perr, len(tables)))
	}
	var dimms []inventory.DIMM
	for _, t := range tables {
		switch t.Type {
		case smbios.TableTypeBIOSInfo:
			if b, err := smbios.ParseBIOSInfo(t); err == nil {
				fill(&inv.BIOS.Vendor, b.Vendor)
				fill(&inv.BIOS.Version, b.Version)
				fill(&inv.BIOS.Date, b.ReleaseDate)
			}
		case smbios.TableTypeSystemInfo:
			if s, err := smbios.ParseSystemInfo(t); err == nil {
				fill(&inv.System.Vendor, s.Manufacturer)
				fill(&inv.System.Model, s.ProductName)
				fill(&inv.System.Serial, s.SerialNumber)
				fill(&inv.System.SKU, s.SKUNumber)
				fill(&inv.System.Family, s.Family)
				if u := s.UUID.String(); !strings.HasPrefix(u, "Not ") {
					fill(&inv.System.UUID, u)
				}
			}
		case smbios.TableTypeBaseboardInfo:
			if b, err := smbios.ParseBaseboardInfo(t); err == nil {
				fill(&inv.Baseboard.Vendor, b.Manufacturer)
				fill(&inv.Baseboard.Model, b.Product)
				fill(&inv.Baseboard.Version, b.Version)
				fill(&inv.Baseboard.Serial, b.SerialNumber)
			}
		case smbios.TableTypeChassisInfo:
			if c, err := smbios.ParseChassisInfo(t); err == nil {
				fill(&inv.Chassis.Vendor, c.Manufacturer)
				fill(&inv.Chassis.Type, c.Type.String())
				fill(&inv.Chassis.Serial, c.SerialNumber)
				fill(&inv.Chassis.AssetTag, c.AssetTagNumber)
			}
		case smbios.TableTypeProcessorInfo:
			p, err := smbios.ParseProcessorInfo(t)
			if err != nil || p.Type != smbios.ProcessorTypeCentralProcessor || p.Status&0x40 == 0 {
				continue // not a CPU, or an empty socket
			}
			r.procs = append(r.procs, smbiosProc{
				socket:  strings.TrimSpace(p.SocketDesignation),
				maxMHz:  int(p.MaxSpeed),
				cores:   p.GetCoreCount(),
				threads: p.GetThreadCount(),
			})
		case smbios.TableTypeMemoryDevice:
			md, err := smbios.NewMemoryDevice(t)
			if err != nil {
				notes = append(notes, fmt.Sprintf("memory device structure 0x%04x: %v", t.Handle, err))
				continue
			}
			dimms = append(dimms, dimmOf(md))
		}
	}
	if len(dimms) == 0 {
		notes = append(notes, "no SMBIOS type 17 memory devices: DIMMs not reported")
	}
	inv.Memory.DIMMs = dimms
	return notes
}

// parseSMBIOS splits the structure table into its structures, up to the
// end-of-table structure or the first malformed one.
func parseSMBIOS(data []byte) ([]*smbios.Table, error) {
	var out []*smbios.Table
	total := len(data)
	for len(data) > 0 {
		t, rest, err := smbios.ParseTable(data)
		if t != nil && t.Type == smbios.TableTypeEndOfTable {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("malformed structure at byte %d: %w", total-len(data), err)
		}
		out = append(out, t)
		if len(rest) >= len(data) {
			return out, errors.New("structure table does not advance")
		}
		data = rest
	}
	return out, nil
}

// dimmOf maps an SMBIOS type 17 memory device onto a DIMM slot.
func dimmOf(md *smbios.MemoryDevice) inventory.DIMM {
	d := inventory.DIMM{Slot: strings.TrimSpace(md.DeviceLocator)}
	if d.Slot == "" {
		d.Slot = strings.TrimSpace(md.BankLocator)
	}
	size := md.GetSizeBytes()
	if size == 0 || md.Size == 0xffff { // 0: no module installed; 0xffff: unknown
		d.Empty = size == 0
		return d
	}
	d.SizeBytes = size
	speed := int(md.ConfiguredSpeed)
	if speed == 0 || speed == 0xffff {
		speed = int(md.Speed)
	}
	if speed != 0xffff {
		d.SpeedMTs = speed
	}
	if md.Type != smbios.MemoryDeviceTypeUnknown && md.Type != smbios.MemoryDeviceTypeOther && md.Type != 0 {
		d.Type = md.Type.String()
	}
	d.Manufacturer = strings.TrimSpace(md.Manufacturer)
	d.PartNumber = strings.TrimSpace(md.PartNumber)
	d.Serial = strings.TrimSpace(md.SerialNumber)
	return d
}

// fill sets *dst to v when *dst is empty.
func fill(dst *string, v string) {
	if *dst == "" {
		*dst = strings.TrimSpace(v)
	}
}
