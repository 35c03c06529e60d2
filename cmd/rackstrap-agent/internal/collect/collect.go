// Package collect takes a host's in-band hardware inventory from the kernel's
// views of it: /sys/class/dmi/id and the raw SMBIOS tables
// (/sys/firmware/dmi/tables/DMI) for system, board, chassis, BIOS and DIMMs,
// /proc/cpuinfo for processors, /sys/devices/system/memory and /proc/meminfo
// for memory, /sys/bus/pci/devices for PCI functions and their link state,
// /sys/class/net for NICs and /sys/block for disks.
//
// Every path is read below a root directory ("/" on a real host), so tests
// feed a fixture tree. Each collector runs on its own: one that fails (or
// panics on malformed firmware tables) leaves a note and the others still
// fill the inventory.
//
// Why not github.com/jaypipes/ghw: in the netboot initramfs there is no udev
// database (ghw takes disk model and serial from /run/udev/data), often no
// pci.ids (ghw's PCI collector fails without one), no ethtool binary (ghw's
// NIC collector shells out to it), and ghw reads neither PCIe link state nor
// SMBIOS type 17 DIMMs on Linux. The SMBIOS tables are decoded with u-root's
// pkg/smbios, which is already a dependency of the image builder.
package collect

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Options says where and how to collect.
type Options struct {
	// Root is the directory below which /sys and /proc are read: "/" on a
	// real host, a fixture tree in tests. Empty means "/".
	Root string
	// Collector is written into Inventory.Collector ("rackstrap-agent v0.3").
	Collector string
	// Now stamps CollectedAt; nil means time.Now.
	Now func() time.Time
	// NICInfo returns a NIC's driver and firmware versions as the kernel's
	// ethtool interface reports them. Nil means the real ioctl when Root is
	// "/", and nothing for a fixture tree.
	NICInfo func(name string) (driverVersion, firmware string, err error)
}

// Result is an inventory and the notes of what could not be read.
type Result struct {
	Inventory inventory.Inventory
	// Notes say, one line each, what a collector could not read and why
	// ("dmi: /sys/class/dmi/id absent; …"). Empty when everything was read.
	Notes []string
}

// collector fills part of an inventory. It returns notes for facts it could
// not read but that do not stop it, and an error when it read nothing.
type collector struct {
	name string
	run  func(r *reader, inv *inventory.Inventory) (notes []string, err error)
}

// collectors run in this order: SMBIOS before CPUs (socket names, rated
// speed) and before memory (DIMMs give the installed total).
var collectors = []collector{
	{"dmi", collectDMI},
	{"smbios", collectSMBIOS},
	{"cpu", collectCPUs},
	{"memory", collectMemory},
	{"pci", collectPCI},
	{"nic", collectNICs},
	{"disk", collectDisks},
}

// Collect reads the inventory below opts.Root. It never fails as a whole:
// what a collector could not read is in Result.Notes.
func Collect(ctx context.Context, opts Options) Result {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	res := Result{Inventory: inventory.Inventory{
		Source:      inventory.InBand,
		CollectedAt: now().UTC(),
		Collector:   opts.Collector,
	}}
	r := &reader{root: root, nicInfo: opts.NICInfo}
	if r.nicInfo == nil && filepath.Clean(root) == "/" {
		r.nicInfo = ethtoolInfo
	}
	for _, c := range collectors {
		if err := ctx.Err(); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: not collected: %v", c.name, err))
			continue
		}
		notes, err := runCollector(c, r, &res.Inventory)
		for _, n := range notes {
			res.Notes = append(res.Notes, c.name+": "+n)
		}
		if err != nil {
			res.Notes = append(res.Notes, c.name+": "+err.Error())
		}
	}
	return res
}

// runCollector runs one collector and turns a panic (malformed firmware
// tables, a kernel that reports nonsense) into an error.
func runCollector(c collector, r *reader, inv *inventory.Inventory) (notes []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("collector panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return c.run(r, inv)
}

// reader reads files below a root directory.
type reader struct {
	root  string
	procs []smbiosProc // SMBIOS type 4, filled by the smbios collector
	// nicInfo is Options.NICInfo (nil: not asked).
	nicInfo func(name string) (driverVersion, firmware string, err error)
}

// path maps an absolute host path ("/sys/block") below the root.
func (r *reader) path(p string) string { return filepath.Join(r.root, p) }

// str reads a sysfs attribute, trimmed; "" when absent or unreadable.
func (r *reader) str(p string) string {
	b, err := os.ReadFile(r.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// int reads a decimal sysfs attribute; 0 when absent or not a number.
func (r *reader) int(p string) int64 {
	v, err := strconv.ParseInt(r.str(p), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// exists says whether a path exists below the root.
func (r *reader) exists(p string) bool {
	_, err := os.Stat(r.path(p))
	return err == nil
}

// linkBase is the last element of a symlink's target ("nvme" for
// …/device/driver -> ../../bus/pci/drivers/nvme); "" when not a link.
func (r *reader) linkBase(p string) string {
	t, err := os.Readlink(r.path(p))
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// pciAddressOf resolves a sysfs device path and returns the PCI address of
// the nearest PCI function it sits under ("0000:00:05.0" for
// /sys/block/vda/device -> …/0000:00:05.0/virtio2), or "" when it is not on
// PCI.
func (r *reader) pciAddressOf(p string) string {
	real, err := filepath.EvalSymlinks(r.path(p))
	if err != nil {
		return ""
	}
	parts := strings.Split(filepath.ToSlash(real), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if isPCIAddress(parts[i]) {
			return strings.ToLower(parts[i])
		}
	}
	return ""
}

// isPCIAddress matches "dddd:bb:dd.f" in hex.
func isPCIAddress(s string) bool {
	if len(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' {
		return false
	}
	for i, c := range s {
		if i == 4 || i == 7 || i == 10 {
			continue
		}
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// readable says whether a file below the root can be opened for reading.
func (r *reader) readable(p string) bool {
	f, err := os.Open(r.path(p))
	if err != nil {
		return false
	}
	f.Close()
	return true
}
