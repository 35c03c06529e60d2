// Package agent tests the rackstrap-agent binary, built as `make build`
// builds it (cgo, with NVML), as a process against the real controller
// (store and API in this process, over a real socket): the netboot run
// writes an image task's image to a disk file and leaves the first-boot
// record; the first-boot run checks in with that record and runs burn-in.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

type noActor struct{}

func (noActor) Act(context.Context, lifecycle.Request) (model.Operation, error) {
	return model.Operation{}, errors.New("no lifecycle engine in this test")
}

func TestAgentBinaryImagesAndFirstBoots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	bin := filepath.Join(dir, "rackstrap-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=v0.0.0-agent-test", "-o", bin, "../../cmd/rackstrap-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	apiSrv, err := api.New(db, noActor{}, slog.New(slog.DiscardHandler), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctl := httptest.NewServer(apiSrv)
	defer ctl.Close()

	// The image: 12 MiB and a bit, served with Range support.
	img := make([]byte, 12<<20+777)
	for i := range img {
		img[i] = byte(i ^ i>>9 ^ i>>17)
	}
	sum := sha256.Sum256(img)
	digest := hex.EncodeToString(sum[:])
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.img", time.Unix(1700000000, 0), bytes.NewReader(img))
	}))
	defer images.Close()

	const node = "rack9-node42"
	if _, _, err := db.CreateNode(ctx, model.Node{Name: node}, "test"); err != nil {
		t.Fatal(err)
	}
	netbootTok, err := db.IssueToken(ctx, node, "netboot", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	fbTok, err := db.IssueToken(ctx, node, string(lifecycle.PhaseFirstBoot), time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(edge.ImageTask{Image: edge.Image{URL: images.URL + "/os.img", SHA256: digest, Size: int64(len(img))}, Server: ctl.URL, FirstBootToken: fbTok})
	if _, err := db.PutTask(ctx, store.Task{Key: node + "/image", Node: node, Kind: "image", Payload: payload}, "controller"); err != nil {
		t.Fatal(err)
	}

	agent := func(args ...string) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("rackstrap-agent %s: %v\nstdout:\n%s\nstderr:\n%s", args[0], err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	// Netboot: the kernel command line names the controller, the token
	// and the disk.
	target, fb := filepath.Join(dir, "disk.img"), filepath.Join(dir, "firstboot.json")
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("initrd=initrd.img console=ttyS0 rackstrap.server="+ctl.URL+" rackstrap.token="+netbootTok+" rackstrap.phase=netboot\n"), 0o644)
	out := agent("run", "--cmdline", cmdline, "--disk", target, "--firstboot-file", fb, "--task-state", filepath.Join(dir, "netboot-tasks.json"), "--idle-exit", "1s")
	task, err := db.GetTask(ctx, node+"/image")
	if err != nil {
		t.Fatal(err)
	}
	var res edge.ImageResult
	json.Unmarshal(task.Result, &res)
	if task.Status != store.TaskDone || res.SHA256 != digest || res.Bytes != int64(len(img)) {
		t.Fatalf("image task = %s %q %s, want done with sha256 %s\n%s", task.Status, task.Message, task.Result, digest, out)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, img) {
		t.Errorf("the disk file holds %d bytes that are not the image", len(got))
	}
	var rec map[string]any
	b, _ := os.ReadFile(fb)
	if json.Unmarshal(b, &rec); rec["firstBootToken"] != fbTok || rec["server"] != ctl.URL {
		t.Errorf("first-boot record = %s", b)
	}
	if !strings.Contains(out, "checked in as node "+node+" (netboot") || !strings.Contains(out, "task "+node+"/image (image): ok: wrote 12.0 MiB") {
		t.Errorf("run stdout = %q", out)
	}

	// First boot of the installed OS: check in with the record, burn-in.
	payload, _ = json.Marshal(map[string]any{"checks": []string{"memory", "disk"}})
	if _, err := db.PutTask(ctx, store.Task{Key: node + "/burnin", Node: node, Kind: "burn-in", Payload: payload}, "controller"); err != nil {
		t.Fatal(err)
	}
	out = agent("firstboot", "--state", fb, "--disk", target, "--task-state", filepath.Join(dir, "fb-tasks.json"), "--idle-exit", "1s", "--burnin-memory-mib", "16", "--burnin-disk-mib", "4")
	if ci, _ := db.LatestCheckIn(ctx, node, "firstboot", time.Time{}); ci == nil || ci.AgentVersion != "rackstrap-agent v0.0.0-agent-test" {
		t.Errorf("first-boot check-in = %+v\n%s", ci, out)
	}
	task, _ = db.GetTask(ctx, node+"/burnin")
	if task.Status != store.TaskDone || task.Message != "2 of 2 checks passed" {
		t.Errorf("burn-in task = %s %q %s\n%s", task.Status, task.Message, task.Result, out)
	}
	t.Logf("run and firstboot:\n%s", out)
}
