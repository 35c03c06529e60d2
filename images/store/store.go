package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Store is a content-addressed artifact store in a directory:
//
//	blobs/sha256/<hex>                       blobs (zstd-compressed artifacts)
//	images/<name>/<version>/manifest.json    manifest (canonical bytes)
//	images/<name>/<version>/manifest.json.sig
type Store struct {
	dir string
}

// Open opens (creating if needed) the store at dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{"blobs/sha256", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func hexOf(digest string) (string, error) {
	if !digestRe.MatchString(digest) {
		return "", fmt.Errorf("store: %q is not a sha256 digest", digest)
	}
	return strings.TrimPrefix(digest, "sha256:"), nil
}

// BlobPath is where a blob with that digest lives.
func (s *Store) BlobPath(digest string) (string, error) {
	h, err := hexOf(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, "blobs", "sha256", h), nil
}

// PutBlob stores r's bytes and returns their digest and size. The blob
// appears under its name only once complete.
func (s *Store) PutBlob(r io.Reader) (string, int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		f.Close()
		return "", 0, fmt.Errorf("store: write blob: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	p, _ := s.BlobPath(d)
	if err := os.Rename(f.Name(), p); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// OpenBlob returns a reader of a blob that checks, when it reaches the end,
// that the bytes hash to digest and that none are missing; a mismatch is
// an error wrapping ErrDigest from Read, never a silent EOF.
func (s *Store) OpenBlob(digest string, size int64) (io.ReadCloser, error) {
	p, err := s.BlobPath(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: blob %s: %w", digest, ErrNotFound)
		}
		return nil, err
	}
	return NewVerifier(f, digest, size), nil
}

// Verifier wraps a reader and checks size and sha256 at EOF.
type Verifier struct {
	r      io.Reader
	c      io.Closer
	h      hash.Hash
	want   string
	size   int64
	n      int64
	failed error
}

// NewVerifier checks that r yields exactly size bytes (size < 0: any) hashing to digest.
func NewVerifier(r io.Reader, digest string, size int64) *Verifier {
	v := &Verifier{r: r, h: sha256.New(), want: digest, size: size}
	if c, ok := r.(io.Closer); ok {
		v.c = c
	}
	return v
}

func (v *Verifier) Read(p []byte) (int, error) {
	if v.failed != nil {
		return 0, v.failed
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.failed = fmt.Errorf("%w: more than the %d bytes expected", ErrDigest, v.size)
		return n, v.failed
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			v.failed = fmt.Errorf("%w: truncated: %d of %d bytes", ErrDigest, v.n, v.size)
			return n, v.failed
		}
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.failed = fmt.Errorf("%w: sha256 is %s, want %s (tampered or corrupted)", ErrDigest, got, v.want)
			return n, v.failed
		}
	}
	return n, err
}

// Close closes the underlying reader.
func (v *Verifier) Close() error {
	if v.c != nil {
		return v.c.Close()
	}
	return nil
}

// BlockSize is the zero-detection granularity of block maps; ranges are
// at most MaxRange long so a writer verifies and resumes in small steps.
const (
	BlockSize = 1 << 20
	MaxRange  = 16 << 20
)

