package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// Errors a caller branches on (with imgstore.ErrUnsigned, ErrBadSignature,
// ErrUntrustedKey and ErrDigest, which Import wraps).
var (
	ErrNotBundle = errors.New("not a Rackstrap bundle")
	ErrTruncated = errors.New("bundle is truncated or damaged")
	ErrHostile   = errors.New("bundle has an unsafe entry")
	ErrBusy      = errors.New("another import is running")
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Layout is an artifact store: where imported bundles land.
type Layout struct{ Dir string }

// BootDir holds iPXE binaries, kernels and initramfs: serve's --artifacts.
func (l Layout) BootDir() string { return filepath.Join(l.Dir, "boot") }

// ImageStore is the images/store directory: serve's --image-store.
func (l Layout) ImageStore() string { return filepath.Join(l.Dir, "images") }

// FirmwareDir holds firmware packages and their signatures.
func (l Layout) FirmwareDir() string { return filepath.Join(l.Dir, "firmware") }

// ProfilesDir holds hardware profiles (serve's --profile files).
func (l Layout) ProfilesDir() string { return filepath.Join(l.Dir, "profiles") }

// BaselinesDir holds firmware baselines.
func (l Layout) BaselinesDir() string { return filepath.Join(l.Dir, "baselines") }

// RecordsDir holds one record per imported bundle.
func (l Layout) RecordsDir() string { return filepath.Join(l.Dir, "bundles") }

func (l Layout) stagingDir(digest string) string {
	return filepath.Join(l.Dir, ".staging", digest[:32])
}

// ImportOptions says where a bundle goes and whom to trust.
type ImportOptions struct {
	Dir  string   // the artifact store (Layout)
	Keys *Keyring // the trust store
	Log  *slog.Logger
	Now  func() time.Time
	// VerifyOnly checks the bundle (signature, every entry, image
	// signatures) and writes nothing; Dir is not used.
	VerifyOnly bool
}

// Result says what an import did.
type Result struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // sha256 of the manifest
	Signer string `json:"signer"`
	// Entries in the bundle; Added were written, Present were already in
	// the store, Resumed had been staged by an interrupted import.
	Entries         int      `json:"entries"`
	Added           int      `json:"added"`
	Present         int      `json:"present"`
	Resumed         int      `json:"resumed"`
	AlreadyImported bool     `json:"alreadyImported"`
	Learned         []string `json:"learnedKeys,omitempty"`
}

// Record is what an import leaves in bundles/<digest>.json: written last,
// so a bundle is marked imported only once every entry is in place.
type Record struct {
	Result
	Imported string   `json:"imported"`
	Manifest Manifest `json:"manifest"`
}

// ImportFile imports the bundle in file.
func ImportFile(ctx context.Context, file string, opts ImportOptions) (*Result, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("bundle import: %w", err)
	}
	defer f.Close()
	return Import(ctx, f, opts)
}

