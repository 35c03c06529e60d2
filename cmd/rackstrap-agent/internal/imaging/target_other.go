//go:build !linux

package imaging

import (
	"errors"
	"io/fs"
	"os"
)

func openExclusive(path string) (*os.File, error) {
	return nil, errors.New("writing to block devices is supported on Linux only")
}

func isPartition(fs.FileInfo) (bool, error) { return false, nil }

func dropCache(*os.File) {}
