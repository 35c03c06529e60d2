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

func openDirect(string, bool) (*os.File, error) { return nil, errors.ErrUnsupported }

func dropRange(f *os.File, off, n int64) error { return f.Sync() }

func zeroRange(*os.File, bool, int64, int64) error { return errUnsupported }

func startWriteback(*os.File, int64, int64) {}

func logicalSectorSize(*os.File) (int64, error) { return 512, nil }
