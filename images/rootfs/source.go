package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Skipped counts what a source held that an image does not carry.
type Skipped struct {
	// Devices are device nodes, FIFOs and sockets: devtmpfs makes them at boot.
	Devices int
}

// AddDir overlays the host directory dir onto the tree, keeping modes and
// owners; content is read from dir when an output is written.
func (t *Tree) AddDir(dir, layer string) (Skipped, error) {
	var sk Skipped
	root, err := filepath.Abs(dir)
	if err != nil {
		return sk, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return sk, fmt.Errorf("layer %s: %w", layer, err)
	}
	if !fi.IsDir() {
		return sk, fmt.Errorf("layer %s: %s is not a directory", layer, dir)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("layer %s: %w", layer, err)
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("layer %s: %w", layer, err)
		}
		e := Entry{Path: rel, Mode: info.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), Layer: layer}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.UID, e.GID = int(st.Uid), int(st.Gid)
		}
		switch {
		case info.Mode().IsRegular():
			e.Size, e.Src = info.Size(), p
		case info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if e.Target, err = os.Readlink(p); err != nil {
				return fmt.Errorf("layer %s: %w", layer, err)
			}
		default:
			sk.Devices++
			return nil
		}
		if rel == "." {
			e.Path = "."
		}
		_, err = t.Put(e)
		if err != nil {
			return fmt.Errorf("layer %s: /%s: %w", layer, rel, err)
		}
		return nil
	})
	return sk, err
}

// Decompress detects gzip, zstd, xz or bzip2 by magic bytes and returns a
// reader of the plain stream (r itself when uncompressed).
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return z, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		z, err := xz.NewReader(br)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(z), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	}
	return io.NopCloser(br), nil
}

// AddTarball overlays a (possibly compressed) tar file onto the tree.
// Regular files are extracted into scratch (a directory the caller removes).
func (t *Tree) AddTarball(file, layer, scratch string) (Skipped, error) {
	f, err := os.Open(file)
	if err != nil {
		return Skipped{}, fmt.Errorf("layer %s: %w", layer, err)
	}
	defer f.Close()
	sk, err := t.AddTar(f, layer, scratch)
	if err != nil {
		return sk, fmt.Errorf("layer %s: tarball %s: %w", layer, file, err)
	}
	return sk, nil
}

// AddTar overlays a tar stream (possibly compressed) onto the tree, applying
// OCI whiteouts (.wh.NAME removes NAME, .wh..wh..opq empties a directory of
// what lower layers put there).
func (t *Tree) AddTar(r io.Reader, layer, scratch string) (Skipped, error) {
	return t.addTar(r, layer, scratch, MaxTarBytes)
}

// MaxTarBytes bounds what one tarball may expand to. Sparse entries make
// holes out of nothing, so a tiny hostile archive could otherwise fill the
// disk; no root filesystem layer comes near this.
const MaxTarBytes = 1 << 40

func (t *Tree) addTar(r io.Reader, layer, scratch string, limit int64) (Skipped, error) {
	var sk Skipped
	var total int64
	plain, err := Decompress(r)
	if err != nil {
		return sk, fmt.Errorf("read compressed stream: %w; the file is damaged or truncated, re-create it", err)
	}
	defer plain.Close()
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return sk, err
	}
	tail := &tailReader{r: plain}
	tr := tar.NewReader(tail)
	added := map[string]bool{}
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return sk, fmt.Errorf("no entries; is it a tar file?")
			}
			// archive/tar also reports a clean io.EOF when the stream stops
			// between entries; a complete archive ends with two zero blocks.
			if !tail.endsInZeroBlocks() {
				return sk, fmt.Errorf("truncated after %d entries (no end-of-archive marker); the tarball is incomplete, copy or re-create it", n)
			}
			return sk, nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return sk, fmt.Errorf("truncated after %d entries (unexpected end of file); the tarball is incomplete, copy or re-create it", n)
			}
			return sk, fmt.Errorf("after %d entries: %w; the tarball is damaged, re-create it", n, err)
		}
		n++
		c, err := Clean(h.Name)
		if err != nil {
			return sk, fmt.Errorf("entry %q escapes the tree with '..'; rebuild the tarball with paths relative to its root", h.Name)
		}
		dir, base := path.Split(c)
		if base == ".wh..wh..opq" {
			d := strings.TrimSuffix(dir, "/")
			if d == "" {
				d = "."
			}
			if r, err := t.Resolve(d); err == nil {
				prefix := r + "/"
				if r == "." {
					prefix = ""
				}
				for k := range t.m {
					if strings.HasPrefix(k, prefix) && k != "." && !added[k] {
						delete(t.m, k)
					}
				}
			}
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			if err := t.Remove(dir + strings.TrimPrefix(base, ".wh.")); err != nil {
				return sk, err
			}
			continue
		}
		e := Entry{Path: c, Mode: fs.FileMode(h.Mode) & fs.ModePerm, UID: h.Uid, GID: h.Gid, Layer: layer}
		if h.Mode&04000 != 0 {
			e.Mode |= fs.ModeSetuid
		}
		if h.Mode&02000 != 0 {
			e.Mode |= fs.ModeSetgid
		}
		if h.Mode&01000 != 0 {
			e.Mode |= fs.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Mode |= fs.ModeDir
		case tar.TypeSymlink:
			e.Mode |= fs.ModeSymlink
			e.Target = h.Linkname
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use TypeRegA
			dst := filepath.Join(scratch, strconv.Itoa(len(t.m))+"-"+strconv.Itoa(n))
			w, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return sk, err
			}
			if h.Size > limit-total {
				w.Close()
				return sk, fmt.Errorf("entry %q is %d bytes: the archive expands past %d bytes; it is not a root filesystem layer", h.Name, h.Size, limit)
			}
			m, err := io.Copy(w, tr)
			total += m
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return sk, fmt.Errorf("truncated inside entry %q (unexpected end of file); the tarball is incomplete, copy or re-create it", h.Name)
				}
				return sk, fmt.Errorf("entry %q: %w", h.Name, err)
			}
			e.Size, e.Src = m, dst
		case tar.TypeLink:
			lc, err := Clean(h.Linkname)
			if err != nil {
				return sk, fmt.Errorf("hard link %q -> %q escapes the tree", h.Name, h.Linkname)
			}
			src := t.m[lc]
			if src == nil || !src.IsRegular() {
				return sk, fmt.Errorf("hard link %q points to %q, which is not an earlier regular file", h.Name, h.Linkname)
			}
			// a hard link shares its target's inode: content, mode and owner
			e.Size, e.Src, e.Data = src.Size, src.Src, src.Data
			e.Mode, e.UID, e.GID = src.Mode, src.UID, src.GID
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			sk.Devices++
			continue
		default:
			continue // pax/GNU metadata records are consumed by archive/tar
		}
		p, err := t.Put(e)
		if err != nil {
			return sk, fmt.Errorf("entry %q: %w", h.Name, err)
		}
		added[p] = true
	}
}

// tailReader remembers the last 1024 bytes read through it.
type tailReader struct {
	r    io.Reader
	last [1024]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	b := p[:n]
	if len(b) >= len(t.last) {
		copy(t.last[:], b[len(b)-len(t.last):])
	} else {
		copy(t.last[:], t.last[len(b):])
		copy(t.last[len(t.last)-len(b):], b)
	}
	t.n += int64(n)
	return n, err
}

func (t *tailReader) endsInZeroBlocks() bool {
	if t.n < int64(len(t.last)) {
		return false
	}
	for _, c := range t.last {
		if c != 0 {
			return false
		}
	}
	return true
}
