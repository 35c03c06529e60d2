package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/rackstrap/rackstrap/images/ext4"
	"github.com/rackstrap/rackstrap/images/rootfs"
	"github.com/rackstrap/rackstrap/images/seed"
)

const (
	sector   = 512
	mib      = 1 << 20
	copyBuf  = 8 << 20 // go-diskfs is ~10x slower with small writes
	gptSlack = 34 * sector
	// prefetchAhead bounds how far the kernel is asked to read ahead of
	// the ext4 writer
	prefetchAhead = 256 * mib
)

// espFile is one file of the EFI System Partition.
type espFile struct {
	path string // e.g. EFI/BOOT/BOOTX64.EFI
	src  *rootfs.Entry
}

// diskLayout is where the partitions of the raw disk go: the ESP, the
// optional CIDATA seed partition (GPT partition 3, placed before the root
// so that the root stays last and can grow into a larger disk), the root.
type diskLayout struct {
	size                   int64
	espStart, espEnd       uint64 // sectors, inclusive
	cidataStart, cidataEnd uint64 // both 0 without a seed partition
	rootStart, rootEnd     uint64
}

func layoutFor(size, espSize, cidataSize int64) (diskLayout, error) {
	l := diskLayout{size: size}
	l.espStart = mib / sector
	l.espEnd = l.espStart + uint64(espSize/sector) - 1
	l.rootStart = l.espEnd + 1
	if cidataSize > 0 {
		l.cidataStart = l.espEnd + 1
		l.cidataEnd = l.cidataStart + uint64(cidataSize/sector) - 1
		l.rootStart = l.cidataEnd + 1
	}
	last := (size-gptSlack)/mib*mib/sector - 1
	if int64(last) <= int64(l.rootStart)+8*mib/sector {
		return l, fmt.Errorf("disk of %d bytes leaves no room for the root filesystem after a %d byte ESP and a %d byte CIDATA partition; raise outputs.disk.size", size, espSize, cidataSize)
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
// kernel and initrd, and the ext4 root holding the whole tree. It returns
// the image's sha256, computed as the root filesystem is written.
func writeDisk(ctx context.Context, out string, p diskParams) (string, error) {
	l, err := layoutFor(p.size, p.espSize, p.cidataSize)
	if err != nil {
		return "", err
	}
	if need := rootNeeds(p.tree); need > l.rootBytes() {
		return "", fmt.Errorf("the root tree needs about %d MiB but the root partition has %d MiB; raise outputs.disk.size to at least %d MiB",
			need/mib, l.rootBytes()/mib, (need+l.espBytes()+p.cidataSize+4*mib)/mib+1)
	}
	_ = os.Remove(out)
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", out, err)
	}
	defer f.Close()
	if err := f.Truncate(p.size); err != nil {
		return "", fmt.Errorf("create %s: %w", out, err)
	}
	cache := newPageCache(f)
	d, err := diskfs.OpenBackend(file.New(cache, false), diskfs.WithOpenMode(diskfs.ReadWrite), diskfs.WithSectorSize(diskfs.SectorSize512))
	if err != nil {
		return "", fmt.Errorf("create %s: %w", out, err)
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
	if l.cidataStart != 0 {
		table.Partitions = append(table.Partitions, &gpt.Partition{Index: 3, Start: l.cidataStart, End: l.cidataEnd,
			Type: gpt.MicrosoftBasicData, Name: seed.PartitionName, GUID: strings.ToUpper(uuidString(p.cidataGUID))})
	}
	if err := d.Partition(table); err != nil {
		return "", fmt.Errorf("write GPT: %w", err)
	}
	if err := writeESP(d, l, p); err != nil {
		return "", err
	}
	if err := writeCIDATA(d, l, p); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := p.cache.Drop(); err != nil {
		return "", err
	}
	// everything before the root partition is final: hash it, then the
	// root as it is written (ext4.Write writes in ascending order), then the rest
	hw := &hashingSection{f: f, h: sha256.New(), base: int64(l.rootStart) * sector, size: l.rootBytes()}
	if err := hw.hashFile(hw.base); err != nil {
		return "", err
	}
	if err := writeExt4(ctx, hw, l, p); err != nil {
		return "", err
	}
	if err := hw.hashFile(p.size); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(hw.h.Sum(nil)), nil
}

// hashingSection writes the root partition of a new (all zeros) image file
// and hashes the image in order: the gaps between writes are hashed as the
// zeros they read as.
type hashingSection struct {
	f          *os.File
	h          hash.Hash
	base, size int64 // the partition, in the file
	pos        int64 // hashed up to here
}

var zeros = make([]byte, 1<<20)

func (w *hashingSection) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("write of %d bytes at %d is outside the %d byte partition", len(p), off, w.size)
	}
	abs := w.base + off
	if abs < w.pos {
		return 0, fmt.Errorf("internal error: root filesystem write at %d after %d", abs, w.pos)
	}
	for w.pos < abs {
		k := min(abs-w.pos, int64(len(zeros)))
		w.h.Write(zeros[:k])
		w.pos += k
	}
	n, err := w.f.WriteAt(p, abs)
	if err != nil {
		return n, err
	}
	w.h.Write(p)
	w.pos += int64(len(p))
	return n, nil
}

