package ext4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; run 'make test-deps' (Debian package e2fsprogs)", tool)
		}
	}
}

// run runs a tool with a deadline and returns its combined output and exit code.
func run(t testing.TB, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", name, err)
	}
	code := 0
	if ee != nil {
		code = ee.ExitCode()
	}
	return string(out), code
}

func content(n int, seed uint64) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func fileNode(p string, mode fs.FileMode, uid, gid uint32, data []byte) Node {
	return Node{Path: p, Mode: mode, UID: uid, GID: gid, Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// sampleNodes is a tree with the cases that matter: empty and odd-sized
// files, multi-block directories, fast and slow symlinks, special mode
// bits, ids above 65535, and files spanning many extents.
func sampleNodes(big int) []Node {
	nodes := []Node{
		{Path: ".", Mode: fs.ModeDir | 0o755},
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		fileNode("etc/empty", 0o644, 0, 0, nil),
		fileNode("etc/one", 0o600, 1000, 1000, []byte("x")),
		fileNode("etc/block", 0o644, 0, 0, content(4096, 1)),
		fileNode("etc/block+1", 0o644, 0, 0, content(4097, 2)),
		{Path: "etc/zeros", Mode: 0o644, Size: 10000},
		fileNode("usr/bin/su", fs.ModeSetuid|0o755, 0, 0, content(30000, 3)),
		{Path: "usr", Mode: fs.ModeDir | 0o755},
		{Path: "usr/bin", Mode: fs.ModeDir | 0o755},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "srv", Mode: fs.ModeDir | fs.ModeSetgid | 0o2775, UID: 70000, GID: 80000},
		fileNode("srv/big", 0o644, 70000, 80000, content(big, 4)),
		{Path: "bin", Mode: fs.ModeSymlink | 0o777, Target: "usr/bin"},
		{Path: "usr/bin/long", Mode: fs.ModeSymlink | 0o777, Target: strings.Repeat("a/", 60) + "end"},
		{Path: "many", Mode: fs.ModeDir | 0o755},
	}
	for i := range 600 {
		nodes = append(nodes, fileNode(fmt.Sprintf("many/a-rather-long-file-name-%04d", i), 0o644, 0, 0, content(i*7, uint64(i))))
	}
	for i := range 5 {
		nodes = append(nodes, Node{Path: fmt.Sprintf("many/d%d", i), Mode: fs.ModeDir | 0o750})
	}
	return nodes
}

// listing describes a tree on disk one line per entry.
func listing(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || rel == "lost+found" {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", rel, fi.Mode().Perm(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += fmt.Sprintf(" %d %s", len(data), hex.EncodeToString(sum[:8]))
		case fi.Mode()&fs.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			line += " -> " + tgt
		case fi.IsDir():
			line += " dir"
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func want(t testing.TB, nodes []Node) []string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		if n.Path == "." {
			continue
		}
		line := fmt.Sprintf("%s %s %d:%d", n.Path, n.Mode.Perm(), n.UID, n.GID)
		switch {
		case n.Mode.IsDir():
			line += " dir"
		case n.Mode&fs.ModeSymlink != 0:
			line = fmt.Sprintf("%s %s %d:%d -> %s", n.Path, fs.FileMode(0o777), n.UID, n.GID, n.Target)
		default:
			data := make([]byte, n.Size)
			if n.Open != nil {
				r, _ := n.Open()
				data, _ = io.ReadAll(r)
			}
			sum := sha256.Sum256(data)
			line += fmt.Sprintf(" %d %s", len(data), hex.EncodeToString(sum[:8]))
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

func writeImage(t testing.TB, p string, nodes []Node, params Params, fill byte) Stats {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fill != 0 {
		junk := bytes.Repeat([]byte{fill}, 1<<20)
		for off := int64(0); off < params.Size; off += int64(len(junk)) {
			if _, err := f.WriteAt(junk, off); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := f.Truncate(params.Size); err != nil {
		t.Fatal(err)
	}
	st, err := Write(context.Background(), f, nodes, params)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return st
}

func TestWriteCheckedByE2fsck(t *testing.T) {
	need(t, "e2fsck", "debugfs")
	t.Parallel()
	cases := map[string]struct {
		params Params
		big    int
		fill   byte
		groups int
	}{
		"one group with journal": {params: Params{Size: 64 << 20, Journal: true, Zeroed: true, Label: "root"}, big: 3 << 20, groups: 1},
		// 1 MiB groups: backups in groups 1,3,5,7,9,25,27 split files; extents of
		// at most 3 blocks give depth-1 extent trees; junk underneath proves
		// every metadata block is written.
		"many groups, extent trees, junk underneath": {params: Params{Size: 40 << 20, BlocksPerGroup: 256, maxExtent: 3, Time: 1 << 33}, big: 5 << 20, fill: 0xA5, groups: 40},
		"many groups with journal":                   {params: Params{Size: 48 << 20, BlocksPerGroup: 1024, Journal: true, BytesPerInode: 4096}, big: 9 << 20, groups: 12},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			nodes := sampleNodes(tc.big)
			tc.params.UUID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
			st := writeImage(t, img, nodes, tc.params, tc.fill)
			if st.Groups != tc.groups {
				t.Errorf("Write(...).Groups = %d, want %d", st.Groups, tc.groups)
			}
			if out, code := run(t, "e2fsck", "-fn", img); code != 0 {
				t.Fatalf("e2fsck -fn: exit %d\n%s", code, out)
			}
			sb, _ := run(t, "dumpe2fs", "-h", img)
			if tc.params.Journal != strings.Contains(sb, "has_journal") {
				t.Errorf("dumpe2fs -h: journal = %v, want %v\n%s", !tc.params.Journal, tc.params.Journal, sb)
			}
			out := filepath.Join(dir, "out")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if o, code := run(t, "debugfs", "-R", "rdump / "+out, img); code != 0 {
				t.Fatalf("debugfs rdump: %s", o)
			}
			if diff := cmp.Diff(want(t, nodes), listing(t, filepath.Join(out))); diff != "" {
				t.Errorf("rdump listing differs from the nodes (-want +got):\n%s", diff)
			}
			// rdump drops setuid, setgid and sticky bits: check them with stat
			for p, mode := range map[string]string{"/usr/bin/su": "04755", "/tmp": "01777", "/srv": "02775"} {
				if o, _ := run(t, "debugfs", "-R", "stat "+p, img); !strings.Contains(o, "Mode:  "+mode) {
					t.Errorf("debugfs stat %s: want mode %s\n%s", p, mode, o)
				}
			}
		})
	}
}

func TestWriteReproducible(t *testing.T) {
	t.Parallel()
	sum := func() string {
		img := filepath.Join(t.TempDir(), "fs.img")
		writeImage(t, img, sampleNodes(1<<20), Params{Size: 32 << 20, Journal: true, Zeroed: true, Time: 1700000000}, 0)
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		return hex.EncodeToString(s[:])
	}
	a := sum()
	nodes := sampleNodes(1 << 20)
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	img := filepath.Join(t.TempDir(), "fs.img")
	writeImage(t, img, nodes, Params{Size: 32 << 20, Journal: true, Zeroed: true, Time: 1700000000}, 0)
	data, _ := os.ReadFile(img)
	s := sha256.Sum256(data)
	if b := hex.EncodeToString(s[:]); a != b {
		t.Errorf("the same nodes in another order gave sha256 %s, then %s", a, b)
	}
}

type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write of %d bytes at %d beyond %d", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	dir := fs.ModeDir | 0o755
	short := Node{Path: "f", Mode: 0o644, Size: 10, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil }}
	long := Node{Path: "f", Mode: 0o644, Size: 2, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("abc")), nil }}
	cases := map[string]struct {
		nodes  []Node
		params Params
		want   string
		is     error
	}{
		"missing parent":  {nodes: []Node{{Path: "a/b", Mode: dir}}, want: "parent directory /a is missing"},
		"parent is file":  {nodes: []Node{{Path: "a", Mode: 0o644}, {Path: "a/b", Mode: dir}}, want: "parent directory /a is missing"},
		"duplicate":       {nodes: []Node{{Path: "a", Mode: dir}, {Path: "a", Mode: 0o644}}, want: "appears twice"},
		"unclean path":    {nodes: []Node{{Path: "./a", Mode: dir}}, want: "is not clean"},
		"device":          {nodes: []Node{{Path: "null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}}, want: "not supported"},
		"empty symlink":   {nodes: []Node{{Path: "l", Mode: fs.ModeSymlink | 0o777}}, want: "target of 0 bytes"},
		"long name":       {nodes: []Node{{Path: strings.Repeat("n", 256), Mode: 0o644}}, want: "longer than 255"},
		"root not a dir":  {nodes: []Node{{Path: ".", Mode: 0o644}}, want: "root must be a directory"},
		"lost+found file": {nodes: []Node{{Path: "lost+found", Mode: 0o644}}, want: "/lost+found must be a directory"},
		"too big":         {nodes: []Node{{Path: "f", Mode: 0o644, Size: 9 << 20}}, params: Params{Size: 8 << 20}, is: ErrNoSpace},
		"too many inodes": {nodes: manyFiles(3000), params: Params{Size: 4 << 20, BlocksPerGroup: 64}, want: "inodes per group", is: ErrNoSpace},
		"content short":   {nodes: []Node{short}, want: "shorter than its size"},
		"content long":    {nodes: []Node{long}, want: "longer than its size"},
		"long label":      {params: Params{Label: strings.Repeat("l", 17)}, want: "longer than 16 bytes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.params.Size == 0 {
				tc.params.Size = 16 << 20
			}
			_, err := Write(context.Background(), &memDisk{make([]byte, tc.params.Size)}, tc.nodes, tc.params)
			if err == nil {
				t.Fatalf("Write(%s) = nil error", name)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Write(%s) = %v, want %v", name, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Write(%s) = %v, want it to say %q", name, err, tc.want)
			}
		})
	}
}

