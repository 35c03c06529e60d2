// Package stream writes an image from the store to a block device or file
// while hashing it: every range of the signed block map is checked before
// it is written, zero blocks are skipped (or zeroed, for devices that are
// not known to be zeroed), the whole image is checked against the
// manifest's sha256 at the end, and an interrupted write resumes by
// re-verifying what is already on the target instead of rewriting it.
//
// Writing is a pipeline of three goroutines, each range handed from one to
// the next with its buffer: the caller's goroutine reads the source and
// hashes it (the block map range's digest and the whole image's), a writer
// writes what was verified, and, with Options.ReadBack, a checker reads
// every range back from the target (through the caller's reader, which
// should bypass the page cache) and compares it byte for byte with the
// bytes that were hashed. Reading range N back overlaps writing range N+1
// and hashing range N+2.
package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/rackstrap/rackstrap/images/store"
)

// Target is where the image goes: an *os.File of a disk or an image file.
type Target interface {
	io.WriterAt
	io.ReaderAt
}

// Zeroer is a target that can zero a range faster than writing zeros
// (BLKZEROOUT on a block device, a punched hole in a file). Write uses it
// for the zero gaps when Options.WriteZeros is set.
type Zeroer interface {
	ZeroRange(off, n int64) error
}

// Options control a write.
type Options struct {
	// WriteZeros zeroes the zero gaps too (through Zeroer when the target
	// is one); set it for targets that may hold old data. Otherwise zero
	// gaps are skipped and a file stays sparse.
	WriteZeros bool
	// Resume reads each range back from the target first and skips the
	// ranges that already match.
	Resume bool
	// From and To limit writing to [From, To) (To 0: the end). The whole
	// source is still read and verified.
	From, To int64
	// ReadBack, when set, reads every byte of [From, To) back from it after
	// the byte was written (or found already right, or skipped as a zero
	// that a sparse target already holds) and compares it with what was
	// verified; a difference fails the write with ErrReadBack. Give a
	// reader that bypasses the page cache (O_DIRECT), or the check proves
	// only that memory holds what was written. Reads are 4096-aligned in
	// offset, length and buffer address, as O_DIRECT wants; a short read
	// at the end of the target is fine when it covers the range, so give a
	// sparse target file its length before writing: a zero gap beyond the
	// end of what has been written so far would read back short.
	ReadBack io.ReaderAt
	// Progress is called after every range with the running totals, from
	// the writer's or the checker's goroutine, one call at a time.
	Progress func(Progress)
}

// Progress counts bytes: read from the source, written to the target,
// skipped or zeroed as zeros, found already correct on the target, and
// read back from the target and found equal to what was verified.
type Progress struct {
	Total, Read, Written, Zero, AlreadyGood, ReadBack int64
}

// ErrCorrupt marks a source or target that does not match the manifest.
var ErrCorrupt = errors.New("image does not match its signed manifest")

// ErrReadBack marks a target that does not read back what was written.
var ErrReadBack = errors.New("the target does not read back what was written")

// Align is the alignment of read-back reads.
const Align = 4096

// depth is how many range buffers are in flight with ReadBack: one being
// read from the source, one being written, one being read back, one spare.
const depth = 4

// seg is one range on its way through the pipeline.
type seg struct {
	buf  []byte // the whole buffer, back to the pool at the end
	b    []byte // the verified bytes
	at   int64
	zero bool
}

// counters are Progress shared by the goroutines.
type counters struct {
	total                                      int64
	read, written, zero, alreadyGood, readBack atomic.Int64
}

func (c *counters) snapshot() Progress {
	return Progress{Total: c.total, Read: c.read.Load(), Written: c.written.Load(), Zero: c.zero.Load(),
		AlreadyGood: c.alreadyGood.Load(), ReadBack: c.readBack.Load()}
}

