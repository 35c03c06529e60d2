package collect

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

const pciDevices = "/sys/bus/pci/devices"

// collectPCI lists every PCI function with its ids, driver, slot label and
// PCIe link state (trained and maximum speed and width).
func collectPCI(r *reader, inv *inventory.Inventory) ([]string, error) {
	entries, err := os.ReadDir(r.path(pciDevices))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", pciDevices, err)
	}
	slots := pciSlots(r)
	ids := newPCIIDs(r)
	var devs []inventory.PCIDevice
	for _, e := range entries {
		addr := strings.ToLower(e.Name())
		if !isPCIAddress(addr) {
			continue
		}
		dir := pciDevices + "/" + e.Name() + "/"
		d := inventory.PCIDevice{
			Address:         addr,
			VendorID:        inventory.NormalizeHexID(r.str(dir+"vendor"), 4),
			DeviceID:        inventory.NormalizeHexID(r.str(dir+"device"), 4),
			SubVendorID:     hexOrEmpty(r.str(dir+"subsystem_vendor"), 4),
			SubDeviceID:     hexOrEmpty(r.str(dir+"subsystem_device"), 4),
			Class:           hexOrEmpty(r.str(dir+"class"), 6),
			Driver:          r.linkBase(dir + "driver"),
			LinkSpeedGTs:    parseLinkSpeed(r.str(dir + "current_link_speed")),
			MaxLinkSpeedGTs: parseLinkSpeed(r.str(dir + "max_link_speed")),
			LinkWidth:       parseLinkWidth(r.str(dir + "current_link_width")),
			MaxLinkWidth:    parseLinkWidth(r.str(dir + "max_link_width")),
		}
		if s, ok := slots[addr[:len(addr)-2]]; ok {
			d.Slot = s
		}
		d.Vendor, d.Device = ids.names(d.VendorID, d.DeviceID)
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Address < devs[j].Address })
	inv.PCI = devs
	var notes []string
	if len(devs) > 0 && !ids.found {
		notes = append(notes, "no pci.ids database: vendor and device names not reported (ids are)")
	}
	return notes, nil
}

// hexOrEmpty normalizes a sysfs hex attribute ("0x030200"), "" if absent.
func hexOrEmpty(s string, width int) string {
	if s == "" {
		return ""
	}
	return inventory.NormalizeHexID(s, width)
}

// parseLinkSpeed reads a sysfs link speed ("16.0 GT/s PCIe", "8 GT/s",
// "2.5 GT/s", "Unknown") as GT/s; 0 when unknown.
func parseLinkSpeed(s string) float64 {
	f := strings.Fields(s)
	if len(f) < 2 || f[1] != "GT/s" {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// parseLinkWidth reads a sysfs link width ("16", "x16"); 0 when unknown
// (the kernel reports 255 for an untrained link on some devices).
func parseLinkWidth(s string) int {
	v, err := strconv.Atoi(strings.TrimPrefix(s, "x"))
	if err != nil || v <= 0 || v > 32 {
		return 0
	}
	return v
}

// pciSlots maps "dddd:bb:dd" to the physical slot label from
// /sys/bus/pci/slots/<label>/address.
func pciSlots(r *reader) map[string]string {
	out := map[string]string{}
	entries, err := os.ReadDir(r.path("/sys/bus/pci/slots"))
	if err != nil {
		return out
	}
	for _, e := range entries {
		if a := strings.ToLower(r.str("/sys/bus/pci/slots/" + e.Name() + "/address")); a != "" {
			out[a] = e.Name()
		}
	}
	return out
}

// pciIDs looks names up in the pci.ids database, when the host has one.
type pciIDs struct {
	found   bool
	vendors map[string]string
	devices map[string]string // "vvvv:dddd"
}

// newPCIIDs loads pci.ids from its usual places below the root.
func newPCIIDs(r *reader) *pciIDs {
	ids := &pciIDs{vendors: map[string]string{}, devices: map[string]string{}}
	for _, p := range []string{"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"} {
		data, err := os.ReadFile(r.path(p))
		if err != nil {
			continue
		}
		ids.found = true
		ids.parse(string(data))
		break
	}
	return ids
}

// parse reads the vendor ("vvvv  Name") and device ("\tdddd  Name") lines
// of pci.ids; subsystem lines and the class section are skipped.
func (ids *pciIDs) parse(data string) {
	vendor := ""
	for line := range strings.Lines(data) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "C ") {
			return // the device class section follows the vendors
		}
		if line[0] != '\t' {
			id, name, ok := strings.Cut(line, "  ")
			if !ok || !isHex4(id) {
				vendor = ""
				continue
			}
			vendor = strings.ToLower(id)
			ids.vendors[vendor] = strings.TrimSpace(name)
			continue
		}
		if vendor == "" || strings.HasPrefix(line, "\t\t") {
			continue
		}
		id, name, ok := strings.Cut(line[1:], "  ")
		if ok && isHex4(id) {
			ids.devices[vendor+":"+strings.ToLower(id)] = strings.TrimSpace(name)
		}
	}
}

// names returns the vendor and device names of an id pair ("" if unknown).
func (ids *pciIDs) names(vendor, device string) (string, string) {
	return ids.vendors[vendor], ids.devices[vendor+":"+device]
}

// isHex4 matches a four-digit hex id.
func isHex4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}
