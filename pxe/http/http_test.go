package http

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/pxe/artifact"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

type scripts map[string]string

func (s scripts) Script(_ context.Context, mac net.HardwareAddr) ([]byte, error) {
	if v, ok := s[mac.String()]; ok {
		return []byte(v), nil
	}
	return nil, errors.New("boom")
}

func serve(t *testing.T) (*Server, string, []byte) {
	t.Helper()
	root, outside := t.TempDir(), t.TempDir()
	data := make([]byte, 3<<20+7)
	rand.Read(data)
	os.WriteFile(filepath.Join(root, "vmlinuz"), data, 0o644)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "escape"))
	os.MkdirAll(filepath.Join(root, "images", "sub"), 0o755)
	dir, err := artifact.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	s, err := New(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, log, Deps{Files: dir,
		Scripts: scripts{"52:54:00:12:34:01": "#!ipxe\nexit\n"}, Identities: ids{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	<-s.Ready()
	return s, "http://" + s.Addr().String(), data
}

func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: install the Debian package curl")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestFilesWithCurl(t *testing.T) {
	t.Parallel()
	s, base, data := serve(t)
	out := filepath.Join(t.TempDir(), "k")
	if msg, err := curl(t, "-f", "-o", out, base+"/vmlinuz"); err != nil {
		t.Fatalf("curl: %v\n%s", err, msg)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Errorf("full GET: %d bytes, want %d", len(got), len(data))
	}
	if msg, err := curl(t, "-f", "-r", "100-199", "-o", out, base+"/vmlinuz"); err != nil {
		t.Fatalf("curl range: %v\n%s", err, msg)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data[100:200]) {
		t.Errorf("range GET: got %d bytes, want bytes 100-199", len(got))
	}
	head, err := curl(t, "-f", "-I", base+"/vmlinuz")
	if err != nil || !strings.Contains(head, fmt.Sprintf("Content-Length: %d", len(data))) || !strings.Contains(head, "Etag:") && !strings.Contains(head, "ETag:") {
		t.Errorf("HEAD: %v\n%s", err, head)
	}
	var etag string
	for _, l := range strings.Split(head, "\n") {
		if strings.HasPrefix(strings.ToLower(l), "etag:") {
			etag = strings.TrimSpace(l[5:])
		}
	}
	code, _ := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: "+etag, base+"/vmlinuz")
	if code != "304" {
		t.Errorf("If-None-Match %s: status %s, want 304", etag, code)
	}
	for path, want := range map[string]string{
		"/../../etc/passwd":           "400",
		"/%2e%2e/%2e%2e/etc/passwd":   "400",
		"/escape":                     "400",
		"/images/":                    "404",
		"/images/sub":                 "404",
		"/missing":                    "404",
		"/ipxe?mac=52:54:00:12:34:01": "200",
		"/ipxe?mac=nonsense":          "400",
		"/ipxe?mac=52:54:00:12:34:99": "500",
	} {
		code, _ := curl(t, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", base+path)
		if code != want {
			t.Errorf("GET %s: status %s, want %s", path, code, want)
		}
	}
	if st := s.Stats(); st.Refused < 3 || st.Scripts != 1 {
		t.Errorf("Stats() = %+v, want ≥3 refused and 1 script", st)
	}
	// A full GET and 100 bytes of a range (HEAD and 304 send no body).
	if got, want := s.FileBytes(), map[string]uint64{"vmlinuz": uint64(len(data)) + 100}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FileBytes() = %v, want %v", got, want)
	}
}

func TestScript(t *testing.T) {
	t.Parallel()
	_, base, _ := serve(t)
	resp, err := http.Get(base + "/ipxe?mac=52-54-00-12-34-01")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "#!ipxe\nexit\n" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /ipxe = %d %q %v, want the node's script, uncached", resp.StatusCode, b, resp.Header)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/vmlinuz", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v, want 405", resp, err)
	}
}

type ids struct{}

func (ids) Identify(ip netip.Addr) (string, bool) { return "52:54:00:12:34:01", ip.IsLoopback() }

// slowScripts blocks until release closes.
type slowScripts struct{ entered, release chan struct{} }

func (s slowScripts) Script(ctx context.Context, _ net.HardwareAddr) ([]byte, error) {
	s.entered <- struct{}{}
	<-s.release
	return []byte("#!ipxe\n"), nil
}

func TestBusy(t *testing.T) {
	t.Parallel()
	sc := slowScripts{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s, err := New(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), MaxConcurrent: 1, QueueWait: 50 * time.Millisecond}, nil, Deps{Scripts: sc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	base := "http://" + s.Addr().String()
	first := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/ipxe?mac=52:54:00:00:00:01")
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-sc.entered
	resp, err := http.Get(base + "/ipxe?mac=52:54:00:00:00:02")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request while the only slot is taken: %v %v, want 503 with Retry-After", resp, err)
	}
	close(sc.release)
	if code := <-first; code != 200 {
		t.Errorf("first request: %d, want 200", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if st := s.Stats(); st.Busy != 1 {
		t.Errorf("Stats().Busy = %d, want 1", st.Busy)
	}
}
