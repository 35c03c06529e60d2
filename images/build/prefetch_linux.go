package build

import (
	"context"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// prefetch asks the kernel to read files ahead of the writer
// (POSIX_FADV_WILLNEED), staying at most ahead bytes past the position the
// writer has reached, so a tree that is not in the page cache is read with
// many requests in flight instead of one file at a time. It returns when
// every file was announced or ctx ends.
func prefetch(ctx context.Context, files []string, sizes []int64, reached *atomic.Int64, ahead int64) {
	var pos int64
	for i, p := range files {
		for pos-reached.Load() > ahead {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
		if f, err := os.Open(p); err == nil {
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)
			f.Close()
		}
		pos += sizes[i]
	}
}
