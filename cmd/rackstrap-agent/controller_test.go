package main

// The task loop against the real controller: its store (SQLite in a temp
// dir) and its API over a real socket, with tasks put in the store as the
// lifecycle edge (controller/edge) puts them.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// noActor refuses operator actions: the tests drive the store directly.
type noActor struct{}

func (noActor) Act(context.Context, lifecycle.Request) (model.Operation, error) {
	return model.Operation{}, errors.New("no lifecycle engine in this test")
}

type controller struct {
	t   *testing.T
	db  *store.DB
	srv *httptest.Server
}

func newController(t *testing.T) *controller { return startController(t, httptest.NewServer) }

// startController serves the controller's API with serve (httptest.NewServer,
// or httptest.NewTLSServer for an API over HTTPS).
func startController(t *testing.T, serve func(http.Handler) *httptest.Server) *controller {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := prometheus.NewRegistry()
	s, err := api.New(db, noActor{}, slog.New(slog.DiscardHandler), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(s)
	t.Cleanup(srv.Close)
	return &controller{t: t, db: db, srv: srv}
}

// node creates a node and returns a netboot enrolment token for it, as the
// controller does when it renders the node's boot script.
func (c *controller) node(name string) string {
	c.t.Helper()
	ctx := context.Background()
	if _, _, err := c.db.CreateNode(ctx, model.Node{Name: name}, "test"); err != nil {
		c.t.Fatal(err)
	}
	return c.token(name, "netboot")
}

func (c *controller) token(node, phase string) string {
	c.t.Helper()
	tok, err := c.db.IssueToken(context.Background(), node, phase, time.Hour, "test")
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// imageTask queues an image task as edge.Image does (with a first-boot
// token in the payload) and returns that token.
func (c *controller) imageTask(node, key string, img edge.Image) string {
	c.t.Helper()
	fbTok := c.token(node, string(lifecycle.PhaseFirstBoot))
	payload, _ := json.Marshal(edge.ImageTask{Image: img, Server: c.srv.URL, FirstBootToken: fbTok})
	if _, err := c.db.PutTask(context.Background(), store.Task{Key: key, Node: node, Kind: "image", Payload: payload}, "controller"); err != nil {
		c.t.Fatal(err)
	}
	return fbTok
}

func (c *controller) burnInTask(node, key string, checks ...string) {
	c.t.Helper()
	payload, _ := json.Marshal(map[string]any{"checks": checks})
	if _, err := c.db.PutTask(context.Background(), store.Task{Key: key, Node: node, Kind: "burn-in", Payload: payload}, "controller"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *controller) task(key string) store.Task {
	c.t.Helper()
	task, err := c.db.GetTask(context.Background(), key)
	if err != nil {
		c.t.Fatal(err)
	}
	return task
}

// imageResult decodes an image task's result as the edge does.
func imageResult(t *testing.T, task store.Task) edge.ImageResult {
	t.Helper()
	var r edge.ImageResult
	if err := json.Unmarshal(task.Result, &r); err != nil {
		t.Fatalf("task %s result %s: %v", task.Key, task.Result, err)
	}
	return r
}

// testImage is a generated OS image: random data with zero stretches, an
// odd size that does not end on a MiB.
func testImage(size int, seed uint64) []byte {
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i < size; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			img[i+j] = byte(v >> (8 * j))
		}
	}
	for off := 3 << 20; off+(1<<20) < size; off += 5 << 20 {
		clear(img[off : off+(1<<20)]) // zero runs, as a real disk image has
	}
	return img
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// imageServer serves one image with Range support (as the controller's
// boot HTTP server does with http.ServeContent) and injectable faults.
type imageServer struct {
	*httptest.Server
	mu     sync.Mutex
	data   []byte
	gets   atomic.Int32 // requests
	ranges atomic.Int32 // requests with a Range header
	// dropAfter, when > 0, makes the first response without Range send
	// that many bytes and then cut the connection.
	dropAfter int
	// cutAt, when > 0, makes every response end at that byte of the image
	// (the connection drops there, every time).
	cutAt int
}

func newImageServer(t *testing.T, data []byte) *imageServer {
	s := &imageServer{data: data}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gets.Add(1)
		s.mu.Lock()
		data, drop := s.data, s.dropAfter
		if r.Header.Get("Range") != "" {
			s.ranges.Add(1)
		} else {
			s.dropAfter = 0
		}
		s.mu.Unlock()
		if s.cutAt > 0 {
			start := 0
			if rg, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
				start, _ = strconv.Atoi(strings.TrimSuffix(rg, "-"))
				w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
			if start > 0 {
				w.WriteHeader(http.StatusPartialContent)
			}
			if start < s.cutAt {
				w.Write(data[start:s.cutAt])
			}
			panic(http.ErrAbortHandler)
		}
		if drop > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Header().Set("Last-Modified", time.Unix(1700000000, 0).UTC().Format(http.TimeFormat))
			w.Write(data[:drop])
			panic(http.ErrAbortHandler) // the connection drops mid-image
		}
		http.ServeContent(w, r, "os.img", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *imageServer) image(size int64, digest string) edge.Image {
	return edge.Image{URL: s.URL + "/images/os.img", SHA256: digest, Size: size}
}

// agentRun runs `rackstrap-agent run` for node with the netboot token, as
// the kernel command line would give them, until the controller has had no
// task for a moment.
func agentRun(t *testing.T, ctx context.Context, c *controller, token string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("BOOT_IMAGE=vmlinuz initrd=initrd.img rackstrap.server="+c.srv.URL+" rackstrap.token="+token+" rackstrap.phase=netboot\n"), 0o644)
	// Later flags win: a test's --task-state replaces this one.
	all := append([]string{"run", "--cmdline", cmdline, "--sys-root", hostTree(t), "--idle-exit", "300ms", "--task-state", filepath.Join(dir, "tasks.json")}, args...)
	return executeCtx(t, ctx, testDeps(), all...)
}

func executeCtx(t *testing.T, ctx context.Context, d *deps, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd(d)
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func readRecord(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("first-boot record %s: %v", path, err)
	}
	return m
}

// TestImageThenFirstBoot is the agent's whole life against the real
// controller: netboot check-in, the image task (streamed, verified, read
// back, first-boot record saved), then the installed OS's first boot:
// check-in with the record's token, burn-in; and after a reboot, a second
// first-boot run that carries on with the saved session.
func TestImageThenFirstBoot(t *testing.T) {
	t.Parallel()
	c := newController(t)
	img := testImage(21<<20+4321, 1)
	is := newImageServer(t, img)
	const node = "rack1-node01"
	tok := c.node(node)
	fbTok := c.imageTask(node, node+"/image/1", is.image(int64(len(img)), sha(img)))
	dir := t.TempDir()
	target, fb, state := filepath.Join(dir, "disk.img"), filepath.Join(dir, "firstboot.json"), filepath.Join(dir, "tasks.json")

	stdout, stderr, err := agentRun(t, context.Background(), c, tok, "--disk", target, "--firstboot-file", fb, "--task-state", state)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	task := c.task(node + "/image/1")
	if task.Status != store.TaskDone || imageResult(t, task) != (edge.ImageResult{SHA256: sha(img), Bytes: int64(len(img))}) {
		t.Fatalf("image task = %+v (%s), want done with the image's sha256\nstdout:\n%s\nstderr:\n%s", task, task.Result, stdout, stderr)
	}
	if !strings.Contains(task.Message, "read every byte back") {
		t.Errorf("task message = %q", task.Message)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, img) {
		t.Errorf("target holds %d bytes (sha256 %s), want exactly the image's %d", len(got), sha(got), len(img))
	}
	rec := readRecord(t, fb)
	if rec["firstBootToken"] != fbTok || rec["server"] != c.srv.URL || rec["imageSHA256"] != sha(img) {
		t.Errorf("first-boot record = %v, want the task's server and token", rec)
	}
	if fi, _ := os.Stat(fb); fi.Mode().Perm() != 0o600 {
		t.Errorf("first-boot record mode %v, want 0600 (it holds a token)", fi.Mode().Perm())
	}
	if !strings.Contains(stdout, "checked in as node "+node) || !strings.Contains(stdout, "task "+node+"/image/1 (image): ok") {
		t.Errorf("stdout = %q", stdout)
	}
	if ci, _ := c.db.LatestCheckIn(context.Background(), node, "netboot", time.Time{}); ci == nil {
		t.Error("no netboot check-in recorded")
	}

	// First boot of the installed OS: burn-in with the checks this host
	// can pass.
	c.burnInTask(node, node+"/burnin/1", "memory", "disk", "nic-link")
	root := hostTree(t)
	fbState := filepath.Join(dir, "fb-tasks.json")
	firstbootArgs := []string{"firstboot", "--state", fb, "--sys-root", root, "--disk", target, "--task-state", fbState,
		"--idle-exit", "300ms", "--burnin-memory-mib", "8", "--burnin-disk-mib", "4"}
	stdout, stderr, err = executeCtx(t, context.Background(), testDeps(), firstbootArgs...)
	if err != nil {
		t.Fatalf("firstboot: %v\n%s", err, stderr)
	}
	if ci, _ := c.db.LatestCheckIn(context.Background(), node, "firstboot", time.Time{}); ci == nil {
		t.Errorf("no first-boot check-in recorded; stdout %q", stdout)
	}
	bt := c.task(node + "/burnin/1")
	var br struct {
		Checks []struct {
			Name    string
			Pass    bool
			Message string
		}
	}
	json.Unmarshal(bt.Result, &br)
	if bt.Status != store.TaskDone || len(br.Checks) != 3 || !br.Checks[0].Pass || !br.Checks[1].Pass || !br.Checks[2].Pass {
		t.Fatalf("burn-in task = %+v (%s)\nstderr:\n%s", bt, bt.Result, stderr)
	}
	if !strings.Contains(br.Checks[1].Message, target+": read 4.0 MiB") || !strings.Contains(br.Checks[2].Message, "link up: ens3") {
		t.Errorf("burn-in checks = %+v", br.Checks)
	}
	rec = readRecord(t, fb)
	if rec["firstBootToken"] != nil || rec["session"] == nil || rec["node"] != node {
		t.Errorf("first-boot record after check-in = %v, want the session instead of the spent token", rec)
	}

	// A reboot during burn-in: the token is spent, the session carries on;
	// this burn-in asks for GPUs, and this host has no NVIDIA driver.
	c.burnInTask(node, node+"/burnin/2", "memory", "gpu-burn")
	stdout, stderr, err = executeCtx(t, context.Background(), testDeps(), firstbootArgs...)
	if err != nil {
		t.Fatalf("firstboot again: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "already checked in as node "+node) {
		t.Errorf("second firstboot stdout = %q", stdout)
	}
	bt = c.task(node + "/burnin/2")
	json.Unmarshal(bt.Result, &br)
	if bt.Status != store.TaskFailed || len(br.Checks) != 2 || !br.Checks[0].Pass || br.Checks[1].Pass ||
		!strings.Contains(br.Checks[1].Message, "no NVIDIA driver") || !strings.Contains(bt.Message, "gpu-burn: no NVIDIA driver") {
		t.Errorf("GPU burn-in without a driver = %+v (%s), want failed with the driver message", bt, bt.Result)
	}
}

// TestImageTaskFailures: whatever goes wrong is reported failed, with a
// message, and leaves the target not bootable (or untouched).
func TestImageTaskFailures(t *testing.T) {
	t.Parallel()
	c := newController(t)
	img := testImage(9<<20+17, 2)
	for name, tc := range map[string]struct {
		serve     []byte // what the image server has
		cutAt     int    // every response drops at this byte
		size      int64  // what the task says
		presize   int64  // the target file's size before (a disk of that size)
		want      string
		untouched bool // nothing may have been written
	}{
		"corrupted download": {serve: corrupt(img, 5<<20), size: int64(len(img)), want: "image verification failed: write os.img: image does not match its signed manifest: the image hashes to"},
		"corrupted head":     {serve: corrupt(img, 100), size: int64(len(img)), want: "image verification failed"},
		"truncated download": {serve: img, cutAt: 7<<20 + 3, size: int64(len(img)), want: "gave up after 9 attempts without progress at byte 7340035 of 9437201"},
		"truncated file":     {serve: img[:len(img)-4096], size: int64(len(img)), want: "the image server sends 9433105 bytes", untouched: true},
		"disk too small":     {serve: img, size: int64(len(img)), presize: 8 << 20, want: "disk too small: ", untouched: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			node := "n-" + strings.ReplaceAll(name, " ", "-")
			tok := c.node(node)
			is := newImageServer(t, tc.serve)
			is.cutAt = tc.cutAt
			c.imageTask(node, node+"/image", is.image(tc.size, sha(img)))
			dir := t.TempDir()
			target, fb := filepath.Join(dir, "disk.img"), filepath.Join(dir, "fb.json")
			// A disk (a file with a size) that holds an old OS.
			old := bytes.Repeat([]byte{0xEB}, int(cmp.Or(tc.presize, 16<<20)))
			os.WriteFile(target, old, 0o644)
			_, stderr, err := agentRun(t, context.Background(), c, tok, "--disk", target, "--firstboot-file", fb)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, stderr)
			}
			task := c.task(node + "/image")
			if task.Status != store.TaskFailed || !strings.Contains(task.Message, tc.want) {
				t.Fatalf("task = %s %q, want failed with %q\n%s", task.Status, task.Message, tc.want, stderr)
			}
			got, _ := os.ReadFile(target)
			switch {
			case tc.untouched:
				if !bytes.Equal(got, old) {
					t.Error("the target was written to")
				}
			case !bytes.Equal(got[:1<<20], make([]byte, 1<<20)):
				t.Errorf("first MiB of the target is not zeroed after a failed write (message %q)", task.Message)
			}
			if _, err := os.Stat(fb); err == nil {
				t.Error("first-boot record written for a failed image")
			}
		})
	}
}

