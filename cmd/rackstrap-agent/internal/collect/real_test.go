package collect

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
)

// TestCollectThisHost reads the machine the test runs on and checks what it
// found against what the kernel and Go's own view of the host say.
func TestCollectThisHost(t *testing.T) {
	t.Parallel()
	res := Collect(context.Background(), Options{Collector: "test"})
	inv := res.Inventory
	t.Logf("notes: %q", res.Notes)

	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	logical := bytes.Count(cpuinfo, []byte("\nprocessor\t:")) + map[bool]int{true: 1}[bytes.HasPrefix(cpuinfo, []byte("processor\t:"))]
	threads := 0
	for _, c := range inv.CPUs {
		threads += c.Threads
		if c.Model == "" || c.Cores == 0 || c.Cores > c.Threads {
			t.Errorf("cpu %+v: want a model and 0 < cores ≤ threads", c)
		}
	}
	if threads != logical {
		t.Errorf("threads over all sockets = %d, want the %d processors of /proc/cpuinfo", threads, logical)
	}

	meminfo, _ := os.ReadFile("/proc/meminfo")
	usable := memTotalKiB(meminfo) * 1024
	if inv.Memory.TotalBytes < usable || inv.Memory.TotalBytes > usable*2 {
		t.Errorf("memory total = %d, want between MemTotal %d and twice it", inv.Memory.TotalBytes, usable)
	}

	entries, err := os.ReadDir("/sys/bus/pci/devices")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.PCI) != len(entries) || len(inv.PCI) == 0 {
		t.Errorf("pci functions = %d, want the %d of /sys/bus/pci/devices", len(inv.PCI), len(entries))
	}

	// Every NIC's MAC is one Go's net package sees on an interface of the
	// same name.
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, i := range ifaces {
		byName[i.Name] = i.HardwareAddr.String()
	}
	if len(inv.NICs) == 0 {
		t.Error("no NIC found on this host")
	}
	for _, n := range inv.NICs {
		if byName[n.Name] != n.MAC {
			t.Errorf("nic %s mac = %q, net.Interfaces says %q", n.Name, n.MAC, byName[n.Name])
		}
		if n.Driver == "" {
			t.Errorf("nic %s has no driver", n.Name)
		}
		t.Logf("nic %s: driver %s %q firmware %q (ethtool ioctl)", n.Name, n.Driver, n.DriverVersion, n.Firmware)
	}

	// Every disk's size is what /proc/partitions says (in KiB).
	parts, _ := os.ReadFile("/proc/partitions")
	sizes := map[string]uint64{}
	for _, line := range strings.Split(string(parts), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 {
			var kib uint64
			for _, c := range f[2] {
				kib = kib*10 + uint64(c-'0')
			}
			sizes[f[3]] = kib * 1024
		}
	}
	if len(inv.Disks) == 0 {
		t.Error("no disk found on this host")
	}
	for _, d := range inv.Disks {
		if sizes[d.Name] != d.SizeBytes || d.SizeBytes == 0 {
			t.Errorf("disk %s size = %d, /proc/partitions says %d", d.Name, d.SizeBytes, sizes[d.Name])
		}
		if d.Type == "" {
			t.Errorf("disk %s has no type", d.Name)
		}
	}

	if hasNotePrefix(res.Notes, "nic: ethtool") {
		t.Errorf("the ethtool ioctl failed on this host: %q", res.Notes)
	}

	// DMI: when the kernel exports it, system identity is reported; when
	// not, a note says so.
	if _, err := os.Stat("/sys/class/dmi/id"); err == nil {
		if inv.System.Vendor == "" && inv.System.Model == "" {
			t.Error("/sys/class/dmi/id exists but no system vendor or model was read")
		}
	} else if !hasNotePrefix(res.Notes, "dmi: ") {
		t.Errorf("no DMI on this host and no note about it: %q", res.Notes)
	}
}

func hasNotePrefix(notes []string, p string) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}
