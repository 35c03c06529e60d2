// Package artifact finds the files the boot services serve (iPXE binaries,
// kernels, initramfs, images) through an ordered chain of sources: the first
// source that has the file wins, and "not mine" is not an error.
package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

var (
	// ErrNotFound: no source has the file.
	ErrNotFound = errors.New("artifact not found")
	// ErrBadPath: the path is hostile or malformed (absolute, "..", NUL, a
	// backslash, a symlink out of the root) and was refused.
	ErrBadPath = errors.New("path refused")
)

// File is an open artifact: *os.File satisfies it, so HTTP can sendfile.
type File interface {
	io.ReadSeekCloser
	Stat() (fs.FileInfo, error)
}

// Source finds artifacts by clean relative path. It returns ErrNotFound for
// files it does not have.
type Source interface {
	Open(ctx context.Context, name string) (File, error)
}

// CleanPath checks a requested path and returns it relative and clean. One
// leading "/" is accepted only when allowRoot is set (HTTP paths have it;
// TFTP requests must not).
func CleanPath(name string, allowRoot bool) (string, error) {
	if allowRoot {
		name = strings.TrimPrefix(name, "/")
	}
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty path", ErrBadPath)
	case strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%w: %q holds a NUL byte", ErrBadPath, name)
	case strings.ContainsRune(name, '\\'):
		return "", fmt.Errorf("%w: %q holds a backslash", ErrBadPath, name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: %q is absolute", ErrBadPath, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: %q climbs out with ..", ErrBadPath, name)
		}
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f {
			return "", fmt.Errorf("%w: %q holds a control character", ErrBadPath, name)
		}
	}
	c := path.Clean(name)
	if c == "." || !fs.ValidPath(c) {
		return "", fmt.Errorf("%w: %q", ErrBadPath, name)
	}
	return c, nil
}

// Dir serves regular files under a directory. Symlinks may point anywhere
// inside it; os.Root refuses any that lead out.
type Dir struct {
	root *os.Root
}

// NewDir opens dir as a source.
func NewDir(dir string) (*Dir, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact directory: %w", err)
	}
	return &Dir{root: r}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Open opens a regular file; directories are not served (no listings).
func (d *Dir) Open(_ context.Context, name string) (File, error) {
	f, err := d.root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadPath, name, pe.Err)
		}
		return nil, fmt.Errorf("open artifact %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotFound, name)
	}
	return f, nil
}

// Chain tries its sources in order; the first that has the file wins.
type Chain []Source

// Open returns the first source's file.
func (c Chain) Open(ctx context.Context, name string) (File, error) {
	for _, s := range c {
		f, err := s.Open(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
}
