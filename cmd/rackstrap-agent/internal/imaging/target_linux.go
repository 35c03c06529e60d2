package imaging

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openExclusive opens a block device with O_EXCL, which Linux refuses
// (EBUSY) while the device is mounted or claimed by another driver.
func openExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
}

// isPartition says whether a block device is a partition (its sysfs entry
// has a "partition" attribute).
func isPartition(fi fs.FileInfo) (bool, error) {
	st, ok := fi.Sys().(*unix.Stat_t)
	if !ok {
		return false, fmt.Errorf("no stat")
	}
	_, err := os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d/partition", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	return err == nil, nil
}

// openDirect opens path for reading or writing with O_DIRECT: reads bypass the page
// cache (the kernel first writes back what is dirty in the range) and come
// from the device. Filesystems without O_DIRECT (tmpfs) refuse it.
func openDirect(path string, write bool) (*os.File, error) {
	mode := os.O_RDONLY
	if write {
		mode = os.O_WRONLY
	}
	return os.OpenFile(path, mode|unix.O_DIRECT|unix.O_CLOEXEC, 0)
}

// dropRange writes back [off, off+n) and drops it from the page cache, so
// that the next buffered read of it comes from the device.
func dropRange(f *os.File, off, n int64) error {
	if err := unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil && !errors.Is(err, unix.ESPIPE) {
		return fmt.Errorf("write back bytes %d..%d: %w", off, off+n, err)
	}
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
	return nil
}

// startWriteback starts writing [off, off+n) back to the device without
// waiting for it.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// zeroRange zeroes [off, off+n): BLKZEROOUT on a block device (the kernel
// uses the device's write-zeroes command where it has one, and writes
// zeros itself where not), a punched hole in a file. errUnsupported: write
// the zeros.
func zeroRange(f *os.File, device bool, off, n int64) error {
	if device {
		r := [2]uint64{uint64(off), uint64(n)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0]))); e != 0 {
			if e == unix.EINVAL || e == unix.EOPNOTSUPP || e == unix.ENOTTY {
				return errUnsupported
			}
			return e
		}
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return errUnsupported
	}
	return err
}

// logicalSectorSize is BLKSSZGET.
func logicalSectorSize(f *os.File) (int64, error) {
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	return int64(n), err
}