// Import reads a bundle from r, checks its signature against the trust
// store and every entry's size and sha256, staging them in the artifact
// store's filesystem; only when all are good does it move them into place
// and record the bundle as imported. Importing the same bundle again adds
// nothing; an interrupted import resumes from what it had staged.
func Import(ctx context.Context, r io.Reader, opts ImportOptions) (*Result, error) {
	if opts.Keys == nil {
		return nil, errors.New("bundle import: no trust store; pass --keys-dir (see 'rackstrap keys trust')")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	lay := Layout{opts.Dir}
	if !opts.VerifyOnly {
		for _, d := range []string{lay.RecordsDir(), filepath.Join(lay.Dir, ".staging")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, fmt.Errorf("bundle import: %w", err)
			}
		}
		unlock, err := lockDir(lay.Dir)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}

	br := bufio.NewReaderSize(r, 1<<16)
	var src io.Reader = br
	if magic, _ := br.Peek(4); bytes.Equal(magic, zstdMagic) {
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return nil, fmt.Errorf("bundle import: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	rd := &reader{tr: tar.NewReader(src)}

	// The manifest, its signature and the signer's rotations come first.
	h, err := rd.next("the manifest")
	if err != nil {
		return nil, err
	}
	if h.Name != tarManifest {
		return nil, fmt.Errorf("bundle import: %w: the first entry is %q, not %s", ErrNotBundle, h.Name, tarManifest)
	}
	mb, err := rd.small(h, MaxManifestSize)
	if err != nil {
		return nil, err
	}
	var sig, rotb []byte
	h, err = rd.next("the signature")
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if h == nil || h.Name != tarSignature {
		return nil, fmt.Errorf("bundle import: %w: the bundle has no %s; export it with a signing key ('rackstrap keys init', 'rackstrap bundle export')", imgstore.ErrUnsigned, tarSignature)
	}
	if sig, err = rd.small(h, MaxSignatureSize); err != nil {
		return nil, err
	}
	h, err = rd.next("the first entry")
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if h != nil && h.Name == tarRotations {
		if rotb, err = rd.small(h, MaxRotationsSize); err != nil {
			return nil, err
		}
		h, err = rd.next("the first entry")
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	var rots []Rotation
	if rotb != nil {
		if rots, err = ParseRotations(rotb); err != nil {
			return nil, fmt.Errorf("bundle import: %w", err)
		}
	}
	trusted, learned, err := opts.Keys.Endorsed(rots)
	if err != nil {
		return nil, err
	}
	signer, err := imgstore.Verify(bundleStatement(mb), sig, trusted...)
	if err != nil {
		switch {
		case errors.Is(err, imgstore.ErrUntrustedKey):
			return nil, fmt.Errorf("bundle import: manifest signature: %w; if you trust that signer, add its public key with 'rackstrap keys trust FILE'", err)
		case errors.Is(err, imgstore.ErrBadSignature):
			return nil, fmt.Errorf("bundle import: manifest signature: %w: the manifest was tampered with; get a fresh copy of the bundle", err)
		}
		return nil, fmt.Errorf("bundle import: manifest signature: %w", err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("bundle import: %w", err)
	}
	digest := fmt.Sprintf("%x", sha256.Sum256(mb))
	res := &Result{Name: m.Name, Digest: "sha256:" + digest, Signer: imgstore.KeyID(signer), Entries: len(m.Entries)}
	recordPath := filepath.Join(lay.RecordsDir(), digest+".json")
	if _, err := os.Stat(recordPath); err == nil && !opts.VerifyOnly && allPresent(lay, m) {
		res.AlreadyImported, res.Present = true, len(m.Entries)
		return res, nil
	}

	stage := lay.stagingDir(digest)
	if !opts.VerifyOnly {
		if err := os.MkdirAll(stage, 0o755); err != nil {
			return nil, fmt.Errorf("bundle import: %w", err)
		}
	}
	staged := map[string]bool{}
	kept := map[string][]byte{} // image manifests and signatures, in VerifyOnly mode
	for i, e := range m.Entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if i > 0 || h == nil {
			if h, err = rd.next(e.Path); err != nil {
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("bundle import: %w: it ends before entry %s (%d of %d); copy the bundle again", ErrTruncated, e.Path, i+1, len(m.Entries))
				}
				return nil, err
			}
		}
		if h.Name != tarFiles+e.Path {
			return nil, fmt.Errorf("bundle import: entry %d is %q where the manifest lists %s: the bundle was tampered with; get a fresh copy", i+1, h.Name, e.Path)
		}
		if h.Size != e.Size {
			return nil, fmt.Errorf("bundle import: %s: %w: %d bytes in the tar, the manifest says %d: the bundle was tampered with; get a fresh copy", e.Path, imgstore.ErrDigest, h.Size, e.Size)
		}
		dst := filepath.Join(lay.Dir, filepath.FromSlash(e.Path))
		st := filepath.Join(stage, filepath.FromSlash(e.Path))
		switch {
		case opts.VerifyOnly:
			var buf bytes.Buffer
			var w io.Writer = io.Discard
			if e.Kind == KindImage && strings.HasPrefix(path.Base(e.Path), "manifest.json") && e.Size <= MaxManifestSize {
				w = &buf
			}
			if err = rd.verify(e, w); err == nil && w == &buf {
				kept[e.Path] = buf.Bytes()
			}
		case sameFile(dst, e):
			res.Present++
			err = rd.verify(e, io.Discard)
		case sameFile(st, e):
			res.Resumed++
			staged[e.Path] = true
			err = rd.verify(e, io.Discard)
		default:
			err = rd.stage(e, st)
			staged[e.Path] = true
			res.Added++
		}
		if err != nil {
			return nil, err
		}
	}
	if len(m.Entries) > 0 {
		h, err = rd.next("the end")
	} else if h != nil {
		err = nil
	} else {
		err = io.EOF
	}
	if err == nil {
		return nil, fmt.Errorf("bundle import: %w: entry %q after the last one the manifest lists", ErrHostile, h.Name)
	}
	if !errors.Is(err, io.EOF) {
		return nil, err
	}
	// Images must carry a signature this site trusts, as the controller
	// will require when it serves them.
	for _, e := range m.Entries {
		if e.Kind != KindImage || path.Base(e.Path) != "manifest.json" {
			continue
		}
		get := func(p string) ([]byte, error) {
			if opts.VerifyOnly {
				return kept[p], nil
			}
			if staged[p] {
				return os.ReadFile(filepath.Join(stage, filepath.FromSlash(p)))
			}
			return os.ReadFile(filepath.Join(lay.Dir, filepath.FromSlash(p)))
		}
		imb, err := get(e.Path)
		if err != nil {
			return nil, err
		}
		isig, _ := get(e.Path + ".sig")
		if _, err := imgstore.Verify(imb, isig, trusted...); err != nil {
			return nil, fmt.Errorf("bundle import: image %s: %w; the image must be signed by a key this site trusts", strings.Replace(path.Dir(strings.TrimPrefix(e.Path, "images/images/")), "/", ":", 1), err)
		}
	}
	if opts.VerifyOnly {
		return res, nil
	}
	// Every entry checked: move the staged ones into place (same
	// filesystem, so each rename is atomic), then learn endorsed keys,
	// then record the bundle.
	for _, e := range m.Entries {
		if !staged[e.Path] {
			continue
		}
		dst := filepath.Join(lay.Dir, filepath.FromSlash(e.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("bundle import: %w", err)
		}
		if err := os.Rename(filepath.Join(stage, filepath.FromSlash(e.Path)), dst); err != nil {
			return nil, fmt.Errorf("bundle import: move %s into place: %w", e.Path, err)
		}
	}
	for _, pub := range learned {
		if _, err := opts.Keys.Trust(pub); err != nil {
			return nil, err
		}
		for _, r := range rots {
			if r.New == imgstore.KeyID(pub) {
				if err := opts.Keys.keepRotation(r); err != nil {
					return nil, err
				}
			}
		}
		res.Learned = append(res.Learned, imgstore.KeyID(pub))
		opts.Log.Info("bundle import: trusting a rotated key endorsed by a trusted one", "key", imgstore.KeyID(pub))
	}
	rec := Record{Result: *res, Imported: opts.Now().UTC().Format(time.RFC3339), Manifest: *m}
	rb, _ := json.MarshalIndent(rec, "", "  ")
	if err := atomicWrite(recordPath, append(rb, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("bundle import: record: %w", err)
	}
	if err := os.RemoveAll(stage); err != nil {
		opts.Log.Warn("bundle import: could not remove the staging dir", "dir", stage, "err", err)
	}
	return res, nil
}

// Imported lists the records of the bundles imported into dir.
func Imported(dir string) ([]Record, error) {
	ents, err := os.ReadDir(Layout{dir}.RecordsDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []Record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(Layout{dir}.RecordsDir(), e.Name()))
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("bundle record %s: %w", e.Name(), err)
		}
		out = append(out, r)
	}
	return out, nil
}

func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".import.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bundle import: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("bundle import: %w into %s; wait for it to finish", ErrBusy, dir)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// sameFile reports whether p holds exactly e's bytes.
func sameFile(p string, e Entry) bool {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return false
	}
	sum, _, err := hashFile(p)
	return err == nil && sum == e.SHA256
}

func allPresent(l Layout, m *Manifest) bool {
	for _, e := range m.Entries {
		fi, err := os.Stat(filepath.Join(l.Dir, filepath.FromSlash(e.Path)))
		if err != nil || fi.Size() != e.Size {
			return false
		}
	}
	return true
}

// reader reads a bundle's tar, refusing anything but plain files with
// safe names.
type reader struct {
	tr *tar.Reader
}

func (r *reader) next(what string) (*tar.Header, error) {
	h, err := r.tr.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("bundle import: %w: reading %s: %v; copy the bundle again", ErrTruncated, what, err)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tars write '\x00'
	default:
		return nil, fmt.Errorf("bundle import: %w: %q is a %s, only plain files are allowed", ErrHostile, h.Name, typeName(h.Typeflag))
	}
	if h.Size < 0 || h.Size > MaxEntrySize {
		return nil, fmt.Errorf("bundle import: %w: %q claims %d bytes", ErrHostile, h.Name, h.Size)
	}
	switch h.Name {
	case tarManifest, tarSignature, tarRotations:
		return h, nil
	}
	rel, ok := strings.CutPrefix(h.Name, tarFiles)
	if !ok {
		return nil, fmt.Errorf("bundle import: %w: %q is not a bundle entry", ErrHostile, h.Name)
	}
	if err := checkPath(rel); err != nil {
		return nil, fmt.Errorf("bundle import: %w: %v", ErrHostile, err)
	}
	return h, nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeDir:
		return "directory"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

func (r *reader) small(h *tar.Header, limit int64) ([]byte, error) {
	if h.Size > limit {
		return nil, fmt.Errorf("bundle import: %w: %s is %d bytes, more than the %d allowed", ErrHostile, h.Name, h.Size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(r.tr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("bundle import: %w: reading %s: %v; copy the bundle again", ErrTruncated, h.Name, err)
	}
	return b, nil
}

// verify copies the current entry's bytes to w and checks them.
func (r *reader) verify(e Entry, w io.Writer) error {
	v := imgstore.NewVerifier(r.tr, "sha256:"+e.SHA256, e.Size)
	if _, err := io.Copy(w, v); err != nil {
		if errors.Is(err, imgstore.ErrDigest) {
			return fmt.Errorf("bundle import: %s: %w; the bundle was tampered with or damaged, nothing was imported: get a fresh copy", e.Path, err)
		}
		return fmt.Errorf("bundle import: %s: %w: %v; copy the bundle again", e.Path, ErrTruncated, err)
	}
	return nil
}

// stage writes the current entry to p through p.part, renamed once its
// digest checks.
func (r *reader) stage(e Entry, p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("bundle import: %w", err)
	}
	part := p + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("bundle import: %w", err)
	}
	err = r.verify(e, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		return err
	}
	return os.Rename(part, p)
}