// ComputeBlockMap scans a file for non-zero blocks.
func ComputeBlockMap(p string) (*BlockMap, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bm := &BlockMap{BlockSize: BlockSize, Ranges: []Range{}}
	buf := make([]byte, BlockSize)
	var off int64
	var cur *Range
	var h hash.Hash
	flush := func() {
		if cur != nil {
			cur.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
			bm.Ranges = append(bm.Ranges, *cur)
			cur = nil
		}
	}
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if isZero(buf[:n]) {
				flush()
			} else {
				if cur == nil || cur.Length >= MaxRange {
					flush()
					cur = &Range{Offset: off}
					h = sha256.New()
				}
				h.Write(buf[:n])
				cur.Length += int64(n)
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	flush()
	return bm, nil
}

var zeroBlock = make([]byte, BlockSize)

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// Import copies a build's artifacts into the store (zstd-compressed, with
// block maps), checking each file against the manifest's digest, then
// writes the manifest and, when priv is given, its signature. files maps
// artifact names to paths.
func (s *Store) Import(m *Manifest, files map[string]string, priv ed25519.PrivateKey) (*Manifest, error) {
	out := *m
	out.Artifacts = append([]Artifact(nil), m.Artifacts...)
	for i := range out.Artifacts {
		a := &out.Artifacts[i]
		p, ok := files[a.Name]
		if !ok {
			return nil, fmt.Errorf("store: import %s: no file given for artifact", a.Name)
		}
		bm, err := ComputeBlockMap(p)
		if err != nil {
			return nil, fmt.Errorf("store: import %s: %w", a.Name, err)
		}
		a.BlockMap = bm
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		h := sha256.New()
		var n int64
		go func() {
			zw, err := zstd.NewWriter(pw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			n, err = io.Copy(zw, io.TeeReader(f, h))
			if err == nil {
				err = zw.Close()
			}
			pw.CloseWithError(err)
		}()
		d, sz, err := s.PutBlob(pr)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("store: import %s: %w", a.Name, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != a.Digest || n != a.Size {
			return nil, fmt.Errorf("store: import %s: %w: file is %s (%d bytes), manifest says %s (%d bytes)", a.Name, ErrDigest, got, n, a.Digest, a.Size)
		}
		a.Stored = &Stored{Compression: "zstd", Digest: d, Size: sz}
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	mb, err := out.Marshal()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.dir, "images", out.Name, out.Version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(dir, "manifest.json.sig"))
	if err := atomicWrite(filepath.Join(dir, "manifest.json"), mb); err != nil {
		return nil, err
	}
	if priv != nil {
		if err := s.Sign(out.Name, out.Version, priv); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

func atomicWrite(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Ref names an image in the store.
type Ref struct {
	Name, Version string
	Signed        bool
}

func (r Ref) String() string { return r.Name + ":" + r.Version }

// ParseRef reads "name:version".
func ParseRef(s string) (Ref, error) {
	n, v, ok := strings.Cut(s, ":")
	if !ok || !nameRe.MatchString(n) || !verRe.MatchString(v) {
		return Ref{}, fmt.Errorf("%q is not an image reference; write NAME:VERSION, e.g. gpu-node:2026.11.1", s)
	}
	return Ref{Name: n, Version: v}, nil
}

// List returns every image in the store, sorted.
func (s *Store) List() ([]Ref, error) {
	var out []Ref
	names, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		vers, err := os.ReadDir(filepath.Join(s.dir, "images", n.Name()))
		if err != nil {
			continue
		}
		for _, v := range vers {
			base := filepath.Join(s.dir, "images", n.Name(), v.Name())
			if _, err := os.Stat(filepath.Join(base, "manifest.json")); err != nil {
				continue
			}
			_, serr := os.Stat(filepath.Join(base, "manifest.json.sig"))
			out = append(out, Ref{Name: n.Name(), Version: v.Name(), Signed: serr == nil})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func (s *Store) paths(name, version string) (string, string, error) {
	if !nameRe.MatchString(name) || !verRe.MatchString(version) {
		return "", "", fmt.Errorf("store: bad image reference %q:%q", name, version)
	}
	dir := filepath.Join(s.dir, "images", name, version)
	return filepath.Join(dir, "manifest.json"), filepath.Join(dir, "manifest.json.sig"), nil
}

// Sign (re)signs a stored manifest.
func (s *Store) Sign(name, version string, priv ed25519.PrivateKey) error {
	mp, sp, err := s.paths(name, version)
	if err != nil {
		return err
	}
	mb, err := os.ReadFile(mp)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: %s:%s: %w", name, version, ErrNotFound)
		}
		return err
	}
	if _, err := ParseManifest(mb); err != nil {
		return err
	}
	sig, err := Sign(mb, priv)
	if err != nil {
		return err
	}
	return atomicWrite(sp, sig)
}

// Manifest returns a stored manifest after checking its signature against
// the trusted keys. Unsigned or mis-signed manifests are refused.
func (s *Store) Manifest(name, version string, trusted ...ed25519.PublicKey) (*Manifest, error) {
	m, _, err := s.manifest(name, version, true, trusted)
	return m, err
}

// UnverifiedManifest returns a stored manifest without checking its
// signature, for display only.
func (s *Store) UnverifiedManifest(name, version string) (*Manifest, bool, error) {
	return s.manifest(name, version, false, nil)
}

func (s *Store) manifest(name, version string, verify bool, trusted []ed25519.PublicKey) (*Manifest, bool, error) {
	mp, sp, err := s.paths(name, version)
	if err != nil {
		return nil, false, err
	}
	mb, err := os.ReadFile(mp)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("store: %s:%s: %w", name, version, ErrNotFound)
		}
		return nil, false, err
	}
	sig, err := os.ReadFile(sp)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if verify {
		if _, err := Verify(mb, sig, trusted...); err != nil {
			return nil, false, fmt.Errorf("store: %s:%s: %w", name, version, err)
		}
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, false, err
	}
	return m, len(sig) > 0, nil
}

// OpenArtifact returns the uncompressed bytes of an artifact of a verified
// manifest; the reader fails with ErrDigest if the blob or its content do
// not match the manifest.
func (s *Store) OpenArtifact(a *Artifact) (io.ReadCloser, error) {
	if a.Stored == nil {
		return nil, fmt.Errorf("store: artifact %s has no stored blob", a.Name)
	}
	blob, err := s.OpenBlob(a.Stored.Digest, a.Stored.Size)
	if err != nil {
		return nil, err
	}
	if a.Stored.Compression == "none" {
		return &stack{NewVerifier(blob, a.Digest, a.Size), blob}, nil
	}
	zr, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1))
	if err != nil {
		blob.Close()
		return nil, err
	}
	return &stack{NewVerifier(zr, a.Digest, a.Size), closers{blob, zcloser{zr}}}, nil
}

type stack struct {
	io.Reader
	c io.Closer
}

func (s *stack) Close() error { return s.c.Close() }

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type zcloser struct{ d *zstd.Decoder }

func (z zcloser) Close() error { z.d.Close(); return nil }

// VerifyImage checks the signature and then every artifact: the stored blob
// and the uncompressed content against their digests.
func (s *Store) VerifyImage(name, version string, trusted ...ed25519.PublicKey) (*Manifest, error) {
	m, err := s.Manifest(name, version, trusted...)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i := range m.Artifacts {
		a := &m.Artifacts[i]
		r, err := s.OpenArtifact(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
			continue
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
		}
	}
	if len(errs) > 0 {
		return m, fmt.Errorf("store: %s:%s: %w", name, version, errors.Join(errs...))
	}
	return m, nil
}