func corrupt(b []byte, at int) []byte {
	out := bytes.Clone(b)
	out[at] ^= 0x40
	return out
}

// TestImageDownloadResumes: the connection drops mid-image; the agent asks
// for the rest with a Range request and the image is still exact.
func TestImageDownloadResumes(t *testing.T) {
	t.Parallel()
	c := newController(t)
	img := testImage(6<<20+999, 3)
	is := newImageServer(t, img)
	is.dropAfter = 2<<20 + 5
	const node = "rack2-node03"
	tok := c.node(node)
	c.imageTask(node, node+"/image", is.image(int64(len(img)), sha(img)))
	dir := t.TempDir()
	target := filepath.Join(dir, "disk.img")
	_, stderr, err := agentRun(t, context.Background(), c, tok, "--disk", target)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	task := c.task(node + "/image")
	if task.Status != store.TaskDone || imageResult(t, task).SHA256 != sha(img) || !strings.Contains(task.Message, "resumed 1 times") {
		t.Fatalf("task = %+v, want done after a resume\n%s", task, stderr)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, img) || is.ranges.Load() != 1 {
		t.Errorf("target exact: %v; Range requests %d, want 1", bytes.Equal(got, img), is.ranges.Load())
	}
	// Without --firstboot-file the record goes beside a target file.
	if rec := readRecord(t, target+".firstboot.json"); rec["server"] != c.srv.URL {
		t.Errorf("first-boot record = %v", rec)
	}
}

