package build

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/rackstrap/rackstrap/images/rootfs"
	"github.com/rackstrap/rackstrap/images/spec"
)

// writeISO builds an ISO 9660 image that boots the netboot kernel and
// initramfs: El Torito BIOS via isolinux and EFI via an embedded FAT image
// holding systemd-boot. Rock Ridge is off: its TF entries carry the
// workspace files' ctime, which no build can fix.
func (b *builder) writeISO(ctx context.Context, out string, a *assembly, initramfs string, o *spec.ISOOutput) error {
	s := b.spec
	isolinux, err := b.hostOrImage(a.tree, "boot.isolinux", s.Boot.ISOLinux)
	if err != nil {
		return fmt.Errorf("%w (the iso output needs isolinux for BIOS boot: install isolinux in the base or set boot.isolinux)", err)
	}
	ldlinux, err := b.hostOrImage(a.tree, "boot.ldlinux", s.Boot.LDLinux)
	if err != nil {
		return fmt.Errorf("%w (install syslinux-common in the base or set boot.ldlinux)", err)
	}
	efi := s.Boot.EFI
	if s.Boot.Loader == "grub" {
		efi = spec.DefaultEFI // boot.loader picks the disk's loader; the ISO boots EFI with systemd-boot
	}
	loader, err := b.hostOrImage(a.tree, "boot.efi", efi)
	if err != nil {
		return fmt.Errorf("%w (the iso output needs systemd-boot for EFI boot: install systemd-boot-efi in the base or set boot.efi)", err)
	}
	cmdline := s.Kernel.Cmdline
	if s.Boot.Cmdline != "" {
		cmdline += " " + s.Boot.Cmdline
	}
	ird := &rootfs.Entry{Src: initramfs}
	if fi, err := os.Stat(initramfs); err == nil {
		ird.Size = fi.Size()
	}
	ws := filepath.Join(b.scratch, "iso-root")
	_ = os.RemoveAll(ws)
	cfg := fmt.Sprintf("DEFAULT rackstrap\nPROMPT 0\nTIMEOUT 0\nLABEL rackstrap\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.img\n  APPEND %s\n", cmdline)
	entry := fmt.Sprintf("title %s %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n", s.Name, s.Version, cmdline)
	efiFiles := []espFile{
		{path: "EFI/BOOT/BOOTX64.EFI", src: loader},
		{path: "loader/loader.conf", src: dataEntry("default rackstrap.conf\ntimeout 0\n")},
		{path: "loader/entries/rackstrap.conf", src: dataEntry(entry)},
		{path: "vmlinuz", src: a.kernel},
		{path: "initrd.img", src: ird},
	}
	files := []struct {
		p string
		e *rootfs.Entry
	}{
		{"isolinux/isolinux.bin", isolinux},
		{"isolinux/ldlinux.c32", ldlinux},
		{"isolinux/isolinux.cfg", dataEntry(cfg)},
		{"boot/vmlinuz", a.kernel},
		{"boot/initrd.img", ird},
	}
	var total int64
	for _, f := range files {
		dst := filepath.Join(ws, filepath.FromSlash(f.p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyEntry(f.e, dst); err != nil {
			return err
		}
		total += f.e.Size
	}
	efiImg := filepath.Join(ws, "efi", "efiboot.img")
	if err := os.MkdirAll(filepath.Dir(efiImg), 0o755); err != nil {
		return err
	}
	efiSize, err := writeFATImage(efiImg, efiFiles, b.epoch)
	if err != nil {
		return fmt.Errorf("EFI boot image: %w", err)
	}
	total += efiSize
	if err := ctx.Err(); err != nil {
		return err
	}
	// fixed times and modes on the workspace: the ISO records them
	err = filepath.Walk(ws, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if fi.IsDir() {
			mode = 0o755
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		return os.Chtimes(p, b.epoch, b.epoch)
	})
	if err != nil {
		return err
	}
	_ = os.Remove(out)
	d, err := diskfs.Create(out, total+8*mib, diskfs.SectorSize512)
	if err != nil {
		return err
	}
	defer d.Close()
	d.LogicalBlocksize = 2048
	fsys, err := d.CreateFilesystem(diskFSSpecISO(ws))
	if err != nil {
		return fmt.Errorf("create ISO: %w", err)
	}
	iso, ok := fsys.(*iso9660.FileSystem)
	if !ok {
		return fmt.Errorf("create ISO: unexpected filesystem %T", fsys)
	}
	bios := &iso9660.ElToritoEntry{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation, BootFile: "/isolinux/isolinux.bin", BootTable: true}
	bios.SetLoadSize(4)
	err = iso.Finalize(iso9660.FinalizeOptions{
		VolumeIdentifier: o.VolumeID,
		ElTorito: &iso9660.ElTorito{
			BootCatalog:     "/isolinux/boot.cat",
			HideBootCatalog: true,
			Entries: []*iso9660.ElToritoEntry{
				bios,
				{Platform: iso9660.EFI, Emulation: iso9660.NoEmulation, BootFile: "/efi/efiboot.img"},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("finalize ISO: %w", err)
	}
	return fixISO(out, b.epoch)
}

func diskFSSpecISO(ws string) disk.FilesystemSpec {
	return disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeISO9660, WorkDir: ws}
}

// fixISO truncates the image to the volume size the PVD records (go-diskfs
// leaves the pre-sized file) and sets the four PVD dates to the epoch.
func fixISO(p string, epoch time.Time) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		return fmt.Errorf("read PVD: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return fmt.Errorf("no primary volume descriptor at sector 16")
	}
	blocks := binary.LittleEndian.Uint32(pvd[80:])
	bs := binary.LittleEndian.Uint16(pvd[128:])
	date := []byte(epoch.UTC().Format("20060102150405") + "00")
	date = append(date, 0) // GMT offset 0
	for _, off := range []int{813, 830, 847, 864} {
		copy(pvd[off:off+17], date)
	}
	if _, err := f.WriteAt(pvd, 16*2048); err != nil {
		return err
	}
	if err := f.Truncate(int64(blocks) * int64(bs)); err != nil {
		return err
	}
	return f.Close()
}

// writeFATImage writes a FAT32 image holding files and returns its size.
func writeFATImage(out string, files []espFile, epoch time.Time) (int64, error) {
	var total int64
	for _, f := range files {
		total += (f.src.Size + 4095) / 4096 * 4096
	}
	size := max((total+total/8+2*mib+mib-1)/mib*mib, int64(34*mib))
	_ = os.Remove(out)
	be, err := file.CreateFromPath(out, size)
	if err != nil {
		return 0, err
	}
	defer be.Close()
	fs, err := fat32.Create(be, size, 0, 512, "EFIBOOT", true)
	if err != nil {
		return 0, err
	}
	if err := fillFAT(fs, files, epoch); err != nil {
		return 0, err
	}
	f, err := be.Sys()
	if err != nil {
		return 0, err
	}
	return size, fixFAT(f, 0, epoch)
}

func fillFAT(fs filesystem.FileSystem, files []espFile, epoch time.Time) error {
	made := map[string]bool{}
	buf := make([]byte, copyBuf)
	for _, f := range files {
		for _, dir := range parents(f.path) {
			if made[dir] {
				continue
			}
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("mkdir %s: %w", dir, err)
			}
			made[dir] = true
		}
		w, err := fs.OpenFile(f.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("create %s: %w", f.path, err)
		}
		r, err := f.src.Open()
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(struct{ io.Writer }{w}, r, buf)
		r.Close()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w; if it is full, raise the ESP size", f.path, err)
		}
		if err := fs.Chtimes(f.path, epoch, epoch, epoch); err != nil {
			return err
		}
	}
	for dir := range made {
		if err := fs.Chtimes(dir, epoch, epoch, epoch); err != nil {
			return err
		}
	}
	return fs.Close()
}

// parents returns the directories above a file, outermost first.
func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}
