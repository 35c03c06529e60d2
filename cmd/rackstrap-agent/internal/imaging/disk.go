package imaging

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// diskName matches whole disks: NVMe namespaces, SCSI/SATA/SAS, virtio,
// Xen, IDE and MMC (not loop, RAM, zram, device-mapper, MD, optical).
var diskName = regexp.MustCompile(`^(nvme\d+n\d+|sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|mmcblk\d+)$`)

// Disk is a whole disk as sysfs describes it.
type Disk struct {
	Name string
	// Path is /dev/Name.
	Path      string
	SizeBytes int64
	// Excluded says why the disk cannot take the image ("" when it can).
	Excluded string
}

// Disks lists the whole disks below root's /sys/block, with the reason each
// one that may not be imaged is excluded: removable, read-only, empty, on
// USB (likely the boot medium), holding a mounted filesystem or swap
// (root's /proc/mounts and /proc/swaps), or held by device-mapper/MD.
func Disks(root string) ([]Disk, error) {
	if root == "" {
		root = "/"
	}
	block := filepath.Join(root, "sys/block")
	entries, err := os.ReadDir(block)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	inUse := mountedDevices(root)
	var disks []Disk
	for _, e := range entries {
		name := e.Name()
		if !diskName.MatchString(name) {
			continue
		}
		dir := filepath.Join(block, name)
		d := Disk{Name: name, Path: "/dev/" + name, SizeBytes: readInt(filepath.Join(dir, "size")) * 512}
		real, _ := filepath.EvalSymlinks(dir)
		switch {
		case readInt(filepath.Join(dir, "removable")) == 1:
			d.Excluded = "removable"
		case readInt(filepath.Join(dir, "ro")) == 1:
			d.Excluded = "read-only"
		case d.SizeBytes == 0:
			d.Excluded = "no medium (size 0)"
		case strings.Contains(real, "/usb"):
			d.Excluded = "on USB (the boot medium?)"
		case inUse[name] != "":
			d.Excluded = "holds " + inUse[name] + " (the boot medium?)"
		case hasEntries(filepath.Join(dir, "holders")):
			d.Excluded = "held by device-mapper or MD RAID"
		}
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// PickDisk returns the one disk that can take the image. It refuses to
// guess: with no candidate, or more than one, it fails and names them.
func PickDisk(root string) (string, error) {
	disks, err := Disks(root)
	if err != nil {
		return "", err
	}
	var ok, not []string
	var pick string
	for _, d := range disks {
		if d.Excluded != "" {
			not = append(not, fmt.Sprintf("%s: %s", d.Name, d.Excluded))
			continue
		}
		ok = append(ok, fmt.Sprintf("%s (%.1f GB)", d.Name, float64(d.SizeBytes)/1e9))
		pick = d.Path
	}
	notes := ""
	if len(not) > 0 {
		notes = "; not considered: " + strings.Join(not, ", ")
	}
	switch len(ok) {
	case 1:
		return pick, nil
	case 0:
		return "", fmt.Errorf("no disk can take the image%s; pass rackstrap.disk=/dev/NAME on the kernel command line (or --disk)", notes)
	}
	return "", fmt.Errorf("%d disks could take the image: %s; refusing to guess: pass rackstrap.disk=/dev/NAME on the kernel command line (or --disk)%s",
		len(ok), strings.Join(ok, ", "), notes)
}

// mountedDevices maps disk names to what uses them: a mounted filesystem
// or swap on the disk or one of its partitions.
func mountedDevices(root string) map[string]string {
	out := map[string]string{}
	scan := func(file, what string, field int) {
		f, err := os.Open(filepath.Join(root, file))
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) <= field {
				continue
			}
			dev, ok := strings.CutPrefix(fs[0], "/dev/")
			if !ok {
				continue
			}
			if disk := diskOf(dev); disk != "" && out[disk] == "" {
				if what == "a mounted filesystem" {
					out[disk] = fmt.Sprintf("the filesystem mounted on %s", fs[field])
				} else {
					out[disk] = what
				}
			}
		}
	}
	scan("proc/mounts", "a mounted filesystem", 1)
	scan("proc/swaps", "swap", 0)
	return out
}

var partSuffix = regexp.MustCompile(`^(.*\d)p\d+$|^(.*[a-z])\d+$`)

// diskOf maps a device name (sda2, nvme0n1p3, mmcblk0p1, vda) to its disk.
func diskOf(dev string) string {
	if diskName.MatchString(dev) {
		return dev
	}
	if m := partSuffix.FindStringSubmatch(dev); m != nil {
		d := m[1] + m[2]
		if diskName.MatchString(d) {
			return d
		}
	}
	return ""
}

func readInt(p string) int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func hasEntries(dir string) bool {
	e, err := os.ReadDir(dir)
	return err == nil && len(e) > 0
}
