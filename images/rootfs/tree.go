// Package rootfs assembles an image's root filesystem as an in-memory tree of
// entries (path, type, mode, owner, content source) from directories,
// tarballs and generated files. Content stays where it is (a host file or a
// scratch copy extracted from a tarball) until a writer streams it into an
// output format, so nothing is copied twice.
package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// Entry is one file, directory or symlink of the tree.
type Entry struct {
	// Path is slash-separated, relative to the root, without "./"; "." is the root.
	Path string
	// Mode holds the type (fs.ModeDir, fs.ModeSymlink, 0 for regular files)
	// and permission bits including setuid, setgid and sticky.
	Mode     fs.FileMode
	UID, GID int
	// Size of a regular file's content.
	Size int64
	// Target of a symlink.
	Target string
	// Src is the host file holding a regular file's content, or "" when Data holds it.
	Src  string
	Data []byte
	// Layer names where the entry came from, for messages and checks.
	Layer string
}

// IsDir, IsSymlink and IsRegular test the entry's type.
func (e *Entry) IsDir() bool     { return e.Mode&fs.ModeDir != 0 }
func (e *Entry) IsSymlink() bool { return e.Mode&fs.ModeSymlink != 0 }
func (e *Entry) IsRegular() bool { return e.Mode.Type() == 0 }

// Open returns the content of a regular file.
func (e *Entry) Open() (io.ReadCloser, error) {
	if e.Src == "" {
		return io.NopCloser(bytes.NewReader(e.Data)), nil
	}
	f, err := os.Open(e.Src)
	if err != nil {
		return nil, fmt.Errorf("open content of /%s: %w", e.Path, err)
	}
	return f, nil
}

// Tree is a root filesystem being assembled. It is not safe for concurrent mutation.
type Tree struct {
	m map[string]*Entry
}

// New returns a tree holding only the root directory (0755, root-owned).
func New() *Tree {
	return &Tree{m: map[string]*Entry{".": {Path: ".", Mode: fs.ModeDir | 0o755}}}
}

// ErrEscape is returned for paths that leave the tree with "..".
var ErrEscape = errors.New("path escapes the image root")

// Clean turns an image path ("/etc/x", "./etc/x", "etc//x") into the tree's
// form ("etc/x"). A ".." that would climb above the root is an error.
func Clean(p string) (string, error) {
	p = strings.TrimLeft(p, "/")
	depth := 0
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "..":
			depth--
			if depth < 0 {
				return "", fmt.Errorf("%q: %w", p, ErrEscape)
			}
		case "", ".":
		default:
			depth++
		}
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

// Get returns the entry at an exact tree path (no symlink resolution).
func (t *Tree) Get(p string) *Entry {
	c, err := Clean(p)
	if err != nil {
		return nil
	}
	return t.m[c]
}

// maxHops bounds symlink resolution, like the kernel's 40.
const maxHops = 40

// Resolve follows symlinks in every component of p, inside the tree (an
// absolute target is relative to the image root, ".." stops at the root),
// and returns the final path. The last component may be missing.
func (t *Tree) Resolve(p string) (string, error) {
	c, err := Clean(p)
	if err != nil {
		return "", err
	}
	hops := 0
	return t.resolve(c, true, &hops)
}

func (t *Tree) resolve(c string, followLast bool, hops *int) (string, error) {
	if c == "." {
		return c, nil
	}
	parts := strings.Split(c, "/")
	cur := "."
	for i, el := range parts {
		next := join(cur, el)
		e := t.m[next]
		last := i == len(parts)-1
		if e != nil && e.IsSymlink() && (!last || followLast) {
			*hops++
			if *hops > maxHops {
				return "", fmt.Errorf("/%s: too many levels of symbolic links (a symlink loop); fix the link at /%s", c, next)
			}
			var tgt string
			if strings.HasPrefix(e.Target, "/") {
				tgt = e.Target
			} else {
				tgt = path.Join("/"+cur, e.Target)
			}
			tc := path.Clean("/" + tgt)[1:]
			if tc == "" {
				tc = "."
			}
			r, err := t.resolve(tc, true, hops)
			if err != nil {
				return "", err
			}
			next = r
		} else if e != nil && !e.IsDir() && !last {
			return "", fmt.Errorf("/%s: /%s is not a directory", c, next)
		}
		cur = next
	}
	return cur, nil
}

func join(dir, el string) string {
	if dir == "." {
		return el
	}
	return dir + "/" + el
}

