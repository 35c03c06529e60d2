// Package rootfs grows the installed OS's root filesystem into its
// partition on first boot. The netboot agent grows the partition (package
// gpt) right after the verified write, but cannot grow the filesystem
// without mounting it; the installed OS, with the root mounted, runs
// resize2fs (an online grow), once: a filesystem that already fills its
// partition is left alone.
package rootfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FS is what the superblock says.
type FS struct {
	Type  string // "ext4" (ext2/3/4 all read as ext4), or "" when unknown
	Bytes int64
}

// ErrNotExt marks a filesystem this package does not grow.
var ErrNotExt = errors.New("not an ext2/3/4 filesystem")

// ReadExt reads an ext2/3/4 superblock (1024 bytes at offset 1024) and
// returns the filesystem's size.
func ReadExt(r io.ReaderAt) (FS, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return FS{}, fmt.Errorf("read the superblock: %w", err)
	}
	return parseExt(sb)
}

func parseExt(sb []byte) (FS, error) {
	if len(sb) < 0x158 || binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return FS{}, ErrNotExt
	}
	logBlock := binary.LittleEndian.Uint32(sb[0x18:])
	if logBlock > 6 { // blocks of 1 KiB << 6 = 64 KiB at most
		return FS{}, fmt.Errorf("%w: block size 1 KiB << %d", ErrNotExt, logBlock)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[0x04:]))
	if binary.LittleEndian.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	bs := uint64(1024) << logBlock
	if blocks > (1<<62)/bs {
		return FS{}, fmt.Errorf("%w: %d blocks of %d bytes", ErrNotExt, blocks, bs)
	}
	return FS{Type: "ext4", Bytes: int64(blocks * bs)}, nil
}

// Root is the block device a mount point lives on.
type Root struct {
	// Device is /dev/NAME.
	Device string
	// PartBytes is the device's size.
	PartBytes int64
}

// FindRoot finds the block device of the filesystem mounted at dir,
// through its st_dev and sysfs (no /proc/mounts: the root may be listed
// as /dev/root there).
func FindRoot(sysRoot, dir string) (Root, error) {
	major, minor, err := devOf(dir)
	if err != nil {
		return Root{}, err
	}
	sys := filepath.Join(sysRoot, "sys/dev/block", fmt.Sprintf("%d:%d", major, minor))
	ue, err := os.ReadFile(filepath.Join(sys, "uevent"))
	if err != nil {
		return Root{}, fmt.Errorf("%s is not on a block device (%d:%d): %w", dir, major, minor, err)
	}
	name := ""
	for _, l := range strings.Split(string(ue), "\n") {
		if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
			name = v
		}
	}
	if name == "" {
		return Root{}, fmt.Errorf("%s: no DEVNAME in %s/uevent", dir, sys)
	}
	b, err := os.ReadFile(filepath.Join(sys, "size"))
	if err != nil {
		return Root{}, err
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return Root{}, fmt.Errorf("%s/size: %w", sys, err)
	}
	return Root{Device: "/dev/" + name, PartBytes: sectors * 512}, nil
}

// slack is how much smaller than its partition a filesystem may be and
// still count as filling it (resize2fs rounds down to whole blocks and
// groups).
const slack = 4 << 20

// Result is what Grow did, for the check-in's notes.
type Result struct {
	Device             string
	Before, After      int64
	PartBytes          int64
	Grown, NeedsResize bool
	// Note is the one line for the check-in.
	Note string
}

// Grow runs resize2fs on dev (the mounted root, or an image file in
// tests) when its ext filesystem is more than a few MiB smaller than
// partBytes. Without resize2fs it says so in the note and returns no
// error: the node works, with the image's root size.
func Grow(ctx context.Context, dev string, partBytes int64, resize2fs string, extra ...string) (Result, error) {
	res := Result{Device: dev, PartBytes: partBytes}
	fs, err := readDev(dev)
	if errors.Is(err, ErrNotExt) {
		res.Note = fmt.Sprintf("rootfs: %s is not ext2/3/4: left at its size (grow it with its own tool)", dev)
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("rootfs: %s: %w", dev, err)
	}
	res.Before, res.After = fs.Bytes, fs.Bytes
	if partBytes-fs.Bytes < slack {
		res.Note = fmt.Sprintf("rootfs: %s (%s) fills its partition (%s)", dev, human(fs.Bytes), human(partBytes))
		return res, nil
	}
	res.NeedsResize = true
	if resize2fs == "" {
		resize2fs = "resize2fs"
	}
	bin, err := exec.LookPath(resize2fs)
	if err != nil {
		res.Note = fmt.Sprintf("rootfs: %s is %s in a %s partition, and resize2fs is not installed: the root stays at %s; add e2fsprogs to the image", dev, human(fs.Bytes), human(partBytes), human(fs.Bytes))
		return res, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(extra, dev)...)
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return res, fmt.Errorf("rootfs: resize2fs %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
	}
	if fs, err = readDev(dev); err != nil {
		return res, fmt.Errorf("rootfs: %s after resize2fs: %w", dev, err)
	}
	res.After, res.Grown = fs.Bytes, true
	res.Note = fmt.Sprintf("rootfs: grew %s from %s to %s (its partition is %s)", dev, human(res.Before), human(res.After), human(partBytes))
	return res, nil
}

func readDev(dev string) (FS, error) {
	f, err := os.Open(dev)
	if err != nil {
		return FS{}, err
	}
	defer f.Close()
	return ReadExt(f)
}

func human(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
