// Package spec defines the Rackstrap OS image spec: a strict YAML document that
// names the base root filesystem, the ordered layers on top of it, the kernel
// and the GPU driver built for it, users, first-boot hooks and the outputs to
// build. Parse decodes bytes, Load reads a file, Lint reports every problem it
// can find with file:line:col positions and a remedy.
package spec

import (
	"fmt"
	"strconv"
	"strings"
)

// APIVersion is the only spec version this package reads.
const APIVersion = "rackstrap.io/image/v1"

// Spec is one image. Relative host paths in it are relative to Dir, the
// directory of the spec file. Absolute paths in kernel.*, boot.* and
// gpu_driver.modules name files inside the image being built.
type Spec struct {
	APIVersion string `yaml:"api_version" json:"api_version"`
	Name       string `yaml:"name" json:"name"`
	Version    string `yaml:"version" json:"version"`
	// SourceDateEpoch fixes every timestamp in every output (seconds since
	// 1970). When absent, the builder uses $SOURCE_DATE_EPOCH, else 0.
	SourceDateEpoch *int64 `yaml:"source_date_epoch,omitempty" json:"source_date_epoch,omitempty"`
	Hostname        string `yaml:"hostname,omitempty" json:"hostname,omitempty"`

	Base      Source     `yaml:"base" json:"base"`
	Layers    []Layer    `yaml:"layers,omitempty" json:"layers,omitempty"`
	Kernel    *Kernel    `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	GPUDriver *GPUDriver `yaml:"gpu_driver,omitempty" json:"gpu_driver,omitempty"`
	Users     []User     `yaml:"users,omitempty" json:"users,omitempty"`
	FirstBoot []Hook     `yaml:"first_boot,omitempty" json:"first_boot,omitempty"`
	// Agent is the rackstrap-agent binary, installed as /usr/bin/rackstrap-agent.
	Agent   string  `yaml:"agent,omitempty" json:"agent,omitempty"`
	Boot    Boot    `yaml:"boot,omitempty" json:"boot,omitempty"`
	Outputs Outputs `yaml:"outputs" json:"outputs"`

	// Dir is the directory relative host paths are resolved against.
	Dir string `yaml:"-" json:"-"`
	// File is the name the spec was read from (for messages).
	File string `yaml:"-" json:"-"`

	pos map[string]Pos
}

// Source is a tree of files: exactly one of Dir, Tarball or OCI.
type Source struct {
	// Dir is a directory on the build host; ownership and modes are kept.
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Tarball is a tar file, optionally gzip, zstd or xz compressed.
	Tarball string `yaml:"tarball,omitempty" json:"tarball,omitempty"`
	// OCI is a container image read from a local OCI layout or tarball.
	OCI *OCISource `yaml:"oci,omitempty" json:"oci,omitempty"`
}

// Kind names which source field is set, or "" for none.
func (s Source) Kind() string {
	switch {
	case s.Dir != "":
		return "dir"
	case s.Tarball != "":
		return "tarball"
	case s.OCI != nil:
		return "oci"
	}
	return ""
}

func (s Source) count() int {
	n := 0
	if s.Dir != "" {
		n++
	}
	if s.Tarball != "" {
		n++
	}
	if s.OCI != nil {
		n++
	}
	return n
}

// OCISource is an OCI image layout directory or an image tarball
// (`docker save`/`crane pull` format). No registry is ever contacted.
type OCISource struct {
	Layout  string `yaml:"layout,omitempty" json:"layout,omitempty"`
	Tarball string `yaml:"tarball,omitempty" json:"tarball,omitempty"`
	// Ref picks the image in a layout by its org.opencontainers.image.ref.name
	// annotation or by digest; optional when the layout holds one image.
	Ref string `yaml:"ref,omitempty" json:"ref,omitempty"`
	// Platform picks one image of an index, as os/arch (default linux/amd64).
	Platform string `yaml:"platform,omitempty" json:"platform,omitempty"`
}

// Layer is applied on top of the base in order. Exactly one of its sources
// (dir, tarball, oci, files, packages) is set.
type Layer struct {
	Name   string `yaml:"name" json:"name"`
	Source `yaml:",inline" json:",inline"`
	// Files are single files written by the spec.
	Files []File `yaml:"files,omitempty" json:"files,omitempty"`
	// Packages copies pre-fetched packages into the image, for first-boot
	// install by a hook; nothing is fetched.
	Packages *Packages `yaml:"packages,omitempty" json:"packages,omitempty"`
}

// File is one file in a files layer: content inline, from a host file, or a symlink.
type File struct {
	Path    string `yaml:"path" json:"path"`
	Content string `yaml:"content,omitempty" json:"content,omitempty"`
	Source  string `yaml:"source,omitempty" json:"source,omitempty"`
	Symlink string `yaml:"symlink,omitempty" json:"symlink,omitempty"`
	Mode    *Mode  `yaml:"mode,omitempty" json:"mode,omitempty"`
	UID     int    `yaml:"uid,omitempty" json:"uid,omitempty"`
	GID     int    `yaml:"gid,omitempty" json:"gid,omitempty"`
}

// Packages is a directory of pre-fetched package files.
type Packages struct {
	Dir string `yaml:"dir" json:"dir"`
	// Dest is where they go inside the image (default /var/lib/rackstrap/packages).
	Dest string `yaml:"dest,omitempty" json:"dest,omitempty"`
}

// Kernel is the kernel the image boots and its modules.
type Kernel struct {
	// Version is the kernel release (uname -r), e.g. 6.1.0-28-amd64.
	Version string `yaml:"version" json:"version"`
	// Image is the kernel (bzImage). Default /boot/vmlinuz-VERSION in the image.
	Image string `yaml:"image,omitempty" json:"image,omitempty"`
	// Initrd is the initramfs used by disk boot. Optional.
	Initrd string `yaml:"initrd,omitempty" json:"initrd,omitempty"`
	// Modules is a host directory or tarball holding lib/modules/VERSION.
	Modules string `yaml:"modules,omitempty" json:"modules,omitempty"`
	Cmdline string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
}

// GPUDriver is a driver layer built for one kernel release.
type GPUDriver struct {
	Vendor  string `yaml:"vendor" json:"vendor"`
	Version string `yaml:"version" json:"version"`
	// KernelVersion is the kernel release the driver modules were built for.
	KernelVersion string `yaml:"kernel_version" json:"kernel_version"`
	Source        `yaml:",inline" json:",inline"`
}

// User is a local account, created in /etc/passwd, /etc/group and /etc/shadow.
type User struct {
	Name              string   `yaml:"name" json:"name"`
	UID               int      `yaml:"uid" json:"uid"`
	GID               *int     `yaml:"gid,omitempty" json:"gid,omitempty"`
	Groups            []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	Shell             string   `yaml:"shell,omitempty" json:"shell,omitempty"`
	Home              string   `yaml:"home,omitempty" json:"home,omitempty"`
	PasswordHash      string   `yaml:"password_hash,omitempty" json:"password_hash,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty" json:"ssh_authorized_keys,omitempty"`
}

// Hook is a first-boot script, run once in name order by rackstrap-firstboot.
type Hook struct {
	Name   string `yaml:"name" json:"name"`
	Run    string `yaml:"run,omitempty" json:"run,omitempty"`
	Script string `yaml:"script,omitempty" json:"script,omitempty"`
}

// Boot configures the boot loaders of the disk and ISO outputs.
type Boot struct {
	// Loader is the disk's EFI boot loader: systemd-boot (default) or grub
	// (Debian's signed GRUB EFI, behind shim when the image has it). The
	// ISO always boots EFI with systemd-boot.
	Loader string `yaml:"loader,omitempty" json:"loader,omitempty"`
	// EFI is the EFI boot loader binary (default, in the image:
	// /usr/lib/systemd/boot/efi/systemd-bootx64.efi for systemd-boot,
	// /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed for grub).
	EFI string `yaml:"efi,omitempty" json:"efi,omitempty"`
	// Shim goes in front of GRUB as EFI/BOOT/BOOTX64.EFI (grub only; default
	// /usr/lib/shim/shimx64.efi.signed when the image has it, else GRUB
	// boots directly).
	Shim string `yaml:"shim,omitempty" json:"shim,omitempty"`
	// ISOLinux is isolinux.bin for BIOS boot of the ISO
	// (default /usr/lib/ISOLINUX/isolinux.bin in the image).
	ISOLinux string `yaml:"isolinux,omitempty" json:"isolinux,omitempty"`
	// LDLinux is ldlinux.c32 (default /usr/lib/syslinux/modules/bios/ldlinux.c32).
	LDLinux string `yaml:"ldlinux,omitempty" json:"ldlinux,omitempty"`
	// Cmdline is appended to the kernel command line.
	Cmdline string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
}

// Outputs lists the formats to build; at least one.
type Outputs struct {
	Disk     *DiskOutput     `yaml:"disk,omitempty" json:"disk,omitempty"`
	Squashfs *SquashfsOutput `yaml:"squashfs,omitempty" json:"squashfs,omitempty"`
	Netboot  *NetbootOutput  `yaml:"netboot,omitempty" json:"netboot,omitempty"`
	ISO      *ISOOutput      `yaml:"iso,omitempty" json:"iso,omitempty"`
}

// DiskOutput is a raw GPT disk: an EFI System Partition (FAT32) and an ext4 root.
type DiskOutput struct {
	Size    Size `yaml:"size" json:"size"`
	ESPSize Size `yaml:"esp_size,omitempty" json:"esp_size,omitempty"`
	// Sparse leaves holes for zero blocks (default true).
	Sparse *bool `yaml:"sparse,omitempty" json:"sparse,omitempty"`
	// QCOW2 also writes a qcow2 copy with qemu-img.
	QCOW2     bool   `yaml:"qcow2,omitempty" json:"qcow2,omitempty"`
	RootLabel string `yaml:"root_label,omitempty" json:"root_label,omitempty"`
	// CIDATASize, when set, adds a FAT32 partition labelled CIDATA (GPT
	// partition 3, before the root) that the agent fills with the node's
	// cloud-init NoCloud seed after imaging (decision 0017). At least
	// 33MiB, a whole number of MiB.
	CIDATASize Size `yaml:"cidata_size,omitempty" json:"cidata_size,omitempty"`
}

// SquashfsOutput is a squashfs root for stateless nodes, built by mksquashfs.
type SquashfsOutput struct {
	Compression string `yaml:"compression,omitempty" json:"compression,omitempty"`
	BlockSize   Size   `yaml:"block_size,omitempty" json:"block_size,omitempty"`
}

// NetbootOutput is a kernel plus a newc cpio initramfs of the whole root.
type NetbootOutput struct {
	Compression string `yaml:"compression,omitempty" json:"compression,omitempty"`
}

// ISOOutput is a hybrid-bootable ISO 9660 image (El Torito BIOS and EFI)
// that boots the netboot kernel and initramfs.
type ISOOutput struct {
	VolumeID string `yaml:"volume_id,omitempty" json:"volume_id,omitempty"`
}

// Size is a byte count written as an integer or with a unit: 512MiB, 2GiB, 1.5G.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseSize reads "512MiB", "2G", "1048576".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size; write bytes or a number with KiB, MiB, GiB or TiB", s)
	}
	return Size(f * mult), nil
}

func (s Size) String() string {
	switch {
	case s == 0:
		return "0"
	case s%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", s>>30)
	case s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalText implements encoding.TextUnmarshaler (YAML scalars).
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the size in its shortest exact unit.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Mode is a permission mode written in octal: "0644", 0755.
type Mode uint32

// UnmarshalText reads an octal mode.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(strings.TrimPrefix(string(b), "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("%q is not a file mode; write it in octal, quoted, e.g. \"0644\"", string(b))
	}
	*m = Mode(v)
	return nil
}

// MarshalText writes the mode as four octal digits.
func (m Mode) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%04o", uint32(m))), nil }
