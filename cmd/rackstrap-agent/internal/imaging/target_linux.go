package imaging

import (
	"fmt"
	"io/fs"
	"os"

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

func dropCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
