package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// target is the disk (or file) an image is written to.
type target struct {
	f    *os.File
	path string
	// device: a block device (zeros are written too, the page cache is
	// dropped before the read-back).
	device bool
	// capacity is the most the target holds; -1 for a file that grows.
	capacity int64
}

// openTarget opens a whole-disk block device exclusively (refusing one that
// is mounted or held by RAID/LVM, and partitions), or a regular file. A file
// that already has a size is a disk of that size (a VM's raw disk); an
// absent or empty file grows to the image.
func openTarget(path string) (*target, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create target file: %w", err)
		}
		return &target{f: f, path: path, capacity: -1}, nil
	case err != nil:
		return nil, fmt.Errorf("target: %w", err)
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0:
		if part, err := isPartition(fi); err == nil && part {
			return nil, fmt.Errorf("target %s is a partition: give the whole disk (rackstrap.disk= or --disk)", path)
		}
		f, err := openExclusive(path)
		if err != nil {
			return nil, fmt.Errorf("target %s is in use (mounted, or held by RAID/LVM/swap): refusing to write over it: %w", path, err)
		}
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("target %s: size: %w", path, err)
		}
		return &target{f: f, path: path, device: true, capacity: size}, nil
	case fi.Mode().IsRegular():
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open target file: %w", err)
		}
		c := fi.Size()
		if c == 0 {
			c = -1
		}
		return &target{f: f, path: path, capacity: c}, nil
	}
	return nil, fmt.Errorf("target %s is neither a block device nor a regular file (%v)", path, fi.Mode().Type())
}

func (t *target) ReadAt(p []byte, off int64) (int, error) { return t.f.ReadAt(p, off) }

// WriteAt writes p, except all-zero chunks into a file that was empty
// (or absent) at open: there a hole already reads as zeros, so the file
// stays sparse (finish sets its length). A device or a file that already
// had a size (a VM's raw disk, which may hold an older OS) gets every byte.
func (t *target) WriteAt(p []byte, off int64) (int, error) {
	if t.capacity >= 0 || t.device {
		return t.f.WriteAt(p, off)
	}
	// runs of non-zero MiBs are written, zero MiBs skipped
	const piece = 1 << 20
	for i := 0; i < len(p); {
		j := i
		for j < len(p) && !allZero(p[j:min(j+piece, len(p))]) {
			j = min(j+piece, len(p))
		}
		if j > i {
			if n, err := t.f.WriteAt(p[i:j], off+int64(i)); err != nil {
				return i + n, err
			}
		}
		i = min(j+piece, len(p)) // p[j:j+piece] is zero (or j is the end)
	}
	return len(p), nil
}

// finish gives a growing file the image's length (its tail may be a hole).
func (t *target) finish(size int64) error {
	if t.device || t.capacity >= 0 {
		return nil
	}
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < size {
		if err := t.f.Truncate(size); err != nil {
			return fmt.Errorf("set the length of %s: %w", t.path, err)
		}
	}
	return nil
}

var zeroChunk = make([]byte, 1<<20)

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroChunk))
		if !bytes.Equal(b[:n], zeroChunk[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// sync flushes what was written to the disk and drops it from the page
// cache, so that the read-back reads the medium, not memory.
func (t *target) sync() error {
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	dropCache(t.f)
	return nil
}

func (t *target) Close() error { return t.f.Close() }