func manyFiles(n int) []Node {
	var out []Node
	for i := range n {
		out = append(out, Node{Path: fmt.Sprintf("f%d", i), Mode: 0o644})
	}
	return out
}

func TestWriteCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, &memDisk{make([]byte, 16<<20)}, sampleNodes(10), Params{Size: 16 << 20}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write(cancelled) = %v, want context.Canceled", err)
	}
}

// orderedDisk fails a write below the end of the previous one.
type orderedDisk struct {
	memDisk
	end int64
}

func (d *orderedDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < d.end {
		return 0, fmt.Errorf("write at %d after %d", off, d.end)
	}
	if len(p) > seqBuf {
		return 0, fmt.Errorf("write of %d bytes", len(p))
	}
	d.end = off + int64(len(p))
	return d.memDisk.WriteAt(p, off)
}

func TestWriteAscending(t *testing.T) {
	t.Parallel()
	for _, p := range []Params{
		{Size: 40 << 20, BlocksPerGroup: 256, maxExtent: 3, Journal: true},
		{Size: 64 << 20, Journal: true, Zeroed: true},
	} {
		d := &orderedDisk{memDisk: memDisk{make([]byte, p.Size)}}
		if _, err := Write(context.Background(), d, sampleNodes(5<<20), p); err != nil {
			t.Errorf("Write(%+v) = %v", p, err)
		}
	}
}
