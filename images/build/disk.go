package build

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"

	"github.com/rackstrap/rackstrap/images/rootfs"
)

const (
	sector   = 512
	mib      = 1 << 20
	copyBuf  = 8 << 20 // go-diskfs is ~10x slower with small writes
	gptSlack = 34 * sector
)

// espFile is one file of the EFI System Partition.
type espFile struct {
	path string // e.g. EFI/BOOT/BOOTX64.EFI
	src  *rootfs.Entry
}

// diskLayout is where the partitions of the raw disk go.
type diskLayout struct {
	size               int64
	espStart, espEnd   uint64 // sectors, inclusive
	rootStart, rootEnd uint64
}

func layoutFor(size, espSize int64) (diskLayout, error) {
	l := diskLayout{size: size}
	l.espStart = mib / sector
	l.espEnd = l.espStart + uint64(espSize/sector) - 1
	l.rootStart = l.espEnd + 1
	last := (size-gptSlack)/mib*mib/sector - 1
	if int64(last) <= int64(l.rootStart)+8*mib/sector {
		return l, fmt.Errorf("disk of %d bytes leaves no room for the root filesystem after a %d byte ESP; raise outputs.disk.size", size, espSize)
	}
	l.rootEnd = uint64(last)
	return l, nil
}

func (l diskLayout) rootBytes() int64 { return int64(l.rootEnd-l.rootStart+1) * sector }
func (l diskLayout) espBytes() int64  { return int64(l.espEnd-l.espStart+1) * sector }

// rootNeeds estimates the blocks ext4 needs for the tree: content rounded to
// 4 KiB blocks, one block per directory and long symlink, inode tables, the
// journal and 10% slack for metadata.
func rootNeeds(tree *rootfs.Tree) int64 {
	var n int64
	for _, e := range tree.Entries() {
		switch {
		case e.IsRegular():
			n += (e.Size + 4095) / 4096 * 4096
			n += (e.Size / (128 * mib)) * 4096 // extent blocks
		case e.IsDir():
			n += 4096
		case e.IsSymlink() && len(e.Target) >= 60:
			n += 4096
		}
		n += 256 // inode
	}
	return n + n/10 + 16*mib
}

// writeDisk builds the GPT raw disk at out: ESP (FAT32) with the boot loader,
// kernel and initrd, and the ext4 root holding the whole tree.
func writeDisk(ctx context.Context, out string, p diskParams) error {
	l, err := layoutFor(p.size, p.espSize)
	if err != nil {
		return err
	}
	if need := rootNeeds(p.tree); need > l.rootBytes() {
		return fmt.Errorf("the root tree needs about %d MiB but the root partition has %d MiB; raise outputs.disk.size to at least %d MiB",
			need/mib, l.rootBytes()/mib, (need+l.espBytes()+4*mib)/mib+1)
	}
	_ = os.Remove(out)
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	defer f.Close()
	if err := f.Truncate(p.size); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	cache := newPageCache(f)
	d, err := diskfs.OpenBackend(file.New(cache, false), diskfs.WithOpenMode(diskfs.ReadWrite), diskfs.WithSectorSize(diskfs.SectorSize512))
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	p.cache = cache
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               strings.ToUpper(uuidString(p.diskGUID)),
		Partitions: []*gpt.Partition{
			{Index: 1, Start: l.espStart, End: l.espEnd, Type: gpt.EFISystemPartition, Name: "ESP", GUID: strings.ToUpper(uuidString(p.espGUID))},
			{Index: 2, Start: l.rootStart, End: l.rootEnd, Type: gpt.LinuxRootX86_64, Name: "root", GUID: strings.ToUpper(uuidString(p.rootGUID))},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	if err := writeESP(d, l, p); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeExt4(ctx, d, l, p); err != nil {
		return err
	}
	if err := p.cache.Drop(); err != nil {
		return err
	}
	return fixExt4(f, int64(l.rootStart)*sector, l.rootBytes(), derivedUUID(p.specDigest, "ext4-hash-seed"), p.epoch.Unix())
}

type diskParams struct {
	tree                        *rootfs.Tree
	size, espSize               int64
	diskGUID, espGUID, rootGUID [16]byte
	fsUUID                      [16]byte
	specDigest                  string
	cache                       *pageCache
	label                       string
	esp                         []espFile
	epoch                       time.Time
}

func writeESP(d *disk.Disk, l diskLayout, p diskParams) error {
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "ESP", Reproducible: true})
	if err != nil {
		return fmt.Errorf("create ESP FAT32: %w", err)
	}
	if err := fillFAT(fs, p.esp, p.epoch); err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	if err := p.cache.Drop(); err != nil {
		return err
	}
	return fixFAT(p.cache.f, int64(l.espStart)*sector, p.epoch)
}

func writeExt4(ctx context.Context, d *disk.Disk, l diskLayout, p diskParams) error {
	u := uuid.UUID(p.fsUUID)
	start := int64(l.rootStart) * sector
	fs, err := ext4.Create(d.Backend, l.rootBytes(), start, sector, &ext4.Params{UUID: &u, VolumeName: p.label})
	if err != nil {
		return fmt.Errorf("create ext4 root: %w", err)
	}
	buf := make([]byte, copyBuf)
	entries := p.tree.Entries()
	for i, e := range entries {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if e.Path == "." {
			continue
		}
		switch {
		case e.IsDir():
			if err := fs.Mkdir(e.Path); err != nil {
				return fmt.Errorf("ext4 mkdir /%s: %w", e.Path, err)
			}
		case e.IsSymlink():
			if err := fs.Symlink(e.Target, e.Path); err != nil {
				return fmt.Errorf("ext4 symlink /%s: %w", e.Path, err)
			}
			continue // ownership and times of links are fixed up below
		default:
			w, err := fs.OpenFile(e.Path, os.O_CREATE|os.O_RDWR)
			if err != nil {
				return fmt.Errorf("ext4 create /%s: %w", e.Path, err)
			}
			if e.Size > 0 {
				r, err := e.Open()
				if err != nil {
					return err
				}
				_, err = io.CopyBuffer(struct{ io.Writer }{w}, r, buf)
				r.Close()
				if err != nil {
					w.Close()
					return fmt.Errorf("ext4 write /%s: %w", e.Path, err)
				}
			}
			if err := w.Close(); err != nil {
				return fmt.Errorf("ext4 write /%s: %w", e.Path, err)
			}
		}
		// chown first: go-diskfs files inherit the parent's owner
		if err := fs.Chown(e.Path, e.UID, e.GID); err != nil {
			return fmt.Errorf("ext4 chown /%s: %w", e.Path, err)
		}
		if err := fs.Chmod(e.Path, e.Mode); err != nil {
			return fmt.Errorf("ext4 chmod /%s: %w", e.Path, err)
		}
	}
	return fs.Close()
}
