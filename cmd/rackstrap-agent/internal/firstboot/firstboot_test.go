package firstboot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func record() Record {
	return Record{Server: "https://10.0.0.1:8443", Token: "fb-tok", CA: "-----BEGIN CERTIFICATE-----\n…\n", ImageSHA256: strings.Repeat("a", 64), WrittenAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "etc", "firstboot.json")
	if err := Save(p, record(), 0); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(p)
	want := record()
	want.Version = 1
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("Load = %+v, %v; want %+v", got, err, want)
	}
	// After the check-in: the session replaces the token.
	got.Token, got.Session, got.Node, got.CheckedInAt = "", "sess", "n1", time.Now().UTC()
	if err := Save(p, got, 0); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("fb-tok")) {
		t.Error("the spent token is still in the record")
	}
	if again, err := Load(p); err != nil || again.Session != "sess" {
		t.Errorf("Load after check-in = %+v, %v", again, err)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, want string }{
		"not json":      {"server=x", "is not valid"},
		"unknown field": {`{"version":1,"server":"x","firstBootToken":"t","extra":1}`, "unknown field"},
		"version 2":     {`{"version":2,"server":"x","firstBootToken":"t"}`, "has version 2"},
		"no token":      {`{"version":1,"server":"x"}`, "neither a first-boot token nor a session"},
		"no server":     {`{"version":1,"firstBootToken":"t"}`, "has no server"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(p, []byte(tc.content), 0o600)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := Load(filepath.Join(dir, "absent")); err == nil {
		t.Error("Load(absent) succeeded")
	}
}

// The device layout, on a file standing in for a disk.
func TestTailBlock(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	f.Truncate(size)
	data := []byte(`{"version":1,"server":"http://x","firstBootToken":"t"}`)
	if err := saveTail(f, size, data, 7<<20+1); err == nil || !strings.Contains(err.Error(), "no room past the image") {
		t.Errorf("saveTail over the image = %v", err)
	}
	if err := saveTail(f, size, data, 7<<20); err != nil {
		t.Fatal(err)
	}
	got, err := loadTail(f, size)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("loadTail = %q, %v", got, err)
	}
	block := make([]byte, len(Magic))
	f.ReadAt(block, size-TailOffset)
	if string(block) != Magic {
		t.Errorf("block starts %q", block)
	}
	if _, err := loadTail(f, size+4096); err == nil || !strings.Contains(err.Error(), "no record") {
		t.Errorf("loadTail where there is none = %v", err)
	}
}

// TestBlockDevice saves and loads the record on a loop device, where the
// test may make one.
func TestBlockDevice(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root to make a loop device: run 'make test' as root")
	}
	backing := filepath.Join(t.TempDir(), "backing.img")
	os.WriteFile(backing, make([]byte, 4<<20), 0o644)
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Fatalf("losetup: %v; this test needs a loop device (util-linux's losetup and /dev/loop-control, from 'make test')", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if err := Save(dev, record(), 3<<20+1); err == nil {
		t.Error("Save over the image succeeded")
	}
	if err := Save(dev, record(), 2<<20); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dev)
	if err != nil || got.Token != "fb-tok" || got.Server != record().Server {
		t.Errorf("Load(%s) = %+v, %v", dev, got, err)
	}
	b, _ := os.ReadFile(backing)
	if !bytes.HasPrefix(b[3<<20:], []byte(Magic)) {
		t.Error("the record is not 1 MiB before the end of the device")
	}
}
