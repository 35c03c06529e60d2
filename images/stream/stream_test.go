package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/images/store"
)

// image returns a 40 MiB test image with data, zero gaps and a tail, and
// its artifact with a block map.
func image(t *testing.T) ([]byte, *store.Artifact) {
	t.Helper()
	img := make([]byte, 40<<20+12345)
	pattern := make([]byte, 4096)
	for i := range pattern {
		pattern[i] = byte(i*7 + 1)
	}
	for i := 0; i < 20<<20; i += len(pattern) { // 20 MiB of data: two ranges (16 MiB max)
		copy(img[i:], pattern)
		img[i] = byte(i >> 12)
	}
	copy(img[30<<20:], "a lonely block in the middle")
	copy(img[len(img)-5:], "tail!")
	p := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	bm, err := store.ComputeBlockMap(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	return img, &store.Artifact{Name: "img.raw", Format: "raw", Size: int64(len(img)), Digest: "sha256:" + hex.EncodeToString(sum[:]), BlockMap: bm}
}

func target(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func contents(t *testing.T, f *os.File, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	f.ReadAt(b, 0)
	return b
}

func TestWriteGood(t *testing.T) {
	t.Parallel()
	img, a := image(t)
	if len(a.BlockMap.Ranges) != 4 {
		t.Fatalf("block map has %d ranges, want 4: %+v", len(a.BlockMap.Ranges), a.BlockMap.Ranges)
	}
	dst := target(t)
	calls := 0
	p, err := Write(context.Background(), dst, bytes.NewReader(img), a, Options{Progress: func(Progress) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(contents(t, dst, len(img)), img) {
		t.Fatal("target differs from the image")
	}
	if p.Zero < 15<<20 || p.Written+p.Zero != int64(len(img)) || calls < 4 {
		t.Errorf("progress = %+v after %d calls", p, calls)
	}
}

func TestWriteBadSources(t *testing.T) {
	t.Parallel()
	img, a := image(t)
	tests := map[string]struct {
		src  func() []byte
		want string
	}{
		"truncated": {
			src:  func() []byte { return img[:25<<20] },
			want: "source ended at byte 26214400 of",
		},
		"corrupt in the second range": {
			src: func() []byte {
				b := bytes.Clone(img)
				b[17<<20] ^= 1
				return b
			},
			want: "bytes 16777216..20971520 hash to",
		},
		"data in a zero gap": {
			src: func() []byte {
				b := bytes.Clone(img)
				b[25<<20] = 9
				return b
			},
			want: "are not zero but the block map says they are",
		},
		"too long": {
			src:  func() []byte { return append(bytes.Clone(img), 0) },
			want: "holds more than the",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dst := target(t)
			_, err := Write(context.Background(), dst, bytes.NewReader(tc.src()), a, Options{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write() = %v, want ErrCorrupt with %q", err, tc.want)
			}
			if name == "corrupt in the second range" {
				got := contents(t, dst, 20<<20)
				if !bytes.Equal(got[:16<<20], img[:16<<20]) || !allZero(got[16<<20:]) {
					t.Error("bytes of the corrupt range reached the target")
				}
			}
		})
	}
	t.Run("wrong whole digest", func(t *testing.T) {
		t.Parallel()
		b := *a
		b.BlockMap = nil
		b.Digest = "sha256:" + strings.Repeat("0", 64)
		_, err := Write(context.Background(), target(t), bytes.NewReader(img), &b, Options{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "do not boot the target") {
			t.Fatalf("Write() = %v", err)
		}
	})
}

func TestResumeAndRange(t *testing.T) {
	t.Parallel()
	img, a := image(t)
	dst := target(t)
	// first attempt dies after 18 MiB
	if _, err := Write(context.Background(), dst, bytes.NewReader(img[:18<<20]), a, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("interrupted Write() = %v", err)
	}
	p, err := Write(context.Background(), dst, bytes.NewReader(img), a, Options{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.AlreadyGood < 16<<20 || p.Written > 6<<20 {
		t.Errorf("resume progress = %+v, want the first 16 MiB found good and little rewritten", p)
	}
	if !bytes.Equal(contents(t, dst, len(img)), img) {
		t.Fatal("resumed target differs from the image")
	}

	// a range write touches only its range, over garbage, zeros included
	dst2 := target(t)
	garbage := bytes.Repeat([]byte{0xff}, len(img))
	dst2.WriteAt(garbage, 0)
	from, to := int64(10<<20), int64(32<<20)
	if _, err := Write(context.Background(), dst2, bytes.NewReader(img), a, Options{From: from, To: to, WriteZeros: true}); err != nil {
		t.Fatal(err)
	}
	got := contents(t, dst2, len(img))
	if !bytes.Equal(got[from:to], img[from:to]) || !bytes.Equal(got[:from], garbage[:from]) || !bytes.Equal(got[to:], garbage[to:]) {
		t.Error("range write wrote outside its range or missed part of it")
	}
}

func TestWriteFromStore(t *testing.T) {
	t.Parallel()
	img, a := image(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "img.raw")
	os.WriteFile(p, img, 0o644)
	s, _ := store.Open(filepath.Join(dir, "store"))
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	store.GenerateKey(priv, pub)
	k, _ := store.LoadPrivateKey(priv)
	pk, _ := store.LoadPublicKey(pub)
	m := &store.Manifest{SchemaVersion: 1, Name: "img", Version: "1", SpecDigest: a.Digest, BuildTime: "t", Builder: "rackstrap",
		Artifacts: []store.Artifact{{Name: a.Name, Format: "raw", Size: a.Size, Digest: a.Digest}}}
	if _, err := s.Import(m, map[string]string{"img.raw": p}, k); err != nil {
		t.Fatal(err)
	}
	vm, err := s.Manifest("img", "1", pk)
	if err != nil {
		t.Fatal(err)
	}
	art, _ := vm.Artifact("raw")
	r, err := s.OpenArtifact(art)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dst := target(t)
	if _, err := Write(context.Background(), dst, r, art, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(contents(t, dst, len(img)), img) {
		t.Fatal("target differs")
	}
}

// lying is a disk that reads back one byte wrong.
type lying struct {
	*os.File
	at int64
}

func (l lying) ReadAt(p []byte, off int64) (int, error) {
	n, err := l.File.ReadAt(p, off)
	if l.at >= off && l.at < off+int64(n) {
		p[l.at-off] ^= 0x40
	}
	return n, err
}

// zeroer counts ZeroRange calls and zeroes by writing.
type zeroer struct {
	*os.File
	calls, bytes int64
}

func (z *zeroer) ZeroRange(off, n int64) error {
	z.calls++
	z.bytes += n
	_, err := z.File.WriteAt(make([]byte, n), off)
	return err
}

func TestReadBack(t *testing.T) {
	t.Parallel()
	img, a := image(t)
	// a sparse target is given its length first: a zero gap past the end
	// of what is written so far would read back short
	target := func(t *testing.T) *os.File {
		f := target(t)
		if err := f.Truncate(int64(len(img))); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Run("every byte read back", func(t *testing.T) {
		t.Parallel()
		dst := target(t)
		p, err := Write(context.Background(), dst, bytes.NewReader(img), a, Options{ReadBack: dst, From: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if p.ReadBack != int64(len(img))-1<<20 {
			t.Errorf("read back %d bytes, want %d (all of [From, end), zero gaps included)", p.ReadBack, len(img)-1<<20)
		}
	})
	for name, at := range map[string]int64{"in a data range": 17<<20 + 3, "in a zero gap": 25 << 20, "in the tail": int64(len(img)) - 2} {
		t.Run("a disk that does not keep a byte "+name, func(t *testing.T) {
			t.Parallel()
			dst := target(t)
			_, err := Write(context.Background(), dst, bytes.NewReader(img), a, Options{ReadBack: lying{dst, at}})
			if !errors.Is(err, ErrReadBack) || !strings.Contains(err.Error(), "byte "+strconv.FormatInt(at, 10)+" differs") {
				t.Fatalf("Write() = %v, want ErrReadBack naming byte %d", err, at)
			}
		})
	}
	t.Run("a disk that ends early", func(t *testing.T) {
		t.Parallel()
		dst := target(t)
		short := io.NewSectionReader(dst, 0, 30<<20)
		_, err := Write(context.Background(), dst, bytes.NewReader(img), a, Options{ReadBack: short})
		if !errors.Is(err, ErrReadBack) {
			t.Fatalf("Write() = %v, want ErrReadBack", err)
		}
	})
	t.Run("zero gaps through Zeroer", func(t *testing.T) {
		t.Parallel()
		f := target(t)
		f.WriteAt(bytes.Repeat([]byte{0xee}, len(img)), 0)
		z := &zeroer{File: f}
		p, err := Write(context.Background(), z, bytes.NewReader(img), a, Options{WriteZeros: true, ReadBack: f})
		if err != nil {
			t.Fatal(err)
		}
		if z.calls == 0 || z.bytes != p.Zero || p.Written+p.Zero != int64(len(img)) || !bytes.Equal(contents(t, f, len(img)), img) {
			t.Errorf("zeroer: %d calls, %d bytes; progress %+v", z.calls, z.bytes, p)
		}
	})
}

// A block map whose range runs past the image is refused, not a panic.
func TestRangePastImage(t *testing.T) {
	t.Parallel()
	img := bytes.Repeat([]byte{7}, 1<<20)
	sum := sha256.Sum256(img)
	a := &store.Artifact{Name: "x", Size: int64(len(img)), Digest: "sha256:" + hex.EncodeToString(sum[:]),
		BlockMap: &store.BlockMap{BlockSize: 1 << 20, Ranges: []store.Range{{Offset: 0, Length: 2 << 20, Digest: "sha256:00"}}}}
	_, err := Write(context.Background(), target(t), bytes.NewReader(img), a, Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "runs past the image") {
		t.Fatalf("Write() = %v", err)
	}
}
