package imaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// image is size bytes of data with no zero MiB, each 4 KiB block unlike
// the next (built by copies: a byte loop over tens of MiB is slow under
// -race).
func image(size int) []byte {
	b := make([]byte, size)
	var blk [4096]byte
	for i := range blk {
		blk[i] = byte(i*7 + 1)
	}
	for off := 0; off < size; off += len(blk) {
		copy(b[off:], blk[:])
		b[off] = byte(off>>12) | 1
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func payload(url string, img []byte) Payload {
	return Payload{URL: url, SHA256: digest(img), Size: int64(len(img)), Server: "http://ctl:8080", FirstBootToken: "fb-token"}
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func fast() Options {
	return Options{RetryWait: time.Millisecond, Retries: 3}
}

func TestWriteAndResume(t *testing.T) {
	t.Parallel()
	img := image(5<<20 + 11)
	var gets atomic.Int32
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		http.ServeContent(w, r, "os.img", time.Time{}, bytes.NewReader(img))
	})
	target := filepath.Join(t.TempDir(), "disk.img")
	o := fast()
	o.Target = target
	rep, err := Write(context.Background(), payload(s.URL+"/os.img", img), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SHA256 != digest(img) || rep.Bytes != int64(len(img)) || rep.Written != int64(len(img)) || rep.Device {
		t.Errorf("report = %+v", rep)
	}
	if !strings.Contains(rep.String(), "wrote 5.0 MiB to "+target) {
		t.Errorf("message = %q", rep.String())
	}
	// Run again after a restart: what is on the target is kept, only the
	// held-back first MiB is written again.
	o.Resume = true
	rep, err = Write(context.Background(), payload(s.URL+"/os.img", img), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AlreadyGood != int64(len(img))-headSize || rep.Written != headSize || !strings.Contains(rep.String(), "already on the disk (resumed)") {
		t.Errorf("resumed report = %+v", rep)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, img) {
		t.Error("target is not the image")
	}
}

// TestReadBackPaths: the image reads back with O_DIRECT where the target's
// filesystem allows it, and through the page cache (each range written
// back and dropped first) where not; both report every byte.
func TestReadBackPaths(t *testing.T) {
	t.Parallel()
	img := image(20<<20 + 4097)
	clear(img[3<<20 : 19<<20])
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.img", time.Time{}, bytes.NewReader(img))
	})
	dir := t.TempDir()
	os.WriteFile(dir+"/probe", nil, 0o644)
	probe, derr := openDirect(dir+"/probe", false)
	if derr == nil {
		probe.Close()
	}
	for _, cached := range []bool{false, true} {
		o := fast()
		o.Target = filepath.Join(dir, fmt.Sprintf("disk-%v", cached))
		o.noDirect = cached
		rep, err := Write(context.Background(), payload(s.URL+"/os.img", img), o)
		if err != nil {
			t.Fatalf("cached=%v: %v", cached, err)
		}
		if rep.Bytes != int64(len(img)) || rep.SHA256 != digest(img) || rep.Direct != (!cached && derr == nil) {
			t.Errorf("cached=%v: report %+v (O_DIRECT on %s: %v)", cached, rep, dir, derr)
		}
		if got, _ := os.ReadFile(o.Target); !bytes.Equal(got, img) {
			t.Errorf("cached=%v: the target is not the image", cached)
		}
	}
}

func TestImageSmallerThanHead(t *testing.T) {
	t.Parallel()
	img := image(4097)
	s := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	o := fast()
	o.Target = filepath.Join(t.TempDir(), "disk.img")
	if rep, err := Write(context.Background(), payload(s.URL, img), o); err != nil || rep.SHA256 != digest(img) {
		t.Fatalf("Write(4097 bytes) = %+v, %v", rep, err)
	}
}

func TestDownloadFaults(t *testing.T) {
	t.Parallel()
	img := image(3<<20 + 5)
	for name, tc := range map[string]struct {
		h    func(first bool, w http.ResponseWriter, r *http.Request)
		want string // "" : success
	}{
		"server ignores Range": {h: func(first bool, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3145733")
			if first {
				w.Write(img[:1<<20+3])
				panic(http.ErrAbortHandler)
			}
			w.Write(img) // 200 with everything: the agent skips what it has
		}},
		"image changed during the download": {h: func(first bool, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v1"`)
			if first {
				w.Header().Set("Content-Length", "3145733")
				w.Write(img[:1<<20])
				panic(http.ErrAbortHandler)
			}
			if r.Header.Get("If-Range") != `"v1"` {
				t.Errorf("If-Range = %q", r.Header.Get("If-Range"))
			}
			w.Header().Set("ETag", `"v2"`)
			w.Write(img)
		}, want: "changed on the server during the download"},
		"not found": {h: func(first bool, w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, want: "HTTP 404 Not Found"},
		"server errors, then the image": {h: func(first bool, w http.ResponseWriter, r *http.Request) {
			if first {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			w.Write(img)
		}},
		"server keeps failing": {h: func(first bool, w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusBadGateway)
		}, want: "gave up after 4 attempts without progress at byte 0 of 3145733: get http"},
		"stalled connection": {h: func(first bool, w http.ResponseWriter, r *http.Request) {
			if first {
				w.Header().Set("Content-Length", "3145733")
				w.Write(img[:100])
				w.(http.Flusher).Flush()
				<-r.Context().Done() // sends nothing more
				return
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(img))
		}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int32
			s := serve(t, func(w http.ResponseWriter, r *http.Request) { tc.h(n.Add(1) == 1, w, r) })
			o := fast()
			o.Target = filepath.Join(t.TempDir(), "disk.img")
			o.IdleTimeout = 200 * time.Millisecond
			rep, err := Write(context.Background(), payload(s.URL+"/os.img", img), o)
			if tc.want == "" {
				if err != nil || rep.SHA256 != digest(img) {
					t.Fatalf("Write = %+v, %v", rep, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPayloadAndTargetChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := Payload{URL: "http://x/os.img", SHA256: strings.Repeat("ab", 32), Size: 1, Server: "http://x", FirstBootToken: "t"}
	for name, tc := range map[string]struct {
		p      Payload
		target string
		want   string
	}{
		"bad url":        {Payload{URL: "ftp://x", SHA256: good.SHA256, Size: 1, Server: "s", FirstBootToken: "t"}, dir + "/a", "is not an http://"},
		"bad sha":        {Payload{URL: good.URL, SHA256: "ABC", Size: 1, Server: "s", FirstBootToken: "t"}, dir + "/a", "not 64 lower-case hex"},
		"no size":        {Payload{URL: good.URL, SHA256: good.SHA256, Server: "s", FirstBootToken: "t"}, dir + "/a", "size 0 is not positive"},
		"no token":       {Payload{URL: good.URL, SHA256: good.SHA256, Size: 1}, dir + "/a", "could not check in"},
		"directory":      {good, dir, "neither a block device nor a regular file"},
		"no target":      {good, "", "no target disk"},
		"missing parent": {good, dir + "/no/such/disk", "create target file"},
	} {
		if _, err := Write(context.Background(), tc.p, Options{Target: tc.target}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Write = %v, want %q", name, err, tc.want)
		}
	}
}

// sysTree builds /sys/block and /proc entries for PickDisk.
func sysTree(t *testing.T, disks map[string]map[string]string, mounts, swaps string) string {
	t.Helper()
	root := t.TempDir()
	for name, attrs := range disks {
		dir := filepath.Join(root, "sys/devices/pci0000:00/0000:00:1f.2", name)
		if attrs["usb"] != "" {
			dir = filepath.Join(root, "sys/devices/pci0000:00/0000:00:14.0/usb1/1-1", name)
		}
		os.MkdirAll(dir, 0o755)
		for k, v := range attrs {
			if k == "usb" {
				continue
			}
			p := filepath.Join(dir, k)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if !strings.HasSuffix(k, "/") {
				os.WriteFile(p, []byte(v+"\n"), 0o644)
			}
		}
		os.MkdirAll(filepath.Join(root, "sys/block"), 0o755)
		rel, _ := filepath.Rel(filepath.Join(root, "sys/block"), dir)
		os.Symlink(rel, filepath.Join(root, "sys/block", name))
	}
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/mounts"), []byte(mounts), 0o644)
	os.WriteFile(filepath.Join(root, "proc/swaps"), []byte(swaps), 0o644)
	return root
}

func TestPickDisk(t *testing.T) {
	t.Parallel()
	const tb = "1953525168" // 1 TB in sectors
	initramfs := "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n"
	for name, tc := range map[string]struct {
		disks         map[string]map[string]string
		mounts, swaps string
		want, err     string
	}{
		"one disk": {disks: map[string]map[string]string{"vda": {"size": "20971520"}}, mounts: initramfs, want: "/dev/vda"},
		"nvme beside a usb stick and a cd": {disks: map[string]map[string]string{
			"nvme0n1": {"size": tb},
			"sdb":     {"size": "60000000", "usb": "1"},
			"sr0":     {"size": "1000"},
			"loop0":   {"size": "1000"},
		}, mounts: initramfs, want: "/dev/nvme0n1"},
		"two disks: refuse to guess": {disks: map[string]map[string]string{
			"nvme0n1": {"size": tb}, "nvme1n1": {"size": tb}, "sda": {"size": "0"},
		}, mounts: initramfs, err: "2 disks could take the image: nvme0n1 (1000.2 GB), nvme1n1 (1000.2 GB); refusing to guess: pass rackstrap.disk=/dev/NAME on the kernel command line (or --disk); not considered: sda: no medium (size 0)"},
		"booted from a disk": {disks: map[string]map[string]string{
			"sda": {"size": tb}, "nvme0n1": {"size": tb},
		}, mounts: "/dev/sda2 / ext4 rw 0 0\n", want: "/dev/nvme0n1"},
		"nvme partition mounted, other swap": {disks: map[string]map[string]string{
			"nvme0n1": {"size": tb}, "nvme1n1": {"size": tb}, "vdb": {"size": tb},
		}, mounts: "/dev/nvme0n1p3 /boot ext4 rw 0 0\n", swaps: "Filename Type Size Used Priority\n/dev/nvme1n1p2 partition 1 0 -2\n", want: "/dev/vdb"},
		"removable, read-only and held": {disks: map[string]map[string]string{
			"sda": {"size": tb, "removable": "1"}, "sdb": {"size": tb, "ro": "1"}, "sdc": {"size": tb, "holders/md0": ""},
		}, mounts: initramfs, err: "no disk can take the image; not considered: sda: removable, sdb: read-only, sdc: held by device-mapper or MD RAID"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := sysTree(t, tc.disks, tc.mounts, tc.swaps)
			got, err := PickDisk(root)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PickDisk = %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("PickDisk = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestDiskOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"sda": "sda", "sda2": "sda", "nvme0n1p3": "nvme0n1", "nvme0n1": "nvme0n1", "mmcblk0p1": "mmcblk0", "vdb1": "vdb", "dm-0": "", "loop3": "", "md127": ""} {
		if got := diskOf(in); got != want {
			t.Errorf("diskOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLoopDevice writes to a real block device (a loop device over a file)
// where the test may make one (root, a kernel with loop devices): zeros are
// written too, the device is opened exclusively, and a mounted device is
// refused.
func TestLoopDevice(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root to make a loop device: run 'make test' as root")
	}
	backing := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, bytes.Repeat([]byte{0xEE}, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Fatalf("losetup: %v; this test needs a loop device (util-linux's losetup and /dev/loop-control, from 'make test')", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	img := image(3<<20 + 512)
	copy(img[2<<20:], make([]byte, 1<<20)) // zeros the device held 0xEE in
	s := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	o := fast()
	o.Target = dev
	rep, err := Write(context.Background(), payload(s.URL, img), o)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Device || rep.SHA256 != digest(img) {
		t.Errorf("report = %+v", rep)
	}
	got := make([]byte, len(img))
	f, _ := os.Open(backing)
	f.ReadAt(got, 0)
	f.Close()
	if !bytes.Equal(got, img) {
		t.Error("the backing file does not hold the image (zeros not written?)")
	}
	// Too small: the device is 8 MiB.
	big := image(9 << 20)
	if _, err := Write(context.Background(), payload(s.URL, big), Options{Target: dev}); err == nil || !strings.Contains(err.Error(), "disk too small: "+dev+" holds 8388608 bytes") {
		t.Errorf("Write(9 MiB to an 8 MiB device) = %v", err)
	}
	// Held open exclusively by someone else: refused.
	held, err := openExclusive(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := Write(context.Background(), payload(s.URL, img), Options{Target: dev}); err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Errorf("Write to a device in use = %v", err)
	}
}

// TestSparseOnlyWhereSafe: zero chunks are not written into a new file (it
// stays sparse and still reads back as the image), but are zeroed (a
// punched hole) over a disk file that had a size (it may hold an older OS).
func TestSparseOnlyWhereSafe(t *testing.T) {
	t.Parallel()
	img := image(40 << 20)
	clear(img[4<<20 : 36<<20]) // 32 MiB of zeros: two whole 16 MiB writes
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.img", time.Time{}, bytes.NewReader(img))
	})
	dir := t.TempDir()
	for name, old := range map[string][]byte{"new file": nil, "old disk": bytes.Repeat([]byte{0xEB}, 48<<20)} {
		target := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if old != nil {
			os.WriteFile(target, old, 0o644)
		}
		o := fast()
		o.Target = target
		rep, err := Write(context.Background(), payload(s.URL+"/os.img", img), o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := os.ReadFile(target)
		if rep.SHA256 != digest(img) || !bytes.Equal(got[:len(img)], img) {
			t.Errorf("%s: the target does not read back as the image (report %+v)", name, rep)
		}
		var st syscall.Stat_t
		syscall.Stat(target, &st)
		allocated := st.Blocks * 512
		if old == nil && allocated > 12<<20 {
			t.Errorf("new file: %d bytes allocated for an image with 8 MiB of data: zeros were written", allocated)
		}
		if old != nil && !bytes.Equal(got[len(img):], old[len(img):]) {
			t.Errorf("old disk: bytes past the image changed")
		}
	}
}