// Write copies the artifact's bytes from src (the uncompressed image stream)
// to dst. It fails, naming the offset, on the first range whose digest does
// not match, on a source that ends early or runs long, on a final sha256
// mismatch, and (with ReadBack) on a range the target does not read back.
// A range is verified before it is written, so a corrupt source never
// reaches the target beyond the last good range. src is read only from the
// caller's goroutine; Write returns after its other goroutines have ended.
func Write(ctx context.Context, dst Target, src io.Reader, a *store.Artifact, o Options) (Progress, error) {
	c := &counters{total: a.Size}
	to := o.To
	if to <= 0 || to > a.Size {
		to = a.Size
	}
	if o.From < 0 || o.From > to {
		return c.snapshot(), fmt.Errorf("write %s: range start %d is outside 0..%d", a.Name, o.From, to)
	}
	n := 2
	if o.ReadBack != nil {
		n = depth
	}
	// no range or zero gap chunk is longer than MaxRange, or the image
	bufSize := int(min(store.MaxRange, (a.Size+Align-1)&^(Align-1)))
	free := make(chan []byte, n)
	for range n {
		free <- alignedBuffer(bufSize)
	}
	toWrite := make(chan seg, n)
	toCheck := make(chan seg, n)
	// stop makes the writer and checker drop what is queued (the context
	// ended, or one of them failed).
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var wErr, cErr error
	var wg sync.WaitGroup
	var progMu sync.Mutex
	progress := func() {
		if o.Progress != nil {
			progMu.Lock()
			defer progMu.Unlock()
			o.Progress(c.snapshot())
		}
	}
	// the writer
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(toCheck)
		for s := range toWrite {
			if wErr != nil || stopped() || ctx.Err() != nil {
				free <- s.buf
				continue
			}
			lo, hi, err := put(dst, s, o, to, c)
			if err != nil {
				wErr = fmt.Errorf("write %s: %w", a.Name, err)
				halt()
				free <- s.buf
				continue
			}
			if o.ReadBack == nil || lo >= hi {
				free <- s.buf
				progress()
				continue
			}
			s.b, s.at = s.b[lo-s.at:hi-s.at], lo
			toCheck <- s
		}
	}()
	// the checker
	if o.ReadBack != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			back := alignedBuffer(bufSize + 2*Align)
			for s := range toCheck {
				if cErr == nil && !stopped() && ctx.Err() == nil {
					if err := check(o.ReadBack, back, s); err != nil {
						cErr = fmt.Errorf("write %s: %w", a.Name, err)
						halt()
					} else {
						c.readBack.Add(int64(len(s.b)))
						progress()
					}
				}
				free <- s.buf
			}
		}()
	}
	err := produce(ctx, src, a, free, toWrite, stop, c)
	close(toWrite)
	if ctx.Err() != nil {
		halt()
	}
	wg.Wait()
	p := c.snapshot()
	switch {
	case err == nil && wErr == nil && cErr == nil && ctx.Err() != nil:
		// the writer or checker dropped what was queued
		return p, fmt.Errorf("write %s: %w", a.Name, ctx.Err())
	case wErr != nil:
		return p, wErr
	case err != nil:
		return p, err
	case cErr != nil:
		return p, cErr
	}
	return p, nil
}

// produce reads and verifies the source, range by range, and queues what
// is verified for the writer. Verified ranges already queued are still
// written when produce fails (a resume keeps them), unless stop closes.
func produce(ctx context.Context, src io.Reader, a *store.Artifact, free chan []byte, out chan<- seg, stop <-chan struct{}, c *counters) error {
	whole := sha256.New()
	var ranges []store.Range
	if a.BlockMap != nil {
		ranges = a.BlockMap.Ranges
	}
	var off int64
	// next reads n bytes of the source into a free buffer.
	next := func(n int64) (seg, error) {
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return seg{}, errStopped
		case <-ctx.Done():
			return seg{}, ctx.Err()
		}
		if n > int64(len(buf)) {
			free <- buf
			return seg{}, fmt.Errorf("%w: a block map range of %d bytes at byte %d runs past the image's %d bytes", ErrCorrupt, n, off, a.Size)
		}
		b := buf[:n]
		m, err := io.ReadFull(src, b)
		c.read.Add(int64(m))
		whole.Write(b[:m])
		if err != nil {
			free <- buf
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return seg{}, fmt.Errorf("%w: source ended at byte %d of %d (truncated download or blob)", ErrCorrupt, off+int64(m), a.Size)
			}
			return seg{}, fmt.Errorf("read source at byte %d: %w", off+int64(m), err)
		}
		return seg{buf: buf, b: b, at: off}, nil
	}
	send := func(s seg) error {
		select {
		case out <- s:
			return nil
		case <-stop:
			free <- s.buf
			return errStopped
		}
	}
	zeroGap := func(end int64) error {
		for off < end {
			s, err := next(min(end-off, store.MaxRange))
			if err != nil {
				return err
			}
			if !allZero(s.b) {
				free <- s.buf
				return fmt.Errorf("%w: bytes at %d..%d are not zero but the block map says they are", ErrCorrupt, off, off+int64(len(s.b)))
			}
			s.zero = true
			off += int64(len(s.b))
			if err := send(s); err != nil {
				return err
			}
		}
		return nil
	}
	wrap := func(err error) error {
		if errors.Is(err, errStopped) {
			return nil // the writer or checker failed: theirs is the error
		}
		return fmt.Errorf("write %s: %w", a.Name, err)
	}
	for _, r := range ranges {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := zeroGap(r.Offset); err != nil {
			return wrap(err)
		}
		if r.Length > store.MaxRange {
			return fmt.Errorf("write %s: block map range of %d bytes exceeds %d", a.Name, r.Length, store.MaxRange)
		}
		s, err := next(r.Length)
		if err != nil {
			return wrap(err)
		}
		sum := sha256.Sum256(s.b)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != r.Digest {
			free <- s.buf
			return fmt.Errorf("write %s: %w: bytes %d..%d hash to %s, the manifest says %s; nothing past byte %d was written",
				a.Name, ErrCorrupt, r.Offset, r.Offset+r.Length, got, r.Digest, r.Offset)
		}
		off = r.Offset + r.Length
		if err := send(s); err != nil {
			return wrap(err)
		}
	}
	if a.BlockMap != nil {
		if err := zeroGap(a.Size); err != nil {
			return wrap(err)
		}
	} else {
		// no block map: plain copy in chunks, all-zero chunks as zero gaps
		for off < a.Size {
			if err := ctx.Err(); err != nil {
				return err
			}
			s, err := next(min(a.Size-off, store.MaxRange))
			if err != nil {
				return wrap(err)
			}
			s.zero = allZero(s.b)
			off += int64(len(s.b))
			if err := send(s); err != nil {
				return wrap(err)
			}
		}
	}
	var extra [1]byte
	if n, _ := src.Read(extra[:]); n > 0 {
		return fmt.Errorf("write %s: %w: the source holds more than the %d bytes the manifest records", a.Name, ErrCorrupt, a.Size)
	}
	if got := "sha256:" + hex.EncodeToString(whole.Sum(nil)); got != a.Digest {
		return fmt.Errorf("write %s: %w: the image hashes to %s, the manifest says %s; do not boot the target", a.Name, ErrCorrupt, got, a.Digest)
	}
	return nil
}

