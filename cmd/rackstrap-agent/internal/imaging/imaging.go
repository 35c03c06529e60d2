// Package imaging runs the agent's "image" task: it streams the OS image
// from the controller's URL to the target disk, verifying size and sha256
// while writing (github.com/rackstrap/rackstrap/images/stream), then reads
// back what is on the disk and hashes it.
//
// The disk becomes bootable only once the whole image is verified: the
// first MiB (protective MBR and primary GPT) is held in memory and written
// last, after the rest has been written and the whole stream's sha256
// matched. Any failure after writing began zeroes the first MiB, so a
// half-written or unverified disk is never booted (nor is the OS that was
// on it before).
package imaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpt"
	"github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/images/stream"
)

// Payload is an "image" task's payload (the controller's edge.ImageTask).
type Payload struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Compression is how the URL's bytes are compressed: "" (the raw
	// image) or "zstd". SHA256 and Size are the raw image's either way.
	Compression string `json:"compression,omitempty"`
	// Server and FirstBootToken go onto the target for the installed OS's
	// first-boot check-in (package firstboot).
	Server         string `json:"server"`
	FirstBootToken string `json:"firstBootToken"`
}

// Check validates a payload before anything is touched.
func (p Payload) Check() error {
	var errs []error
	if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q is not an http:// or https:// URL", p.URL))
	}
	if len(p.SHA256) != 64 || strings.ToLower(p.SHA256) != p.SHA256 || !isHex(p.SHA256) {
		errs = append(errs, fmt.Errorf("sha256 %q is not 64 lower-case hex digits", p.SHA256))
	}
	if p.Size <= 0 {
		errs = append(errs, fmt.Errorf("size %d is not positive", p.Size))
	}
	if p.Compression != "" && p.Compression != "zstd" {
		errs = append(errs, fmt.Errorf("compression %q is not zstd (or empty for a raw image)", p.Compression))
	}
	if p.Server == "" || p.FirstBootToken == "" {
		errs = append(errs, errors.New("server or firstBootToken is empty: the installed OS could not check in"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("image task payload: %w", err)
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// Result is what the agent reports: the sha256 of the bytes read back from
// the target after writing, and how many. Every byte is read back and
// compared with the bytes whose sha256 was verified while streaming, so
// SHA256 is the task's sha256 exactly when the whole disk matched.
type Result struct {
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// Report is a successful write's account.
type Report struct {
	Result
	Target string
	// Device says the target is a block device.
	Device bool
	// Written and AlreadyGood count bytes written and found correct on the
	// target (resume).
	Written, AlreadyGood int64
	// Resumes counts the download's reconnections.
	Resumes int
	Elapsed time.Duration
	// Stream and ReadBack split Elapsed: download, verify, write and read
	// back (overlapped); then the first MiB written and read back, and the
	// final fsync.
	Stream, ReadBack time.Duration
	// Grown is what growing the partition table to the disk did (nil: the
	// disk is the image's size, or GrowNote says why not).
	Grown    *gpt.Growth
	GrowNote string
	// Direct says the read-back bypassed the page cache (O_DIRECT); else
	// each range was written back and dropped from the cache before it was
	// read.
	Direct bool
}

// String is the task's message.
func (r Report) String() string {
	mib := float64(r.Bytes) / (1 << 20)
	rate := mib / max(r.Elapsed.Seconds(), 1e-3)
	how := "O_DIRECT"
	if !r.Direct {
		how = "through the page cache, each range dropped from it first"
	}
	s := fmt.Sprintf("wrote %.1f MiB to %s in %v (%.0f MiB/s; streaming and read-back %v, first MiB and sync %v), read every byte back (%s) and compared it with the verified stream: sha256 %s", mib, r.Target, r.Elapsed.Round(time.Millisecond), rate,
		r.Stream.Round(time.Millisecond), r.ReadBack.Round(time.Millisecond), how, r.SHA256)
	switch {
	case r.Grown != nil:
		s += "; " + r.Grown.String()
	case r.GrowNote != "":
		s += "; " + r.GrowNote
	}
	if r.AlreadyGood > 0 {
		s += fmt.Sprintf("; %.1f MiB were already on the disk (resumed)", float64(r.AlreadyGood)/(1<<20))
	}
	if r.Resumes > 0 {
		s += fmt.Sprintf("; the download was resumed %d times", r.Resumes)
	}
	return s
}

// Options control a write.
type Options struct {
	// Target is the block device or file to write.
	Target string
	// HTTPClient downloads the image (default: no proxy, system roots).
	HTTPClient *http.Client
	// Resume re-reads each range on the target first and skips what is
	// already right (a task run again after the agent restarted).
	Resume bool
	// Retries is how many attempts in a row without progress the download
	// makes before it fails (default 8); RetryWait is the first wait
	// between them (default 1s, growing); IdleTimeout is how long a
	// connection may send nothing before it is dropped and resumed
	// (default 60s).
	Retries     int
	RetryWait   time.Duration
	IdleTimeout time.Duration
	// TailBytes is how much the disk must hold past the image (the
	// first-boot record at its tail): a smaller disk fails before anything
	// is written.
	TailBytes int64
	// ProgressEvery is how often progress is logged (default 5s).
	ProgressEvery time.Duration
	Logger        *slog.Logger
	// noDirect reads back through the page cache (as where O_DIRECT is
	// refused): for tests.
	noDirect bool
}

// GrowReserve is the tail of the disk the grown last partition leaves
// out: the first-boot record lives there (1 MiB before the end), and the
// backup GPT in the last sectors.
const GrowReserve = 1 << 20

// headSize is what is held back and written last: the protective MBR and
// the primary GPT live in the first MiB of a GPT disk.
const headSize = 1 << 20

// Write streams the image to the target, verifies it, and reads it back:
// every range is read back (O_DIRECT where the target allows it) and
// compared with the verified bytes while the next range is written.
func Write(ctx context.Context, p Payload, o Options) (rep Report, err error) {
	start := time.Now()
	if err := p.Check(); err != nil {
		return rep, err
	}
	if o.Target == "" {
		return rep, errors.New("no target disk")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	if o.Retries <= 0 {
		o.Retries = 8
	}
	if o.RetryWait <= 0 {
		o.RetryWait = time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("target", o.Target)
	rep.Target = o.Target

	t, err := openTarget(o.Target)
	if err != nil {
		return rep, err
	}
	defer t.Close()
	if o.noDirect {
		t.useCache()
	}
	rep.Device = t.device
	if t.capacity >= 0 && t.capacity < p.Size+o.TailBytes {
		more := ""
		if o.TailBytes > 0 {
			more = fmt.Sprintf(" and %s after it for the first-boot record", human(o.TailBytes))
		}
		return rep, fmt.Errorf("disk too small: %s holds %d bytes (%s), the image is %d bytes (%s)%s; nothing was written: image a larger disk (rackstrap.disk=) or build a smaller image",
			o.Target, t.capacity, human(t.capacity), p.Size, human(p.Size), more)
	}

	dctx, cancel := context.WithCancel(ctx)
	wire := p.Size // bytes on the wire; a compressed image's come from Content-Length
	if p.Compression != "" {
		wire = 0
	}
	src := &download{ctx: dctx, client: o.HTTPClient, url: p.URL, size: wire, retries: o.Retries, wait: o.RetryWait, idle: o.IdleTimeout, log: log}
	var ahead *prefetch
	var dec *zstd.Decoder
	defer func() {
		cancel() // unblocks a read in flight, so the decoder and the read-ahead can stop
		if dec != nil {
			dec.Close()
		}
		if ahead != nil {
			ahead.stop()
		}
		src.Close()
	}()
	// The first answer is awaited before the disk is touched: a URL that is
	// wrong, or an image of another size, changes nothing.
	if err := src.open(); err != nil {
		if !errors.As(err, new(*permanentError)) && ctx.Err() == nil {
			log.Warn("image download failed; retrying", "err", err)
			if err := src.retry(err); err != nil {
				return rep, err
			}
		} else {
			return rep, err
		}
	}

	if err := t.setLength(p.Size); err != nil {
		return rep, err
	}
	ahead = newPrefetch(src, 4, 4<<20)
	var image io.Reader = ahead
	if p.Compression == "zstd" {
		// two goroutines: decoding overlaps hashing the decoded bytes
		if dec, err = zstd.NewReader(sourceTagged{ahead}, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxWindow(1<<30)); err != nil {
			return rep, fmt.Errorf("zstd decoder: %w", err)
		}
		image = corruptOnError{dec}
	}
	head := &headCapture{r: image, buf: make([]byte, 0, min(headSize, p.Size))}
	wrote := false
	defer func() {
		if err != nil && wrote {
			if werr := wipeHead(t, min(headSize, p.Size)); werr != nil {
				err = fmt.Errorf("%w; and zeroing the first MiB of %s failed too (do not boot it): %v", err, o.Target, werr)
			} else {
				err = fmt.Errorf("%w; the first MiB of %s was zeroed so that it does not boot", err, o.Target)
			}
		}
	}()
	art := &store.Artifact{Name: imageName(p.URL), Format: "raw", Size: p.Size, Digest: "sha256:" + p.SHA256}
	lastLog := time.Now()
	wrote = true
	prog, err := stream.Write(ctx, t, head, art, stream.Options{
		WriteZeros: !t.sparse,
		Resume:     o.Resume,
		From:       int64(cap(head.buf)),
		ReadBack:   t.back,
		Progress: func(pr stream.Progress) {
			if time.Since(lastLog) >= o.ProgressEvery {
				lastLog = time.Now()
				el := time.Since(start).Seconds()
				log.Info("imaging", "read", pr.Read, "of", pr.Total, "percent", pr.Read*100/max(pr.Total, 1), "readBack", pr.ReadBack, "MiBps", int(float64(pr.Read)/(1<<20)/max(el, 1e-3)))
			}
		},
	})
	rep.Written, rep.AlreadyGood = prog.Written, prog.AlreadyGood
	if err != nil {
		if errors.Is(err, stream.ErrCorrupt) {
			return rep, fmt.Errorf("image verification failed: %w", err)
		}
		if errors.Is(err, stream.ErrReadBack) {
			return rep, fmt.Errorf("read-back verification failed on %s: %w", o.Target, err)
		}
		return rep, err
	}
	// Verified: now the head, which makes the disk bootable.
	if len(head.buf) != cap(head.buf) {
		return rep, fmt.Errorf("agent bug: held back %d bytes of the first MiB, want %d", len(head.buf), cap(head.buf))
	}
	if _, err := t.WriteAt(head.buf, 0); err != nil {
		return rep, fmt.Errorf("write the first MiB of %s: %w", o.Target, err)
	}
	rep.Written += int64(len(head.buf))
	// the source is spent (stream.Write read past its end): the decoder and
	// the read-ahead end, and src is ours again
	if dec != nil {
		dec.Close()
		dec = nil
	}
	cancel()
	ahead.stop()
	ahead = nil
	rep.Resumes = src.Resumes
	rep.Stream = time.Since(start)
	// the head read back too, then everything made durable
	if _, err := stream.Write(ctx, t, bytes.NewReader(head.buf), headArtifact(head.buf), stream.Options{Resume: true, ReadBack: t.back}); err != nil {
		return rep, fmt.Errorf("read-back verification failed on %s: %w", o.Target, err)
	}
	if err := t.sync(); err != nil {
		return rep, err
	}
	rep.ReadBack = time.Since(start) - rep.Stream
	// Every byte of [0, size) was read back from the target and found equal
	// to the bytes whose sha256 is p.SHA256, so what the disk holds hashes
	// to p.SHA256.
	rep.Bytes = prog.ReadBack + int64(len(head.buf))
	if rep.Bytes != p.Size {
		return rep, fmt.Errorf("agent bug: read back %d bytes of %s, the image has %d", rep.Bytes, o.Target, p.Size)
	}
	rep.SHA256 = p.SHA256
	rep.Direct = t.direct
	// Only now, with the image verified on the disk: the partition table
	// moves to the disk's end and the last partition grows to it.
	if t.capacity > p.Size {
		g, err := gpt.Grow(t.f, t.sectorSize(), t.capacity, GrowReserve)
		switch {
		case errors.Is(err, gpt.ErrNoGPT):
			rep.GrowNote = fmt.Sprintf("not grown: the image has no GPT (%v)", err)
		case err != nil:
			return rep, fmt.Errorf("the image was written and verified, but growing its last partition to the end of %s failed: %w; run the task again (the image is rewritten and the table grown again)", o.Target, err)
		default:
			rep.Grown = &g
		}
	}
	rep.Elapsed = time.Since(start)
	log.Info("image written and verified", "bytes", rep.Bytes, "elapsed", rep.Elapsed, "resumes", rep.Resumes, "directReadBack", t.direct)
	return rep, nil
}

// corruptOnError marks what the zstd decoder refuses (a corrupt or
// truncated compressed stream) as a corrupt image; the download's own
// failures (tagged by sourceTagged) pass through as they are.
type corruptOnError struct{ r io.Reader }

func (c corruptOnError) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == nil || errors.Is(err, io.EOF) {
		return n, err
	}
	var se *sourceError
	if errors.As(err, &se) {
		return n, se.err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, fmt.Errorf("%w: the zstd stream ends early (truncated on the server?)", stream.ErrCorrupt)
	}
	return n, fmt.Errorf("%w: the zstd stream does not decode: %v", stream.ErrCorrupt, err)
}

// sourceTagged marks the download's errors, so that corruptOnError tells
// them from the decoder's.
type sourceTagged struct{ r io.Reader }

type sourceError struct{ err error }

func (s *sourceError) Error() string { return s.err.Error() }
func (s *sourceError) Unwrap() error { return s.err }

func (s sourceTagged) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = &sourceError{err}
	}
	return n, err
}

// headArtifact describes the held-back head for its read-back.
func headArtifact(b []byte) *store.Artifact {
	sum := sha256.Sum256(b)
	return &store.Artifact{Name: "the first MiB", Format: "raw", Size: int64(len(b)), Digest: "sha256:" + hex.EncodeToString(sum[:])}
}

// headCapture passes the stream through and keeps its first cap(buf) bytes.
type headCapture struct {
	r   io.Reader
	buf []byte
}

func (h *headCapture) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if room := cap(h.buf) - len(h.buf); room > 0 && n > 0 {
		h.buf = append(h.buf, p[:min(n, room)]...)
	}
	return n, err
}

func wipeHead(t *target, n int64) error {
	// straight to the file: target.WriteAt would skip zeros on a new file
	if _, err := t.f.WriteAt(make([]byte, n), 0); err != nil {
		return err
	}
	return t.f.Sync()
}

func human(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func imageName(u string) string {
	if pu, err := url.Parse(u); err == nil {
		if i := strings.LastIndex(pu.Path, "/"); i >= 0 && i < len(pu.Path)-1 {
			return pu.Path[i+1:]
		}
	}
	return "image"
}
