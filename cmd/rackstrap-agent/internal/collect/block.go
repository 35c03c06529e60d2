package collect

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

const blockClass = "/sys/block"

// diskName matches the whole disks worth reporting: NVMe namespaces,
// SCSI/SATA/SAS, virtio and Xen disks, MMC. Loop, RAM, zram, device-mapper,
// MD and optical devices are not disks of the machine.
var diskName = regexp.MustCompile(`^(nvme\d+n\d+|sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|mmcblk\d+)$`)

// collectDisks lists block devices with model, serial, size and kind.
func collectDisks(r *reader, inv *inventory.Inventory) ([]string, error) {
	entries, err := os.ReadDir(r.path(blockClass))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", blockClass, err)
	}
	var disks []inventory.BlockDevice
	for _, e := range entries {
		name := e.Name()
		if !diskName.MatchString(name) {
			continue
		}
		dir := blockClass + "/" + name + "/"
		d := inventory.BlockDevice{
			Name:       name,
			SizeBytes:  uint64(max(r.int(dir+"size"), 0)) * 512, // always 512-byte sectors
			PCIAddress: r.pciAddressOf(dir + "device"),
			Model:      r.str(dir + "device/model"),
			Vendor:     r.str(dir + "device/vendor"),
		}
		switch {
		case strings.HasPrefix(name, "nvme"):
			d.Type = inventory.DiskNVMe
			d.Serial = r.str(dir + "device/serial")
			d.Firmware = r.str(dir + "device/firmware_rev")
			d.WWN = r.str(dir + "wwid")
			d.Vendor = "" // NVMe controllers have no vendor attribute
		case strings.HasPrefix(name, "vd"), strings.HasPrefix(name, "xvd"):
			d.Type = inventory.DiskVirtual
			d.Serial = r.str(dir + "serial")
			d.Vendor = ""
			d.Model = ""
		default:
			d.Serial = scsiSerial(r, dir)
			d.Firmware = r.str(dir + "device/rev")
			d.WWN = r.str(dir + "device/wwid")
			switch {
			case d.Vendor == "QEMU" || strings.HasPrefix(d.Model, "QEMU"):
				d.Type = inventory.DiskVirtual
			case r.str(dir+"queue/rotational") == "1":
				d.Type = inventory.DiskHDD
			case r.str(dir+"queue/rotational") == "0":
				d.Type = inventory.DiskSSD
			}
		}
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	inv.Disks = disks
	return nil, nil
}

// scsiSerial reads a SCSI/SATA disk's unit serial number from its VPD page
// 0x80 (4-byte header, then the serial), which the kernel exports without
// udev.
func scsiSerial(r *reader, dir string) string {
	b, err := os.ReadFile(r.path(dir + "device/vpd_pg80"))
	if err != nil || len(b) < 4 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	b = b[4:]
	if n < len(b) {
		b = b[:n]
	}
	return strings.TrimSpace(strings.Trim(string(b), "\x00"))
}
