package build

import (
	"os"
	"time"

	"github.com/rackstrap/rackstrap/images/seed"
)

// fixFAT makes the FAT32 filesystem at offset start of f reproducible
// (seed.FixFAT32): every directory entry's times set to the epoch, the
// first-level ".." entries pointing at the root, the free-cluster count set.
func fixFAT(f *os.File, start int64, epoch time.Time) error {
	return seed.FixFAT32(f, start, epoch)
}