// hashFile hashes the file's bytes from pos up to end.
func (w *hashingSection) hashFile(end int64) error {
	if end < w.pos {
		return fmt.Errorf("internal error: hash up to %d after %d", end, w.pos)
	}
	if _, err := io.Copy(w.h, io.NewSectionReader(w.f, w.pos, end-w.pos)); err != nil {
		return fmt.Errorf("hash image: %w", err)
	}
	w.pos = end
	return nil
}

type diskParams struct {
	tree                        *rootfs.Tree
	size, espSize               int64
	cidataSize                  int64 // 0: no seed partition
	diskGUID, espGUID, rootGUID [16]byte
	cidataGUID                  [16]byte
	fsUUID                      [16]byte
	specDigest                  string
	cache                       *pageCache
	label                       string
	esp                         []espFile
	epoch                       time.Time
	content                     *contentDigests // records input digests on the way
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

// writeCIDATA formats the empty seed partition: FAT32 labelled CIDATA,
// which cloud-init's NoCloud datasource looks for; the agent writes each
// node's seed into it (images/seed).
func writeCIDATA(d *disk.Disk, l diskLayout, p diskParams) error {
	if l.cidataStart == 0 {
		return nil
	}
	if _, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 3, FSType: filesystem.TypeFat32, VolumeLabel: seed.Label, Reproducible: true}); err != nil {
		return fmt.Errorf("create CIDATA FAT32: %w", err)
	}
	if err := p.cache.Drop(); err != nil {
		return err
	}
	return fixFAT(p.cache.f, int64(l.cidataStart)*sector, p.epoch)
}

// writeExt4 writes the root filesystem with images/ext4 into the root
// partition of the new, sparse (so zeroed) image file.
func writeExt4(ctx context.Context, dst io.WriterAt, l diskLayout, p diskParams) error {
	entries := p.tree.Entries()
	nodes := make([]ext4.Node, 0, len(entries))
	// the writer reads files in this order; a prefetcher reads ahead of it
	var files []string
	var sizes []int64
	var reached atomic.Int64
	var pos int64
	for _, e := range entries {
		n := ext4.Node{Path: e.Path, Mode: e.Mode, UID: uint32(e.UID), GID: uint32(e.GID), Size: e.Size, Target: e.Target}
		if e.IsRegular() && e.Size > 0 {
			open, at := p.content.open(e), pos
			n.Open = func() (io.ReadCloser, error) {
				reached.Store(at)
				return open()
			}
			if e.Src != "" {
				files, sizes = append(files, e.Src), append(sizes, e.Size)
				pos += e.Size
			}
		}
		nodes = append(nodes, n)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		prefetch(pctx, files, sizes, &reached, prefetchAhead)
	}()
	defer func() { stop(); <-done }()
	_, err := ext4.Write(ctx, dst, nodes, ext4.Params{
		Size: l.rootBytes(), UUID: p.fsUUID, HashSeed: derivedUUID(p.specDigest, "ext4-hash-seed"),
		Label: p.label, Time: p.epoch.Unix(), Journal: true, Zeroed: true,
	})
	if errors.Is(err, ext4.ErrNoSpace) {
		return fmt.Errorf("root filesystem: %w; raise outputs.disk.size", err)
	}
	if err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	return nil
}
