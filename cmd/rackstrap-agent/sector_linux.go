package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// sectorSize is a block device's logical sector size (BLKSSZGET).
func sectorSize(f *os.File) (int64, error) {
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	return int64(n), err
}