var errStopped = errors.New("stopped")

// put writes the part of s inside [o.From, to) and returns that part's
// bounds (lo >= hi: none of it).
func put(dst Target, s seg, o Options, to int64, c *counters) (lo, hi int64, err error) {
	lo, hi = max(s.at, o.From), min(s.at+int64(len(s.b)), to)
	if lo >= hi {
		return lo, hi, nil
	}
	part := s.b[lo-s.at : hi-s.at]
	if o.Resume {
		have := make([]byte, len(part))
		if n, _ := dst.ReadAt(have, lo); n == len(part) && bytes.Equal(have, part) {
			c.alreadyGood.Add(int64(len(part)))
			return lo, hi, nil
		}
	}
	if s.zero {
		if !o.WriteZeros {
			c.zero.Add(int64(len(part)))
			return lo, hi, nil
		}
		if z, ok := dst.(Zeroer); ok {
			if err := z.ZeroRange(lo, hi-lo); err != nil {
				return lo, hi, fmt.Errorf("zero target bytes %d..%d: %w", lo, hi, err)
			}
			c.zero.Add(int64(len(part)))
			return lo, hi, nil
		}
	}
	if _, err := dst.WriteAt(part, lo); err != nil {
		return lo, hi, fmt.Errorf("write target at byte %d: %w", lo, err)
	}
	c.written.Add(int64(len(part)))
	return lo, hi, nil
}

// check reads s's range back from r into back (aligned to Align) and
// compares it with s's bytes.
func check(r io.ReaderAt, back []byte, s seg) error {
	done := int64(0)
	for done < int64(len(s.b)) {
		lo := s.at + done
		aLo := lo &^ (Align - 1)
		want := s.b[done:]
		span := min(int64(len(want))+(lo-aLo), int64(len(back)))
		span = (span + Align - 1) &^ (Align - 1)
		if span > int64(len(back)) {
			span = int64(len(back))
		}
		n, err := r.ReadAt(back[:span], aLo)
		got := int64(n) - (lo - aLo)
		need := min(int64(len(want)), span-(lo-aLo))
		if got < need {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: read back bytes %d..%d: %v", ErrReadBack, lo, lo+need, err)
		}
		if !bytes.Equal(back[lo-aLo:lo-aLo+need], want[:need]) {
			i := 0
			for i < int(need) && back[int(lo-aLo)+i] == want[i] {
				i++
			}
			return fmt.Errorf("%w: byte %d differs from what was written (bytes %d..%d read back differently); the disk did not keep the image: check it (SMART, dmesg) or image another disk", ErrReadBack, lo+int64(i), lo, lo+need)
		}
		done += need
	}
	return nil
}

// alignedBuffer returns n bytes whose address is a multiple of Align.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+Align)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % Align); r != 0 {
		skip = Align - r
	}
	return b[skip : skip+n : skip+n]
}

var zeros = make([]byte, 1<<20)

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
