package artifact

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestCleanPath(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in        string
		allowRoot bool
		want      string
		err       error
	}{
		"plain":      {in: "undionly.kpxe", want: "undionly.kpxe"},
		"nested":     {in: "a/./b//c", want: "a/b/c"},
		"http-root":  {in: "/a/b", allowRoot: true, want: "a/b"},
		"absolute":   {in: "/etc/passwd", err: ErrBadPath},
		"dotdot":     {in: "a/../../etc/passwd", err: ErrBadPath},
		"dotdot-mid": {in: "a/../b", err: ErrBadPath},
		"nul":        {in: "a\x00b", err: ErrBadPath},
		"backslash":  {in: `..\..\x`, err: ErrBadPath},
		"empty":      {in: "", err: ErrBadPath},
		"dot":        {in: ".", err: ErrBadPath},
		"root-only":  {in: "/", allowRoot: true, err: ErrBadPath},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := CleanPath(tc.in, tc.allowRoot)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("CleanPath(%q) = %q, %v, want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestDirChain(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "x"), []byte("from a"), 0o644)
	os.WriteFile(filepath.Join(b, "x"), []byte("from b"), 0o644)
	os.WriteFile(filepath.Join(b, "y"), []byte("from b"), 0o644)
	os.Mkdir(filepath.Join(b, "sub"), 0o755)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(a, "escape"))
	os.Symlink("y", filepath.Join(b, "inside"))
	da, _ := NewDir(a)
	db, _ := NewDir(b)
	c := Chain{da, db}
	tests := map[string]struct {
		want string
		err  error
	}{
		"x":      {want: "from a"},
		"y":      {want: "from b"},
		"inside": {want: "from b"},
		"escape": {err: ErrBadPath},
		"sub":    {err: ErrNotFound},
		"none":   {err: ErrNotFound},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f, err := c.Open(context.Background(), name)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Open(%q) error = %v, want %v", name, err, tc.err)
			}
			if err != nil {
				return
			}
			defer f.Close()
			b, _ := io.ReadAll(f)
			if string(b) != tc.want {
				t.Errorf("Open(%q) read %q, want %q", name, b, tc.want)
			}
		})
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/abs", "a\x00", `a\b`, "./a//b/", "a/..", "...", ""} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allowRoot bool) {
		c, err := CleanPath(s, allowRoot)
		if err != nil {
			return
		}
		if !filepath.IsLocal(c) || c != filepath.Clean(c) {
			t.Fatalf("CleanPath(%q) = %q, which is not a clean local path", s, c)
		}
	})
}
