package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"unsafe"

	"github.com/rackstrap/rackstrap/images/stream"
)

// target is the disk (or file) an image is written to.
type target struct {
	f    *os.File
	path string
	// device: a block device (zeros are written too).
	device bool
	// sparse: a file that was absent or empty at open, so its holes read
	// as zeros and zero MiBs need not be written.
	sparse bool
	// capacity is the most the target holds; -1 for a file that grows.
	capacity int64
	// back reads the target for the read-back check: f opened again with
	// O_DIRECT, or, where that is refused, f after writing back and
	// dropping the range from the page cache.
	back io.ReaderAt
	// direct says back bypasses the page cache with O_DIRECT.
	direct bool
	// dw writes aligned pieces with O_DIRECT (nil where refused): no copy
	// into the page cache, which the read-back bypasses anyway.
	dw        *os.File
	closeBack func() error
}

var errUnsupported = errors.New("not supported")

// openTarget opens a whole-disk block device exclusively (refusing one that
// is mounted or held by RAID/LVM, and partitions), or a regular file. A file
// that already has a size is a disk of that size (a VM's raw disk); an
// absent or empty file grows to the image.
func openTarget(path string) (*target, error) {
	t, err := openTargetFile(path)
	if err != nil {
		return nil, err
	}
	if d, err := openDirect(path, false); err == nil {
		t.back, t.direct, t.closeBack = &directReader{d: d, f: t.f, t: t}, true, d.Close
		if w, err := openDirect(path, true); err == nil {
			t.dw = w
			t.closeBack = func() error { return errors.Join(d.Close(), w.Close()) }
		}
	} else {
		t.back, t.closeBack = droppingReader{t.f}, func() error { return nil }
	}
	return t, nil
}

// useCache gives up O_DIRECT: writes and the read-back go through the page
// cache, each range written back and dropped from it before it is read.
func (t *target) useCache() {
	_ = t.closeBack()
	t.back, t.direct, t.dw, t.closeBack = droppingReader{t.f}, false, nil, func() error { return nil }
}

func openTargetFile(path string) (*target, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create target file: %w", err)
		}
		return &target{f: f, path: path, capacity: -1, sparse: true}, nil
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
			return &target{f: f, path: path, capacity: -1, sparse: true}, nil
		}
		return &target{f: f, path: path, capacity: c}, nil
	}
	return nil, fmt.Errorf("target %s is neither a block device nor a regular file (%v)", path, fi.Mode().Type())
}

func (t *target) ReadAt(p []byte, off int64) (int, error) { return t.f.ReadAt(p, off) }

// WriteAt writes p, except all-zero MiBs into a sparse file: there a hole
// already reads as zeros. A device or a file that already had a size (a
// VM's raw disk, which may hold an older OS) gets every byte.
//
// Writeback of what was written starts at once (sync_file_range, without
// waiting), so the device is busy while the next range is verified, and
// the read-back and the final fsync find little left to write.
func (t *target) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.writeAt(p, off)
	if n > 0 {
		startWriteback(t.f, off, int64(n))
	}
	return n, err
}

func (t *target) writeAt(p []byte, off int64) (int, error) {
	if !t.sparse {
		return t.put(p, off)
	}
	// runs of non-zero MiBs are written, zero MiBs skipped
	const piece = 1 << 20
	for i := 0; i < len(p); {
		j := i
		for j < len(p) && !allZero(p[j:min(j+piece, len(p))]) {
			j = min(j+piece, len(p))
		}
		if j > i {
			if n, err := t.put(p[i:j], off+int64(i)); err != nil {
				return i + n, err
			}
		}
		i = min(j+piece, len(p)) // p[j:j+piece] is zero (or j is the end)
	}
	return len(p), nil
}

// put writes p at off: its aligned part with O_DIRECT when it can, the
// rest through the page cache.
func (t *target) put(p []byte, off int64) (int, error) {
	const a = stream.Align
	if t.dw == nil || off%a != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(p)))%a != 0 || len(p) < a {
		return t.f.WriteAt(p, off)
	}
	k := len(p) &^ (a - 1)
	n, err := t.dw.WriteAt(p[:k], off)
	if errors.Is(err, syscall.EINVAL) && n == 0 {
		// the filesystem took O_DIRECT at open but refuses this write:
		// the page cache from now on
		t.dw = nil
		return t.f.WriteAt(p, off)
	}
	if err != nil || k == len(p) {
		return n, err
	}
	m, err := t.f.WriteAt(p[k:], off+int64(k))
	return n + m, err
}

// ZeroRange zeroes [off, off+n) (stream.Zeroer): nothing to do in a sparse
// file, BLKZEROOUT on a device, a punched hole in a file; zeros written
// where those are refused.
func (t *target) ZeroRange(off, n int64) error {
	if t.sparse {
		return nil
	}
	err := zeroRange(t.f, t.device, off, n)
	if !errors.Is(err, errUnsupported) {
		return err
	}
	for n > 0 {
		k := min(n, int64(len(zeroChunk)))
		if _, err := t.f.WriteAt(zeroChunk[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// setLength gives a sparse file the image's length up front, so that its
// tail (maybe a hole) reads back before the write ends.
func (t *target) setLength(size int64) error {
	if !t.sparse {
		return nil
	}
	if err := t.f.Truncate(size); err != nil {
		return fmt.Errorf("set the length of %s: %w", t.path, err)
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

// sync makes what was written durable (fsync: the data, the file's
// metadata, and a flush of the device's write cache).
func (t *target) sync() error {
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	return nil
}

// sectorSize is the disk's logical sector size (512 for a file).
func (t *target) sectorSize() int64 {
	if t.device {
		if n, err := logicalSectorSize(t.f); err == nil && n >= 512 {
			return n
		}
	}
	return 512
}

// Sync is gpt.Disk's.
func (t *target) Sync() error { return t.sync() }

func (t *target) Close() error {
	return errors.Join(t.closeBack(), t.f.Close())
}

// directReader reads with O_DIRECT, and, should the filesystem refuse an
// aligned O_DIRECT read it accepted at open (EINVAL), through the page
// cache like droppingReader from then on (the report says so). One
// goroutine at a time reads back.
type directReader struct {
	d, f     *os.File
	t        *target
	fallback bool
}

func (r *directReader) ReadAt(p []byte, off int64) (int, error) {
	if !r.fallback {
		n, err := r.d.ReadAt(p, off)
		if !errors.Is(err, syscall.EINVAL) || n > 0 {
			return n, err
		}
		r.fallback, r.t.direct = true, false
	}
	return droppingReader{r.f}.ReadAt(p, off)
}

// droppingReader reads a range back from the device where O_DIRECT is
// refused: the range is written back and dropped from the page cache
// first, so the read comes from the device rather than memory.
type droppingReader struct{ f *os.File }

func (d droppingReader) ReadAt(p []byte, off int64) (int, error) {
	if err := dropRange(d.f, off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, off)
}
