//go:build !linux

package build

import (
	"context"
	"sync/atomic"
)

// prefetch is a no-op where posix_fadvise is not available.
func prefetch(ctx context.Context, files []string, sizes []int64, reached *atomic.Int64, ahead int64) {
}