// resultBlocker stands in front of the controller and fails every task
// result post, calling onResult, as if the agent rebooted before its report
// got through.
func resultBlocker(t *testing.T, c *controller, onResult func()) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/agent/task/result" {
			defer onResult()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"unavailable","message":"controller restarting"}`)
			return
		}
		r.URL.Scheme, r.URL.Host = "http", strings.TrimPrefix(c.srv.URL, "http://")
		r.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestRedeliveredTaskIsNotRerun: the agent writes the image but its report
// never arrives; after a "reboot" the controller hands the same task out
// again, and the agent reports the recorded result without downloading or
// writing anything again.
func TestRedeliveredTaskIsNotRerun(t *testing.T) {
	t.Parallel()
	c := newController(t)
	img := testImage(3<<20+1, 4)
	is := newImageServer(t, img)
	const node = "rack3-node05"
	tok := c.node(node)
	c.imageTask(node, node+"/image", is.image(int64(len(img)), sha(img)))
	dir := t.TempDir()
	target, state, fb := filepath.Join(dir, "disk.img"), filepath.Join(dir, "tasks.json"), filepath.Join(dir, "fb.json")

	// The agent "reboots" when its report fails.
	ctx, reboot := context.WithCancel(context.Background())
	defer reboot()
	blocked := &controller{t: t, db: c.db, srv: resultBlocker(t, c, reboot)}
	stdout, stderr, err := agentRun(t, ctx, blocked, tok, "--disk", target, "--task-state", state, "--firstboot-file", fb)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want it cancelled\n%s", err, stderr)
	}
	if task := c.task(node + "/image"); task.Status != store.TaskTaken || !strings.Contains(stderr, "task ended") {
		t.Fatalf("task %s after a run whose report was lost, want taken\nstdout %s\nstderr %s", task.Status, stdout, stderr)
	}
	fi, _ := os.Stat(target)
	written := fi.ModTime()

	// The agent comes back (new boot, new enrolment token, same state).
	stdout, stderr, err = agentRun(t, context.Background(), c, c.token(node, "netboot"), "--disk", target, "--task-state", state, "--firstboot-file", fb)
	if err != nil {
		t.Fatalf("run again: %v\n%s", err, stderr)
	}
	task := c.task(node + "/image")
	if task.Status != store.TaskDone || imageResult(t, task).SHA256 != sha(img) {
		t.Fatalf("task after redelivery = %+v", task)
	}
	if !strings.Contains(stderr, "reporting its result again without running it") || is.gets.Load() != 1 {
		t.Errorf("redelivered task: image downloaded %d times, want 1\n%s", is.gets.Load(), stderr)
	}
	if fi, _ := os.Stat(target); !fi.ModTime().Equal(written) {
		t.Error("the target was written again")
	}
	var st struct {
		Tasks map[string]struct {
			Runs     int
			Done     bool
			Reported bool
		}
	}
	b, _ := os.ReadFile(state)
	if json.Unmarshal(b, &st); st.Tasks[node+"/image"].Runs != 1 || !st.Tasks[node+"/image"].Reported {
		t.Errorf("state file = %s", b)
	}
}

// TestRunNeedsATarget: with no --disk and no rackstrap.disk=, the agent
// picks the only disk of the host; with two candidates it refuses to guess
// and says so in the task's failure.
func TestRunNeedsATarget(t *testing.T) {
	t.Parallel()
	c := newController(t)
	img := testImage(1<<20+3, 5)
	is := newImageServer(t, img)
	const node = "rack4-node01"
	tok := c.node(node)
	c.imageTask(node, node+"/image", is.image(int64(len(img)), sha(img)))
	root := hostTree(t)
	// A second disk: the agent must not pick one of two.
	os.MkdirAll(filepath.Join(root, "sys/block/nvme0n1"), 0o755)
	os.WriteFile(filepath.Join(root, "sys/block/nvme0n1/size"), []byte("7501476528\n"), 0o644)
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("rackstrap.server="+c.srv.URL+" rackstrap.token="+tok+" rackstrap.phase=netboot\n"), 0o644)
	_, stderr, err := executeCtx(t, context.Background(), testDeps(), "run", "--cmdline", cmdline, "--sys-root", root, "--idle-exit", "300ms", "--task-state", "")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	task := c.task(node + "/image")
	if task.Status != store.TaskFailed || !strings.Contains(task.Message, "2 disks could take the image: nvme0n1 (3840.8 GB), vda (10.7 GB); refusing to guess") {
		t.Errorf("task = %s %q", task.Status, task.Message)
	}
	if is.gets.Load() != 0 {
		t.Error("the image was downloaded without a target")
	}
}
