package build

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rackstrap/rackstrap/images/rootfs"
	"github.com/rackstrap/rackstrap/images/spec"
)

// writeSquashfs stages the tree as a directory (hard links to the content
// where possible, copies otherwise) and runs mksquashfs on it. Modes and
// owners come from a pseudo-definition file, not from the staging copy, so
// the build needs no root; every time is SOURCE_DATE_EPOCH.
func (b *builder) writeSquashfs(ctx context.Context, out string, t *rootfs.Tree, o *spec.SquashfsOutput) error {
	stage := filepath.Join(b.scratch, "squashfs-root")
	if err := stageTree(stage, t); err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	pf := filepath.Join(b.scratch, "squashfs.pseudo")
	if err := writePseudo(pf, t); err != nil {
		return err
	}
	epoch := strconv.FormatInt(b.epoch.Unix(), 10)
	_ = os.Remove(out)
	return b.run(ctx, "mksquashfs", stage, out,
		"-noappend", "-no-progress", "-quiet", "-no-xattrs",
		"-comp", o.Compression, "-b", strconv.FormatInt(int64(o.BlockSize), 10),
		"-all-time", epoch, "-mkfs-time", epoch,
		"-pf", pf)
}

// stageTree materialises the tree's names and content under dir.
func stageTree(dir string, t *rootfs.Tree) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, e := range t.Entries() {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		switch {
		case e.IsDir():
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case e.IsSymlink():
			if err := os.Symlink(e.Target, p); err != nil {
				return err
			}
		case e.Src != "":
			if err := os.Link(e.Src, p); err != nil {
				if err := copyEntry(e, p); err != nil {
					return fmt.Errorf("stage /%s: %w", e.Path, err)
				}
			}
		default:
			if err := os.WriteFile(p, e.Data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// writePseudo writes mksquashfs "m" (modify) definitions: mode, uid and gid
// of every entry.
func writePseudo(p string, t *rootfs.Tree) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, e := range t.Entries() {
		if e.Path == "." {
			continue // the root takes the staging directory's mode (0755)
		}
		if e.IsSymlink() {
			fmt.Fprintf(w, "%s m 777 %d %d\n", pseudoQuote(e.Path), e.UID, e.GID)
			continue
		}
		fmt.Fprintf(w, "%s m %o %d %d\n", pseudoQuote(e.Path), unixPerm(e), e.UID, e.GID)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pseudoQuote(p string) string {
	if p == "." {
		return "/"
	}
	var b strings.Builder
	b.WriteByte('"')
	b.WriteByte('/')
	for _, r := range p {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// unixPerm returns the 12 permission bits (setuid, setgid, sticky, rwx).
func unixPerm(e *rootfs.Entry) uint32 {
	m := uint32(e.Mode.Perm())
	if e.Mode&os.ModeSetuid != 0 {
		m |= syscall.S_ISUID
	}
	if e.Mode&os.ModeSetgid != 0 {
		m |= syscall.S_ISGID
	}
	if e.Mode&os.ModeSticky != 0 {
		m |= syscall.S_ISVTX
	}
	return m
}
