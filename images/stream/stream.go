// Package stream writes an image from the store to a block device or file
// while hashing it: every range of the signed block map is checked before
// it is written, zero blocks are skipped (or written, for devices that are
// not known to be zeroed), the whole image is checked against the
// manifest's sha256 at the end, and an interrupted write resumes by
// re-verifying what is already on the target instead of rewriting it.
package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/rackstrap/rackstrap/images/store"
)

// Target is where the image goes: an *os.File of a disk or an image file.
type Target interface {
	io.WriterAt
	io.ReaderAt
}

// Options control a write.
type Options struct {
	// WriteZeros writes the zero gaps of the block map too; set it for block
	// devices that may hold old data. Files are left sparse otherwise.
	WriteZeros bool
	// Resume reads each range back from the target first and skips the
	// ranges that already match their digest.
	Resume bool
	// From and To limit writing to [From, To) (To 0: the end). The whole
	// source is still read and verified.
	From, To int64
	// Progress is called after every range with the running totals.
	Progress func(Progress)
}

// Progress counts bytes: read from the source, written to the target,
// skipped as zeros and found already correct on the target.
type Progress struct {
	Total, Read, Written, Zero, AlreadyGood int64
}

// ErrCorrupt marks a source or target that does not match the manifest.
var ErrCorrupt = errors.New("image does not match its signed manifest")

// Write copies the artifact's bytes from src (the uncompressed image stream)
// to dst. It fails, naming the offset, on the first range whose digest does
// not match, on a source that ends early or runs long, and on a final
// sha256 mismatch. A range is verified before it is written, so a corrupt
// source never reaches the target beyond the last good range.
func Write(ctx context.Context, dst Target, src io.Reader, a *store.Artifact, o Options) (Progress, error) {
	p := Progress{Total: a.Size}
	to := o.To
	if to <= 0 || to > a.Size {
		to = a.Size
	}
	if o.From < 0 || o.From > to {
		return p, fmt.Errorf("write %s: range start %d is outside 0..%d", a.Name, o.From, to)
	}
	whole := sha256.New()
	ranges := []store.Range{}
	if a.BlockMap != nil {
		ranges = a.BlockMap.Ranges
	}
	var off int64
	buf := make([]byte, store.MaxRange)
	readN := func(n int64) ([]byte, error) {
		b := buf[:n]
		m, err := io.ReadFull(src, b)
		p.Read += int64(m)
		whole.Write(b[:m])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: source ended at byte %d of %d (truncated download or blob)", ErrCorrupt, off+int64(m), a.Size)
			}
			return nil, fmt.Errorf("read source at byte %d: %w", off+int64(m), err)
		}
		return b, nil
	}
	put := func(b []byte, at int64, isZero bool) error {
		lo, hi := max(at, o.From), min(at+int64(len(b)), to)
		if lo >= hi {
			return nil
		}
		part := b[lo-at : hi-at]
		if o.Resume {
			have := make([]byte, len(part))
			if n, _ := dst.ReadAt(have, lo); n == len(part) && bytes.Equal(have, part) {
				p.AlreadyGood += int64(len(part))
				return nil
			}
		}
		if isZero && !o.WriteZeros {
			p.Zero += int64(len(part))
			return nil
		}
		if _, err := dst.WriteAt(part, lo); err != nil {
			return fmt.Errorf("write target at byte %d: %w", lo, err)
		}
		p.Written += int64(len(part))
		return nil
	}
	zeroGap := func(end int64) error {
		for off < end {
			n := min(end-off, int64(len(buf)))
			b, err := readN(n)
			if err != nil {
				return err
			}
			if !allZero(b) {
				return fmt.Errorf("%w: bytes at %d..%d are not zero but the block map says they are", ErrCorrupt, off, off+n)
			}
			if err := put(b, off, true); err != nil {
				return err
			}
			off += n
		}
		return nil
	}
	for _, r := range ranges {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		if err := zeroGap(r.Offset); err != nil {
			return p, fmt.Errorf("write %s: %w", a.Name, err)
		}
		if r.Length > int64(len(buf)) {
			return p, fmt.Errorf("write %s: block map range of %d bytes exceeds %d", a.Name, r.Length, len(buf))
		}
		b, err := readN(r.Length)
		if err != nil {
			return p, fmt.Errorf("write %s: %w", a.Name, err)
		}
		sum := sha256.Sum256(b)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != r.Digest {
			return p, fmt.Errorf("write %s: %w: bytes %d..%d hash to %s, the manifest says %s; nothing past byte %d was written",
				a.Name, ErrCorrupt, r.Offset, r.Offset+r.Length, got, r.Digest, r.Offset)
		}
		if err := put(b, r.Offset, false); err != nil {
			return p, fmt.Errorf("write %s: %w", a.Name, err)
		}
		off = r.Offset + r.Length
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	if a.BlockMap != nil {
		if err := zeroGap(a.Size); err != nil {
			return p, fmt.Errorf("write %s: %w", a.Name, err)
		}
	} else {
		// no block map: plain copy in chunks
		for off < a.Size {
			if err := ctx.Err(); err != nil {
				return p, err
			}
			n := min(a.Size-off, int64(len(buf)))
			b, err := readN(n)
			if err != nil {
				return p, fmt.Errorf("write %s: %w", a.Name, err)
			}
			if err := put(b, off, false); err != nil {
				return p, fmt.Errorf("write %s: %w", a.Name, err)
			}
			off += n
			if o.Progress != nil {
				o.Progress(p)
			}
		}
	}
	var extra [1]byte
	if n, _ := src.Read(extra[:]); n > 0 {
		return p, fmt.Errorf("write %s: %w: the source holds more than the %d bytes the manifest records", a.Name, ErrCorrupt, a.Size)
	}
	if got := "sha256:" + hex.EncodeToString(whole.Sum(nil)); got != a.Digest {
		return p, fmt.Errorf("write %s: %w: the image hashes to %s, the manifest says %s; do not boot the target", a.Name, ErrCorrupt, got, a.Digest)
	}
	if o.Progress != nil {
		o.Progress(p)
	}
	return p, nil
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
