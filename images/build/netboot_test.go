package build

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// readCpio lists an uncompressed newc archive's records by name.
func readCpio(t *testing.T, p string) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // records read their data from f
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return out
}

// TestNetbootInitIsTheAgent: an image with an agent and no /init of its
// own boots the agent as PID 1 (its init mode: drivers, DHCP, then the
// rackstrap.* settings); the kernel gets /dev/console; the tree, and so
// the disk image built from it, gets neither.
func TestNetbootInitIsTheAgent(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "  netboot: {compression: none}\n")
	res := build(t, dir, filepath.Join(dir, "out"))
	recs := readCpio(t, res.Files["tiny.initramfs.cpio"])
	init, ok := recs["init"]
	if !ok || init.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Fatalf("initramfs /init = %+v, want a symlink", init.Info)
	}
	target, err := io.ReadAll(io.NewSectionReader(init.ReaderAt, 0, int64(init.FileSize)))
	if err != nil || string(target) != "/usr/bin/rackstrap-agent" {
		t.Errorf("/init -> %q, %v; want /usr/bin/rackstrap-agent", target, err)
	}
	if _, ok := recs["usr/bin/rackstrap-agent"]; !ok {
		t.Error("the initramfs lacks the agent /init points at")
	}
	con, ok := recs["dev/console"]
	if !ok || con.Mode&cpio.S_IFMT != cpio.S_IFCHR || con.Rmajor != 5 || con.Rminor != 1 {
		t.Errorf("dev/console = %+v, want char device 5,1", con.Info)
	}
}

// TestNetbootKeepsTheImagesInit: a root that brings its own /init (a
// busybox or systemd initramfs) keeps it.
func TestNetbootKeepsTheImagesInit(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "  netboot: {compression: none}\n")
	write(t, filepath.Join(dir, "rootfs/init"), "#!/bin/sh\nexec /sbin/init\n", 0o755)
	res := build(t, dir, filepath.Join(dir, "out"))
	init := readCpio(t, res.Files["tiny.initramfs.cpio"])["init"]
	if init.Mode&cpio.S_IFMT != cpio.S_IFREG || init.FileSize != uint64(len("#!/bin/sh\nexec /sbin/init\n")) {
		t.Errorf("/init = %+v, want the image's own script", init.Info)
	}
}
