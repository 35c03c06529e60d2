package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClean(t *testing.T) {
	t.Parallel()
	tests := map[string]string{"/etc/x": "etc/x", "./etc//x/": "etc/x", "/": ".", "a/../b": "b", "": "."}
	for in, want := range tests {
		if got, err := Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"../x", "a/../../x", "/.."} {
		if _, err := Clean(bad); !errors.Is(err, ErrEscape) {
			t.Errorf("Clean(%q) = %v, want ErrEscape", bad, err)
		}
	}
}

func paths(t *Tree) []string {
	var out []string
	for _, e := range t.Entries() {
		out = append(out, e.Path)
	}
	return out
}

func TestPutKeepsDirectorySymlinks(t *testing.T) {
	t.Parallel()
	tr := New()
	mustPut(t, tr, Entry{Path: "usr/lib", Mode: fs.ModeDir | 0o755})
	mustPut(t, tr, Entry{Path: "lib", Mode: fs.ModeSymlink | 0o777, Target: "usr/lib"})
	got, err := tr.Put(Entry{Path: "lib/modules/6.1/x.ko", Data: []byte("m"), Size: 1})
	if err != nil || got != "usr/lib/modules/6.1/x.ko" {
		t.Fatalf("Put through /lib = %q, %v", got, err)
	}
	// a layer's own "lib" directory entry keeps the link
	mustPut(t, tr, Entry{Path: "lib", Mode: fs.ModeDir | 0o755})
	if e := tr.Get("lib"); e == nil || !e.IsSymlink() {
		t.Fatalf("lib = %+v, want the symlink kept", e)
	}
	want := []string{".", "lib", "usr", "usr/lib", "usr/lib/modules", "usr/lib/modules/6.1", "usr/lib/modules/6.1/x.ko"}
	if diff := cmp.Diff(want, paths(tr)); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	// a file replacing a directory removes its contents
	mustPut(t, tr, Entry{Path: "usr/lib/modules", Data: []byte("f"), Size: 1})
	if tr.Get("usr/lib/modules/6.1") != nil {
		t.Error("children of a replaced directory survived")
	}
}

func TestResolveLoops(t *testing.T) {
	t.Parallel()
	tr := New()
	mustPut(t, tr, Entry{Path: "a", Mode: fs.ModeSymlink | 0o777, Target: "b"})
	mustPut(t, tr, Entry{Path: "b", Mode: fs.ModeSymlink | 0o777, Target: "/a"})
	if _, err := tr.Resolve("a/x"); err == nil || !strings.Contains(err.Error(), "symlink loop") {
		t.Fatalf("Resolve(loop) = %v", err)
	}
	mustPut(t, tr, Entry{Path: "up", Mode: fs.ModeSymlink | 0o777, Target: "../../../../etc"})
	if got, err := tr.Resolve("up/passwd"); err != nil || got != "etc/passwd" {
		t.Fatalf("Resolve(..-escaping link) = %q, %v; want it clamped at the root", got, err)
	}
}

func mustPut(t *testing.T, tr *Tree, e Entry) {
	t.Helper()
	if _, err := tr.Put(e); err != nil {
		t.Fatal(err)
	}
}

func tarBytes(t testing.TB, hs ...tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "content of " + h.Name
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func TestAddTarWhiteouts(t *testing.T) {
	t.Parallel()
	tr := New()
	base := tarBytes(t,
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/a", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "etc/b", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "opt/x/1", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666},
	)
	sk, err := tr.AddTar(bytes.NewReader(base), "base", t.TempDir())
	if err != nil || sk.Devices != 1 {
		t.Fatalf("AddTar(base) = %+v, %v", sk, err)
	}
	layer := tarBytes(t,
		tar.Header{Name: "etc/.wh.a", Typeflag: tar.TypeReg},
		tar.Header{Name: "opt/x/.wh..wh..opq", Typeflag: tar.TypeReg},
		tar.Header{Name: "opt/x/2", Typeflag: tar.TypeReg, Mode: 0o600},
	)
	if _, err := tr.AddTar(bytes.NewReader(layer), "layer", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	want := []string{".", "etc", "etc/b", "opt", "opt/x", "opt/x/2"}
	if diff := cmp.Diff(want, paths(tr)); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	data, err := tr.ReadFile("/opt/x/2")
	if err != nil || string(data) != "content of opt/x/2" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
}

func TestAddTarBad(t *testing.T) {
	t.Parallel()
	full := tarBytes(t, tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "b", Typeflag: tar.TypeReg, Mode: 0o644})
	tests := map[string]struct {
		data []byte
		want string
	}{
		"truncated":   {full[:600], "the tarball is incomplete"},
		"escape":      {tarBytes(t, tar.Header{Name: "../x", Typeflag: tar.TypeReg}), `entry "../x" escapes the tree`},
		"empty":       {nil, "no entries; is it a tar file?"},
		"bad link":    {tarBytes(t, tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: "nope"}), `hard link "l" points to "nope"`},
		"not tar":     {bytes.Repeat([]byte("garbage!"), 200), "the tarball is damaged"},
		"gzip broken": {[]byte{0x1f, 0x8b, 8, 0, 0, 0}, "damaged or truncated"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New().AddTar(bytes.NewReader(tc.data), "l", t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AddTar() = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzAddTar: tarballs are untrusted input; no archive may panic the
// reader or put an entry outside the tree.
func FuzzAddTar(f *testing.F) {
	f.Add(tarBytes(f, tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "a/.wh.b", Typeflag: tar.TypeReg}))
	f.Add(tarBytes(f, tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}, tar.Header{Name: "l/y", Typeflag: tar.TypeReg}))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := New()
		_, _ = tr.addTar(bytes.NewReader(data), "fuzz", t.TempDir(), 1<<20)
		for _, e := range tr.Entries() {
			if _, err := Clean(e.Path); err != nil || strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") {
				t.Fatalf("entry %q escapes the tree", e.Path)
			}
		}
	})
}
