package rootfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: apt-get install e2fsprogs", name)
	}
	return p
}

// TestGrow: an ext4 made for a 24 MiB image, in a 64 MiB "partition",
// grows to fill it; e2fsck finds it clean; a second run does nothing.
func TestGrow(t *testing.T) {
	t.Parallel()
	mkfs := tool(t, "mkfs.ext4")
	p := filepath.Join(t.TempDir(), "root.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", p, "24M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	if err := os.Truncate(p, 64<<20); err != nil {
		t.Fatal(err)
	}
	// resize2fs wants a checked filesystem when it is not mounted (the
	// root at first boot is mounted: an online grow needs no check)
	if out, err := exec.Command(tool(t, "e2fsck"), "-fy", p).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v %s", err, out)
	}
	res, err := Grow(context.Background(), p, 64<<20, tool(t, "resize2fs"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Grown || res.Before != 24<<20 || res.After != 64<<20 || !strings.Contains(res.Note, "grew "+p+" from 24.0 MiB to 64.0 MiB") {
		t.Errorf("Grow = %+v", res)
	}
	if out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn after growing: %v %s", err, out)
	}
	res, err = Grow(context.Background(), p, 64<<20, "resize2fs")
	if err != nil || res.Grown || !strings.Contains(res.Note, "fills its partition") {
		t.Errorf("second Grow = %+v, %v", res, err)
	}
}

func TestGrowWithoutResize2fs(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "root.img")
	if out, err := exec.Command(tool(t, "mkfs.ext4"), "-q", "-F", p, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	res, err := Grow(context.Background(), p, 64<<20, filepath.Join(t.TempDir(), "no-resize2fs"))
	if err != nil || res.Grown || !res.NeedsResize || !strings.Contains(res.Note, "resize2fs is not installed: the root stays at 8.0 MiB; add e2fsprogs to the image") {
		t.Errorf("Grow without resize2fs = %+v, %v", res, err)
	}
	// not ext: a note, no error
	other := filepath.Join(t.TempDir(), "xfs.img")
	os.WriteFile(other, make([]byte, 4096), 0o644)
	if res, err := Grow(context.Background(), other, 64<<20, ""); err != nil || !strings.Contains(res.Note, "is not ext2/3/4") {
		t.Errorf("Grow(not ext) = %+v, %v", res, err)
	}
}

func TestFindRoot(t *testing.T) {
	t.Parallel()
	// the filesystem this test runs on: a block device or not (overlay,
	// tmpfs), FindRoot either names it or says why not, and never panics
	r, err := FindRoot("/", t.TempDir())
	if err == nil && (!strings.HasPrefix(r.Device, "/dev/") || r.PartBytes <= 0) {
		t.Errorf("FindRoot = %+v", r)
	}
	if err != nil && !strings.Contains(err.Error(), "is not on a block device") {
		t.Errorf("FindRoot = %v", err)
	}
}

func FuzzParseExt(f *testing.F) {
	sb := make([]byte, 1024)
	sb[0x38], sb[0x39] = 0x53, 0xEF
	sb[0x04] = 0x10
	sb[0x18] = 2
	f.Add(sb)
	sb64 := append([]byte(nil), sb...)
	sb64[0x60] = 0x80
	sb64[0x150] = 1
	f.Add(sb64)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := parseExt(b)
		if err == nil && (fs.Bytes < 0 || fs.Type != "ext4") {
			t.Errorf("parseExt = %+v", fs)
		}
	})
}
