package gpt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

func sgdisk(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk is not installed: apt-get install gdisk")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sgdisk", args...).CombinedOutput()
	if err != nil && !strings.Contains(strings.Join(args, " "), "-v") {
		t.Fatalf("sgdisk %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// imageDisk makes a 64 MiB "image" (an ESP and a Linux root that fills
// it, as rackstrap image build lays it out) and grows the file to size,
// as a disk larger than the image.
func imageDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 64*mib); err != nil {
		t.Fatal(err)
	}
	sgdisk(t, "-n", "1:2048:+16M", "-t", "1:ef00", "-c", "1:ESP", "-n", "2:0:0", "-t", "2:8300", "-c", "2:root", "-A", "2:set:2", p)
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

type file struct{ *os.File }

func open(t *testing.T, p string) file {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return file{f}
}

var partLine = regexp.MustCompile(`(?m)^\s+(\d+)\s+(\d+)\s+(\d+)\s`)

// partitions is sgdisk -p's table: number -> [first, last].
func partitions(t *testing.T, p string) map[int][2]uint64 {
	t.Helper()
	out := sgdisk(t, "-p", p)
	m := map[int][2]uint64{}
	for _, l := range partLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(l[1])
		a, _ := strconv.ParseUint(l[2], 10, 64)
		b, _ := strconv.ParseUint(l[3], 10, 64)
		m[n] = [2]uint64{a, b}
	}
	return m
}

func TestGrowToDisk(t *testing.T) {
	t.Parallel()
	size := int64(200 * mib)
	p := imageDisk(t, size)
	before := sgdisk(t, "-v", p)
	if strings.Contains(before, "No problems found") {
		t.Fatalf("sgdisk -v finds no problem before growing (the backup is not at the end):\n%s", before)
	}
	f := open(t, p)
	tb, err := Read(f, 512)
	if err != nil {
		t.Fatal(err)
	}
	esp, ok := tb.Find(TypeESP)
	if !ok || esp.Index != 0 || esp.Name != "ESP" {
		t.Fatalf("Find(ESP) = %+v, %v", esp, ok)
	}
	g, err := Grow(f, 512, size, mib)
	if err != nil {
		t.Fatal(err)
	}
	wantLast := uint64((size-mib)/512) - 1
	if g.Partition != 2 || g.NewLast != wantLast || !g.BackupMoved || !g.Changed() {
		t.Errorf("Grow = %+v, want partition 2 to end at sector %d", g, wantLast)
	}
	if out := sgdisk(t, "-v", p); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v after growing:\n%s", out)
	}
	got := partitions(t, p)
	if got[2][1] != wantLast || got[1] != [2]uint64{2048, 2048 + 16*2048 - 1} {
		t.Errorf("sgdisk -p = %v, want partition 2 to end at %d and partition 1 unchanged", got, wantLast)
	}
	// names and attributes kept
	if out := sgdisk(t, "-i", "2", p); !strings.Contains(out, "Partition name: 'root'") || !strings.Contains(out, "Attribute flags: 0000000000000004") {
		t.Errorf("sgdisk -i 2:\n%s", out)
	}

	// again: nothing to do, nothing written
	stat := func() []byte { b, _ := os.ReadFile(p); return b }
	was := stat()
	g, err = Grow(f, 512, size, mib)
	if err != nil || g.Changed() || g.String() != "the partition table already fills the disk" {
		t.Errorf("second Grow = %+v (%v), %v", g, g, err)
	}
	if !bytes.Equal(was, stat()) {
		t.Error("second Grow changed the disk")
	}
}

func TestGrowRefusesSmallerDisk(t *testing.T) {
	t.Parallel()
	p := imageDisk(t, 64*mib)
	f := open(t, p)
	if _, err := Grow(f, 512, 32*mib, mib); err == nil || !strings.Contains(err.Error(), "smaller than the image") {
		t.Fatalf("Grow onto a smaller disk = %v", err)
	}
}

// failingDisk fails every write after the first n.
type failingDisk struct {
	file
	n int
}

func (d *failingDisk) WriteAt(b []byte, off int64) (int, error) {
	if d.n == 0 {
		return 0, errors.New("power cut")
	}
	d.n--
	return d.file.WriteAt(b, off)
}

// A crash after any write leaves a table sgdisk reads as valid (the old
// one or the new one), and Grow run again finishes the job.
func TestGrowCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	size := int64(128 * mib)
	for n := range 5 {
		p := imageDisk(t, size)
		d := &failingDisk{open(t, p), n}
		if _, err := Grow(d, 512, size, mib); err == nil && n < 4 {
			t.Fatalf("crash after %d writes: Grow succeeded", n)
		}
		// the disk reads as a GPT (sgdisk falls back to the backup when
		// the primary is damaged, and says so)
		out := sgdisk(t, "-p", p)
		if !strings.Contains(out, "Number  Start (sector)") {
			t.Errorf("crash after %d writes: sgdisk -p:\n%s", n, out)
		}
		if _, err := Grow(open(t, p), 512, size, mib); err != nil {
			// a primary header whose entries do not match: the agent
			// reports it rather than guess
			if n != 3 || !errors.Is(err, ErrNoGPT) {
				t.Errorf("crash after %d writes: Grow again = %v", n, err)
			}
			continue
		}
		if out := sgdisk(t, "-v", p); !strings.Contains(out, "No problems found") {
			t.Errorf("crash after %d writes, grown again: sgdisk -v:\n%s", n, out)
		}
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	p := imageDisk(t, 64*mib)
	good, _ := os.ReadFile(p)
	for name, tc := range map[string]struct {
		mutate func(b []byte)
		want   string
	}{
		"no signature":   {func(b []byte) { b[512] = 'X' }, "does not start with"},
		"header crc":     {func(b []byte) { b[512+40] ^= 1 }, "header's CRC32"},
		"entries crc":    {func(b []byte) { b[1024+56] ^= 1 }, "entries' CRC32"},
		"all zero":       {func(b []byte) { clear(b[:64*1024]) }, "does not start with"},
		"4096 sectors?":  {nil, "does not start with"},
		"wrong sectorsz": {nil, "not a power of two"},
	} {
		b := bytes.Clone(good)
		if tc.mutate != nil {
			tc.mutate(b)
		}
		ss := int64(512)
		switch name {
		case "4096 sectors?":
			ss = 4096
		case "wrong sectorsz":
			ss = 1000
		}
		if _, err := Read(bytes.NewReader(b), ss); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Read = %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzRead(f *testing.F) {
	// a valid table as the seed, from sgdisk
	dir := f.TempDir()
	p := filepath.Join(dir, "d")
	os.WriteFile(p, nil, 0o644)
	os.Truncate(p, 4*mib)
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+1M", "-t", "1:ef00", "-n", "2:0:0", p).CombinedOutput(); err != nil {
		f.Fatalf("sgdisk (apt-get install gdisk): %v %s", err, out)
	}
	b, _ := os.ReadFile(p)
	f.Add(b[:34*512])
	f.Add(make([]byte, 34*512))
	f.Fuzz(func(t *testing.T, b []byte) {
		tb, err := Read(bytes.NewReader(b), 512)
		if err != nil {
			return
		}
		// a table that reads must plan without panicking
		d := int64(len(b)) + 8*mib
		_, _ = tb.Plan(d, mib)
	})
}
