package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/tasks"
	"github.com/rackstrap/rackstrap/images/seed"
)

// TestImageTaskWithSeed: an image task that carries a cloud-init seed
// gets it written into the image's CIDATA partition after the verified
// write (the image's root, the last partition, is grown first); a task
// with a bad seed fails before the disk is touched.
func TestImageTaskWithSeed(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk is not installed: apt-get install gdisk")
	}
	dir := t.TempDir()
	imgPath := filepath.Join(dir, "os.raw")
	os.WriteFile(imgPath, nil, 0o644)
	os.Truncate(imgPath, 48<<20)
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+34M", "-t", "1:0700", "-c", "1:CIDATA", "-n", "2:0:0", "-t", "2:8300", imgPath).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	img, _ := os.ReadFile(imgPath)
	sum := sha256.Sum256(img)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.raw", time.Time{}, bytes.NewReader(img))
	}))
	t.Cleanup(s.Close)
	target := filepath.Join(dir, "disk.raw")
	os.WriteFile(target, nil, 0o644)
	os.Truncate(target, 64<<20) // a VM disk larger than the image
	tf := &taskFlags{disk: target, firstbootFile: filepath.Join(dir, "fb.json")}
	h := imageHandler(testDeps(), tf, t.TempDir(), s.Client(), nil, io.Discard)
	sd := seed.Seed{UserData: "#cloud-config\nhostname: n1\n", MetaData: seed.MetaData("rackstrap-n1", "n1")}
	payload := func(sd any) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"url": s.URL + "/os.raw", "sha256": hex.EncodeToString(sum[:]), "size": len(img),
			"server": "http://ctl", "firstBootToken": "fb", "seed": sd})
		return b
	}

	bad := h(context.Background(), tasks.Task{Kind: "image", Payload: payload(map[string]string{"userData": ""})}, false)
	if bad.OK {
		t.Fatalf("a task with an invalid seed succeeded: %s", bad.Message)
	}
	if fi, _ := os.Stat(target); fi.Size() != 64<<20 {
		t.Fatal("the disk changed size")
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, make([]byte, 64<<20)) {
		t.Error("a task with an invalid seed wrote to the disk")
	}

	out := h(context.Background(), tasks.Task{Kind: "image", Payload: payload(sd)}, false)
	if !out.OK || !strings.Contains(out.Message, "(CIDATA)") || !strings.Contains(out.Message, "grew partition 2") {
		t.Fatalf("image task with a seed = %+v", out)
	}
	got, err := seed.Read(target)
	if err != nil || got != sd {
		t.Errorf("seed on the disk = %+v, %v; want %+v", got, err, sd)
	}
}
