package collect

import (
	"errors"
	"strconv"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

const dmiDir = "/sys/class/dmi/id"

// collectDMI reads the SMBIOS identity the kernel exports in
// /sys/class/dmi/id. The serial numbers there are readable by root only: an
// agent not running as root reports them empty.
func collectDMI(r *reader, inv *inventory.Inventory) ([]string, error) {
	if !r.exists(dmiDir) {
		return nil, errors.New(dmiDir + " absent: the firmware exports no SMBIOS (a virtual machine without SMBIOS, or a kernel without CONFIG_DMIID); system, board, chassis and BIOS identity come from the SMBIOS tables if present")
	}
	f := func(name string) string { return r.str(dmiDir + "/" + name) }
	inv.System = inventory.System{
		Vendor: f("sys_vendor"),
		Model:  f("product_name"),
		SKU:    f("product_sku"),
		Serial: f("product_serial"),
		UUID:   f("product_uuid"),
		Family: f("product_family"),
	}
	inv.Baseboard = inventory.Baseboard{
		Vendor:  f("board_vendor"),
		Model:   f("board_name"),
		Version: f("board_version"),
		Serial:  f("board_serial"),
	}
	inv.Chassis = inventory.Chassis{
		Vendor:   f("chassis_vendor"),
		Type:     chassisTypeName(f("chassis_type")),
		Serial:   f("chassis_serial"),
		AssetTag: f("chassis_asset_tag"),
	}
	inv.BIOS = inventory.BIOS{
		Vendor:  f("bios_vendor"),
		Version: f("bios_version"),
		Date:    f("bios_date"),
	}
	var notes []string
	if inv.System.Serial == "" && r.exists(dmiDir+"/sys_vendor") && !r.readable(dmiDir+"/product_serial") {
		notes = append(notes, "product_serial unreadable (the agent must run as root to read serial numbers)")
	}
	return notes, nil
}

// chassisTypeName maps the SMBIOS chassis type number the kernel exports
// ("23") to its name as dmidecode prints it ("Rack Mount Chassis").
func chassisTypeName(s string) string {
	if s == "" {
		return ""
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return s
	}
	names := []string{
		1: "Other", 2: "Unknown", 3: "Desktop", 4: "Low Profile Desktop", 5: "Pizza Box",
		6: "Mini Tower", 7: "Tower", 8: "Portable", 9: "Laptop", 10: "Notebook",
		11: "Hand Held", 12: "Docking Station", 13: "All In One", 14: "Sub Notebook",
		15: "Space-saving", 16: "Lunch Box", 17: "Main Server Chassis", 18: "Expansion Chassis",
		19: "Sub Chassis", 20: "Bus Expansion Chassis", 21: "Peripheral Chassis", 22: "RAID Chassis",
		23: "Rack Mount Chassis", 24: "Sealed-case PC", 25: "Multi-system", 26: "CompactPCI",
		27: "AdvancedTCA", 28: "Blade", 29: "Blade Enclosing", 30: "Tablet", 31: "Convertible",
		32: "Detachable", 33: "IoT Gateway", 34: "Embedded PC", 35: "Mini PC", 36: "Stick PC",
	}
	n &= 0x7f // bit 7 is the chassis lock
	if n <= 0 || n >= len(names) || names[n] == "" {
		return s
	}
	return names[n]
}
