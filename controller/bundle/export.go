package bundle

import (
	"archive/tar"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// Names of the bundle's own tar entries; blobs follow as files/<path>.
const (
	tarManifest  = "manifest.json"
	tarSignature = "manifest.json.sig"
	tarRotations = "rotations.json"
	tarFiles     = "files/"
)

// Source is one file to pack.
type Source struct {
	Kind Kind
	File string // on this machine
	Name string // name under the kind's directory (default: the file's base name)
}

// ExportOptions says what goes into a bundle.
type ExportOptions struct {
	Name    string
	Created time.Time
	Files   []Source
	// ImageStore and Images: signed images (NAME:VERSION) packed with their
	// manifests, signatures and blobs. An unsigned image is refused.
	ImageStore string
	Images     []string
	// Signer signs the manifest; Rotations (from the keyring) travel with
	// it so sites that trust an earlier key accept it.
	Signer    ed25519.PrivateKey
	Rotations []Rotation
	// Compress writes a zstd-compressed tar.
	Compress bool
}

type packed struct {
	Entry
	src string
}

// Export writes a signed bundle to w, streaming every file (each is read
// twice: once to hash it for the manifest, once into the tar).
func Export(ctx context.Context, w io.Writer, opts ExportOptions) (*Manifest, error) {
	if opts.Signer == nil {
		return nil, fmt.Errorf("bundle export: %w; create one with 'rackstrap keys init'", ErrNoSigningKey)
	}
	if opts.Created.IsZero() {
		opts.Created = time.Now()
	}
	var items []packed
	add := func(kind Kind, p, src string) error {
		sum, size, err := hashFile(src)
		if err != nil {
			return fmt.Errorf("bundle export: %s: %w", src, err)
		}
		items = append(items, packed{Entry{Path: p, Kind: kind, Size: size, SHA256: sum}, src})
		return nil
	}
	for _, s := range opts.Files {
		dir, ok := kindDirs[s.Kind]
		if !ok || s.Kind == KindImage {
			return nil, fmt.Errorf("bundle export: %s: kind %q cannot be packed as a file", s.File, s.Kind)
		}
		name := s.Name
		if name == "" {
			name = filepath.Base(s.File)
		}
		if err := add(s.Kind, path.Join(dir, filepath.ToSlash(name)), s.File); err != nil {
			return nil, err
		}
	}
	if len(opts.Images) > 0 {
		st, err := imgstore.Open(opts.ImageStore)
		if err != nil {
			return nil, fmt.Errorf("bundle export: image store: %w", err)
		}
		blobs := map[string]bool{}
		for _, ref := range opts.Images {
			r, err := imgstore.ParseRef(ref)
			if err != nil {
				return nil, fmt.Errorf("bundle export: %w", err)
			}
			m, signed, err := st.UnverifiedManifest(r.Name, r.Version)
			if err != nil {
				return nil, fmt.Errorf("bundle export: image %s: %w", ref, err)
			}
			if !signed {
				return nil, fmt.Errorf("bundle export: image %s is not signed; sign it with 'rackstrap image sign %s --key KEY' first", ref, ref)
			}
			rel := path.Join("images", r.Name, r.Version)
			for _, f := range []string{"manifest.json", "manifest.json.sig"} {
				if err := add(KindImage, path.Join("images", rel, f), filepath.Join(st.Dir(), filepath.FromSlash(rel), f)); err != nil {
					return nil, err
				}
			}
			for _, a := range m.Artifacts {
				if a.Stored == nil || blobs[a.Stored.Digest] {
					continue
				}
				blobs[a.Stored.Digest] = true
				bp, err := st.BlobPath(a.Stored.Digest)
				if err != nil {
					return nil, err
				}
				if err := add(KindImage, path.Join("images", "blobs", "sha256", strings.TrimPrefix(a.Stored.Digest, "sha256:")), bp); err != nil {
					return nil, err
				}
				if items[len(items)-1].SHA256 != strings.TrimPrefix(a.Stored.Digest, "sha256:") {
					return nil, fmt.Errorf("bundle export: image %s: blob %s: %w; the image store is corrupt, rebuild or re-import the image", ref, a.Stored.Digest, imgstore.ErrDigest)
				}
			}
		}
	}
	m := &Manifest{SchemaVersion: ManifestVersion, Type: manifestType, Name: opts.Name, Created: opts.Created.UTC().Format(time.RFC3339)}
	for _, it := range items {
		m.Entries = append(m.Entries, it.Entry)
	}
	if m.Entries == nil {
		m.Entries = []Entry{}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("bundle export: %w", err)
	}
	mb, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := imgstore.Sign(bundleStatement(mb), opts.Signer)
	if err != nil {
		return nil, err
	}

	out := w
	var zw *zstd.Encoder
	if opts.Compress {
		if zw, err = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1)); err != nil {
			return nil, err
		}
		out = zw
	}
	tw := tar.NewWriter(out)
	mtime := opts.Created.UTC().Truncate(time.Second)
	put := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	meta := []struct {
		name string
		data []byte
	}{{tarManifest, mb}, {tarSignature, sig}}
	if len(opts.Rotations) > 0 {
		rb, _ := json.MarshalIndent(opts.Rotations, "", "  ")
		meta = append(meta, struct {
			name string
			data []byte
		}{tarRotations, rb})
	}
	for _, e := range meta {
		if err := put(e.name, int64(len(e.data)), strings.NewReader(string(e.data))); err != nil {
			return nil, fmt.Errorf("bundle export: %w", err)
		}
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.Open(it.src)
		if err != nil {
			return nil, fmt.Errorf("bundle export: %w", err)
		}
		// The verifier makes a file changed since it was hashed an error,
		// not a bundle whose manifest lies.
		err = put(tarFiles+it.Path, it.Size, imgstore.NewVerifier(f, "sha256:"+it.SHA256, it.Size))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bundle export: %s: %w", it.src, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ExportFile writes the bundle to file, through a temporary file renamed
// into place once complete.
func ExportFile(ctx context.Context, file string, opts ExportOptions) (*Manifest, error) {
	f, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file)+"-")
	if err != nil {
		return nil, fmt.Errorf("bundle export: %w", err)
	}
	defer os.Remove(f.Name())
	m, err := Export(ctx, f, opts)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return nil, err
	}
	return m, os.Rename(f.Name(), file)
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, errors.New("not a regular file")
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hexDigest(h.Sum(nil)), n, nil
}
