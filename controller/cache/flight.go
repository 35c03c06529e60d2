package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// errRetired: the flight ended well and let go of its file.
var errRetired = errors.New("flight retired")

// flight is one blob being verified or fetched. Readers share its file
// through ReadAt (positional reads are safe concurrently) and wait on cond
// for bytes to arrive; the file closes when the flight and its last reader
// are done.
type flight struct {
	digest string
	sized  chan struct{} // closed when the size is known or the flight ends

	mu      sync.Mutex
	cond    *sync.Cond
	size    int64
	hasSz   bool
	written int64
	done    bool
	err     error
	src     *os.File
	refs    int
}

func newFlight(digest string) *flight {
	f := &flight{digest: digest, sized: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *flight) hasSize() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hasSz
}

// setSize publishes the blob's size and the file readers read; the flight
// holds one reference to src until finish.
func (f *flight) setSize(n int64, src *os.File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hasSz {
		return
	}
	f.size, f.hasSz, f.src, f.refs = n, true, src, 1
	close(f.sized)
}

func (f *flight) progress(written int64) {
	f.mu.Lock()
	f.written = written
	f.cond.Broadcast()
	f.mu.Unlock()
}

// finish ends the flight: err nil means every byte is verified.
func (f *flight) finish(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done, f.err = true, err
	if !f.hasSz {
		close(f.sized)
	}
	f.cond.Broadcast()
	if f.hasSz {
		f.release()
	}
}

// release drops one reference to src; f.mu is held.
func (f *flight) release() {
	f.refs--
	if f.refs == 0 && f.src != nil {
		f.src.Close()
		f.src = nil
	}
}

// reader returns a reader of the blob for one request, or the flight's
// error. A zero-length blob is served only once verified (there is no last
// byte to hold back).
func (f *flight) reader(ctx context.Context) (*blobReader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.done && f.src == nil {
		return nil, errRetired // verified and closed: read the kept file
	}
	if !f.hasSz || f.src == nil {
		return nil, errors.New("blob has no size yet")
	}
	if f.size == 0 {
		if err := f.waitLocked(ctx, func() bool { return f.done }); err != nil {
			return nil, err
		}
		if f.err != nil {
			return nil, f.err
		}
	}
	f.refs++
	return &blobReader{f: f, ctx: ctx, size: f.size}, nil
}

// waitLocked waits until cond holds, the flight fails or ctx ends; f.mu is
// held.
func (f *flight) waitLocked(ctx context.Context, cond func() bool) error {
	if cond() {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	for !cond() {
		if f.err != nil {
			return f.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

// available waits until bytes past off may be read and returns how many
// may: everything written, except the last byte until the digest is
// verified.
func (f *flight) available(ctx context.Context, off int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rel := func() int64 {
		if f.done && f.err == nil {
			return f.written
		}
		return min(f.written, f.size-1)
	}
	if err := f.waitLocked(ctx, func() bool { return f.err == nil && rel() > off }); err != nil {
		return 0, fmt.Errorf("blob %s: %w", f.digest, err)
	}
	return rel(), nil
}

// blobReader is one request's view of a flight: an io.ReadSeeker of the
// blob's final size whose reads wait for the bytes to arrive.
type blobReader struct {
	f      *flight
	ctx    context.Context
	size   int64
	off    int64
	closed bool
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	avail, err := b.f.available(b.ctx, b.off)
	if err != nil {
		return 0, err
	}
	if max := avail - b.off; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := b.f.src.ReadAt(p, b.off)
	b.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (b *blobReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += b.off
	case io.SeekEnd:
		off += b.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if off < 0 {
		return 0, errors.New("seek: negative position")
	}
	b.off = off
	return off, nil
}

func (b *blobReader) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.f.mu.Lock()
	b.f.release()
	b.f.mu.Unlock()
	return nil
}