// mkdirAll makes sure the directory c exists, following symlinks to
// directories ("keep directory symlinks": /lib -> usr/lib stays a link), and
// returns its resolved path.
func (t *Tree) mkdirAll(c, layer string) (string, error) {
	if c == "." {
		return c, nil
	}
	parent, base := path.Split(c)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	rp, err := t.mkdirAll(parent, layer)
	if err != nil {
		return "", err
	}
	full := join(rp, base)
	e := t.m[full]
	switch {
	case e == nil:
		t.m[full] = &Entry{Path: full, Mode: fs.ModeDir | 0o755, Layer: layer}
		return full, nil
	case e.IsDir():
		return full, nil
	case e.IsSymlink():
		hops := 0
		r, err := t.resolve(full, true, &hops)
		if err != nil {
			return "", err
		}
		if te := t.m[r]; te != nil && te.IsDir() {
			return r, nil
		}
		if t.m[r] == nil {
			return t.mkdirAll(r, layer)
		}
		fallthrough
	default:
		// a layer's directory replaces a file of a lower layer
		t.m[full] = &Entry{Path: full, Mode: fs.ModeDir | 0o755, Layer: layer}
		return full, nil
	}
}

// Put adds or replaces an entry, creating missing parent directories and
// following directory symlinks in its parents. A directory entry over an
// existing directory only updates its mode and owner; over a symlink to a
// directory it keeps the symlink. It returns the path the entry landed at.
func (t *Tree) Put(e Entry) (string, error) {
	c, err := Clean(e.Path)
	if err != nil {
		return "", err
	}
	if c == "." {
		if !e.IsDir() {
			return "", fmt.Errorf("the image root must be a directory")
		}
		r := t.m["."]
		r.Mode, r.UID, r.GID = e.Mode, e.UID, e.GID
		return ".", nil
	}
	parent, base := path.Split(c)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	rp, err := t.mkdirAll(parent, e.Layer)
	if err != nil {
		return "", err
	}
	full := join(rp, base)
	old := t.m[full]
	if e.IsDir() && old != nil {
		switch {
		case old.IsDir():
			old.Mode, old.UID, old.GID, old.Layer = e.Mode, e.UID, e.GID, e.Layer
			return full, nil
		case old.IsSymlink():
			hops := 0
			if r, err := t.resolve(full, true, &hops); err == nil && t.m[r] != nil && t.m[r].IsDir() {
				return r, nil
			}
		}
	}
	if old != nil && old.IsDir() && !e.IsDir() {
		t.removeAll(full)
	}
	e.Path = full
	t.m[full] = &e
	return full, nil
}

// Remove deletes p and, for a directory, everything under it. Missing is fine.
func (t *Tree) Remove(p string) error {
	c, err := Clean(p)
	if err != nil {
		return err
	}
	if c == "." {
		return fmt.Errorf("cannot remove the image root")
	}
	t.removeAll(c)
	return nil
}

func (t *Tree) removeAll(c string) {
	delete(t.m, c)
	prefix := c + "/"
	for k := range t.m {
		if strings.HasPrefix(k, prefix) {
			delete(t.m, k)
		}
	}
}

// Entries returns every entry sorted by path, so a parent always precedes
// its children and every writer emits the same order.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return lessPath(out[i].Path, out[j].Path) })
	return out
}

// lessPath orders by components so "a/b" sorts right after "a", before "a-b".
func lessPath(a, b string) bool {
	if a == "." {
		return b != "."
	}
	if b == "." {
		return false
	}
	return strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
}

// Len is the number of entries, the root included.
func (t *Tree) Len() int { return len(t.m) }

// Stats sums the tree.
type Stats struct {
	Files, Dirs, Symlinks int
	Bytes                 int64
}

// Stats counts entries and content bytes.
func (t *Tree) Stats() Stats {
	var s Stats
	for _, e := range t.m {
		switch {
		case e.IsDir():
			s.Dirs++
		case e.IsSymlink():
			s.Symlinks++
		default:
			s.Files++
			s.Bytes += e.Size
		}
	}
	return s
}

// ReadFile returns a regular file's content, following symlinks.
func (t *Tree) ReadFile(p string) ([]byte, error) {
	r, err := t.Resolve(p)
	if err != nil {
		return nil, err
	}
	e := t.m[r]
	if e == nil {
		return nil, fmt.Errorf("/%s: %w", strings.TrimPrefix(p, "/"), fs.ErrNotExist)
	}
	if !e.IsRegular() {
		return nil, fmt.Errorf("/%s is not a regular file", strings.TrimPrefix(p, "/"))
	}
	rc, err := e.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Lookup returns the entry at p after following symlinks, or nil.
func (t *Tree) Lookup(p string) (*Entry, error) {
	r, err := t.Resolve(p)
	if err != nil {
		return nil, err
	}
	return t.m[r], nil
}
