package imaging

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gptImage is an 8 MiB image laid out as rackstrap image build does: an
// ESP and a Linux root that fills the rest, the backup GPT at its end.
func gptImage(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk is not installed: apt-get install gdisk")
	}
	p := filepath.Join(t.TempDir(), "os.img")
	img := image(8 << 20)
	os.WriteFile(p, img, 0o644)
	if out, err := exec.Command("sgdisk", "-Z", "-n", "1:2048:+2M", "-t", "1:ef00", "-n", "2:0:0", "-t", "2:8300", p).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	b, _ := os.ReadFile(p)
	return b
}

func TestGrowAfterWrite(t *testing.T) {
	t.Parallel()
	img := gptImage(t)
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.img", time.Time{}, bytes.NewReader(img))
	})
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw") // a VM's disk with an old OS on it
	const size = 24 << 20
	os.WriteFile(disk, bytes.Repeat([]byte{0xEB}, size), 0o644)
	o := fast()
	o.Target = disk
	rep, err := Write(context.Background(), payload(s.URL+"/os.img", img), o)
	if err != nil {
		t.Fatal(err)
	}
	wantLast := uint64((size-GrowReserve)/512 - 1)
	if rep.Grown == nil || rep.Grown.Partition != 2 || rep.Grown.NewLast != wantLast || !strings.Contains(rep.String(), "grew partition 2") {
		t.Fatalf("report = %+v (%s), want partition 2 grown to sector %d", rep.Grown, rep, wantLast)
	}
	out, _ := exec.Command("sgdisk", "-v", disk).CombinedOutput()
	if !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", disk, out)
	}
	out, _ = exec.Command("sgdisk", "-i", "2", disk).CombinedOutput()
	if !strings.Contains(string(out), "Last sector: 47103 ") {
		t.Errorf("sgdisk -i 2 %s (want last sector %d):\n%s", disk, wantLast, out)
	}
	// The image past its first MiB is on the disk unchanged; the last MiB
	// of the disk, where the first-boot record goes, is outside every
	// partition.
	got, _ := os.ReadFile(disk)
	if !bytes.Equal(got[1<<20:len(img)], img[1<<20:]) {
		t.Error("the image's bytes past the partition table changed")
	}

	// Run again (a restarted task): the image is rewritten over the grown
	// table and grown again, to the same result.
	o.Resume = true
	rep, err = Write(context.Background(), payload(s.URL+"/os.img", img), o)
	if err != nil || rep.Grown == nil || rep.Grown.NewLast != wantLast {
		t.Fatalf("again: %+v, %v", rep.Grown, err)
	}
	again, _ := os.ReadFile(disk)
	if !bytes.Equal(again, got) {
		t.Error("imaging the same disk twice gave different disks")
	}
}

// TestDiskTooSmall: a disk that cannot hold the image and the first-boot
// record after it is refused before anything is written.
func TestDiskTooSmall(t *testing.T) {
	t.Parallel()
	img := image(6 << 20)
	s := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	disk := filepath.Join(t.TempDir(), "disk.raw")
	old := bytes.Repeat([]byte{0xEB}, 6<<20+512<<10)
	os.WriteFile(disk, old, 0o644)
	o := fast()
	o.Target, o.TailBytes = disk, 1<<20
	_, err := Write(context.Background(), payload(s.URL, img), o)
	if err == nil || !strings.Contains(err.Error(), "disk too small") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("Write = %v, want disk too small", err)
	}
	if got, _ := os.ReadFile(disk); !bytes.Equal(got, old) {
		t.Error("the disk changed")
	}
}

// TestGrowOnLoopDevice: on a real block device (a loop device over a file
// holding an "old OS"), the image's 16 MiB zero chunk is zeroed with
// BLKZEROOUT, everything is read back with O_DIRECT, and the GPT moves to
// the device's end with the last partition grown (sgdisk agrees).
func TestGrowOnLoopDevice(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root to make a loop device: run 'make test' as root")
	}
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk is not installed: apt-get install gdisk")
	}
	dir := t.TempDir()
	// the image: its GPT, 16 MiB of zeros, 3 MiB of data
	p := filepath.Join(dir, "os.img")
	img := image(20 << 20)
	clear(img[1<<20 : 17<<20])
	os.WriteFile(p, img, 0o644)
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+2M", "-t", "1:ef00", "-n", "2:0:0", "-t", "2:8300", p).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	img, _ = os.ReadFile(p)
	backing := filepath.Join(dir, "backing.img")
	const size = 40 << 20
	os.WriteFile(backing, bytes.Repeat([]byte{0xEE}, size), 0o644)
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Fatalf("losetup: %v; this test needs a loop device (util-linux's losetup and /dev/loop-control, from 'make test')", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.img", time.Time{}, bytes.NewReader(img))
	})
	o := fast()
	o.Target, o.TailBytes = dev, 1<<20
	rep, err := Write(context.Background(), payload(s.URL+"/os.img", img), o)
	if err != nil {
		t.Fatal(err)
	}
	wantLast := uint64((size-GrowReserve)/512 - 1)
	if !rep.Device || !rep.Direct || rep.Bytes != int64(len(img)) || rep.Grown == nil || rep.Grown.NewLast != wantLast {
		t.Errorf("report = %+v, grown %+v; want a device read back with O_DIRECT, partition 2 grown to %d", rep, rep.Grown, wantLast)
	}
	if out, _ := exec.Command("sgdisk", "-v", dev).CombinedOutput(); !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", dev, out)
	}
	got := make([]byte, len(img))
	f, _ := os.Open(backing)
	f.ReadAt(got, 0)
	f.Close()
	if !bytes.Equal(got[1<<20:], img[1<<20:]) {
		t.Error("the device does not hold the image past its table (the zero chunk not zeroed?)")
	}
}

// TestDirectReadFallback: an O_DIRECT read the kernel refuses (EINVAL; a
// misaligned buffer here) is read again through the page cache, and the
// report would say the read-back was not direct.
func TestDirectReadFallback(t *testing.T) {
	t.Parallel()
	want := image(64 << 10)
	// the temporary directory, or (tmpfs refuses O_DIRECT) one beside the
	// test's sources
	var d *os.File
	var p string
	var errs []error
	for _, dir := range []string{t.TempDir(), ""} {
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp(".", "direct-test-"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
		}
		p = filepath.Join(dir, "disk")
		os.WriteFile(p, want, 0o644)
		var err error
		if d, err = openDirect(p, false); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if d == nil {
		t.Fatalf("no directory here takes O_DIRECT: %v", errs)
	}
	defer d.Close()
	f, _ := os.Open(p)
	defer f.Close()
	tg := &target{direct: true}
	r := &directReader{d: d, f: f, t: tg}
	buf := make([]byte, 8192+1)[1:] // misaligned for O_DIRECT
	n, err := r.ReadAt(buf, 4096)
	if err != nil || n != len(buf) || !bytes.Equal(buf, want[4096:4096+8192]) || !r.fallback || tg.direct {
		t.Fatalf("ReadAt = %d, %v (fallback %v, direct %v)", n, err, r.fallback, tg.direct)
	}
}
