package collect

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

const netClass = "/sys/class/net"

// collectNICs lists the physical network ports: interfaces backed by a
// device (bridges, bonds, VLANs, tunnels and loopback have none).
func collectNICs(r *reader, inv *inventory.Inventory) ([]string, error) {
	entries, err := os.ReadDir(r.path(netClass))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", netClass, err)
	}
	pciByAddr := map[string]inventory.PCIDevice{}
	for _, d := range inv.PCI {
		pciByAddr[d.Address] = d
	}
	var nics []inventory.NIC
	var notes []string
	for _, e := range entries {
		name := e.Name()
		dir := netClass + "/" + name + "/"
		if !r.exists(dir + "device") {
			continue
		}
		n := inventory.NIC{
			Name:       name,
			MAC:        strings.ToLower(r.str(dir + "address")),
			Driver:     r.linkBase(dir + "device/driver"),
			PCIAddress: r.pciAddressOf(dir + "device"),
		}
		// The permanent address survives a bond or a changed MAC.
		if p := strings.ToLower(r.str(dir + "bonding_slave/perm_hwaddr")); p != "" {
			n.MAC = p
		}
		if n.Driver != "" {
			n.DriverVersion = r.str("/sys/module/" + strings.ReplaceAll(n.Driver, "-", "_") + "/version")
		}
		carrier := r.str(dir + "carrier")
		n.LinkUp = carrier == "1" || carrier == "" && r.str(dir+"operstate") == "up"
		if n.LinkUp {
			if s := r.int(dir + "speed"); s > 0 && s < 10_000_000 {
				n.SpeedMbps = int(s)
			}
		}
		if r.nicInfo != nil {
			dv, fw, err := r.nicInfo(name)
			if err != nil {
				notes = append(notes, err.Error())
			}
			if n.DriverVersion == "" {
				n.DriverVersion = dv
			}
			n.Firmware = fw
		}
		if n.Firmware == "" {
			// mlx5 and other RDMA NICs also export it in sysfs.
			if ib, err := os.ReadDir(r.path(dir + "device/infiniband")); err == nil && len(ib) > 0 {
				n.Firmware = firmwareVersion(r.str(dir + "device/infiniband/" + ib[0].Name() + "/fw_ver"))
			}
		}
		if d, ok := pciByAddr[n.PCIAddress]; ok {
			n.Vendor, n.Model, n.Slot = d.Vendor, d.Device, d.Slot
		}
		nics = append(nics, n)
	}
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	inv.NICs = nics
	if len(nics) == 0 {
		return notes, fmt.Errorf("no network interface backed by a device in %s", netClass)
	}
	return notes, nil
}
