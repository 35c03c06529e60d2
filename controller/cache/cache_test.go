package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// upstream is the controller's boot server as the cache sees it: files by
// path, served with http.ServeContent (Range, ETag), counting requests.
type upstream struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gate  chan struct{} // when not nil, requests wait for it to close
	cut   atomic.Int64  // when > 0, the next full response stops after that many bytes
	stall atomic.Int64  // when > 0, the next full response stalls after that many bytes until the client leaves
	reqs  atomic.Int64
	rng   atomic.Int64 // requests with Range
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{files: map[string][]byte{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.reqs.Add(1)
		if r.Header.Get("Range") != "" {
			u.rng.Add(1)
		}
		u.mu.Lock()
		b, ok := u.files[r.URL.Path]
		gate := u.gate
		u.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		if n := u.stall.Swap(0); n > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:n])
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			return
		}
		if n := u.cut.Swap(0); n > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:n])
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) put(path string, b []byte) {
	u.mu.Lock()
	u.files[path] = b
	u.mu.Unlock()
}

func randomBlob(n int) ([]byte, string) {
	b := make([]byte, n)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// startCache runs a cache on loopback until the test ends.
func startCache(t *testing.T, upstreamURL, dir string) (*Cache, string) {
	t.Helper()
	// UpstreamIdle is long: the tests that count upstream requests must
	// not see an idle cut-off on a loaded machine.
	c, err := New(Config{Upstream: upstreamURL, Dir: dir, Addr: netip.MustParseAddrPort("127.0.0.1:0"),
		RetryWait: 10 * time.Millisecond, UpstreamIdle: 10 * time.Minute, Log: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	return c, "http://" + c.Addr().String()
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// waitUntil polls cond with a generous deadline (a condition, not a time).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentFirstRequestsFetchOnce(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	blob, digest := randomBlob(3<<20 + 123)
	up.put("/images/node.raw", blob)
	gate := make(chan struct{})
	up.gate = gate
	c, base := startCache(t, up.srv.URL, t.TempDir())
	url, err := BlobURL(base, up.srv.URL+"/images/node.raw", digest)
	if err != nil {
		t.Fatal(err)
	}

	const clients = 12
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make(chan result, clients)
	for i := range clients {
		go func() {
			hdr := map[string]string{}
			if i%3 == 1 { // some resume mid-way, as agents do
				hdr["Range"] = "bytes=1000000-"
			}
			resp, b, err := get(t, url, hdr)
			r := result{body: b, err: err}
			if resp != nil {
				r.status = resp.StatusCode
			}
			results <- r
		}()
	}
	// Every client is waiting on the one upstream request before it starts.
	waitUntil(t, "every client's request to reach the cache", func() bool { return c.Stats().Requests == clients })
	close(gate)
	for i := 0; i < clients; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("client: %v", r.err)
		}
		want, wantStatus := blob, http.StatusOK
		if r.status == http.StatusPartialContent {
			want, wantStatus = blob[1000000:], http.StatusPartialContent
		}
		if r.status != wantStatus || !bytes.Equal(r.body, want) {
			t.Fatalf("client got status %d and %d bytes, want %d and %d matching bytes", r.status, len(r.body), wantStatus, len(want))
		}
	}
	if n := up.reqs.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1 for %d concurrent clients", n, clients)
	}
	// Warm: more clients, no more upstream requests. (A concurrent client
	// counted before it joined the flight may already count as a hit when
	// the flight ended first: count the warm hits from here.)
	before := c.Stats()
	for range 3 {
		if _, b, err := get(t, url, nil); err != nil || !bytes.Equal(b, blob) {
			t.Fatalf("warm GET: %v, %d bytes", err, len(b))
		}
	}
	if n := up.reqs.Load(); n != 1 {
		t.Errorf("upstream requests after warm GETs = %d, want 1", n)
	}
	s := c.Stats()
	if s.Fetches != 1 || s.UpstreamBytes != uint64(len(blob)) || s.Hits-before.Hits != 3 {
		t.Errorf("Stats() = %+v (before the warm GETs: %+v), want 1 fetch of %d bytes and 3 more hits", s, before, len(blob))
	}
	if _, err := os.Stat(filepath.Join(c.cfg.Dir, "blobs", "sha256", digest)); err != nil {
		t.Errorf("verified blob not kept: %v", err)
	}
}

func TestRangeAndIfRange(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	blob, digest := randomBlob(1 << 20)
	up.put("/image.raw", blob)
	_, base := startCache(t, up.srv.URL, t.TempDir())
	url, _ := BlobURL(base, up.srv.URL+"/image.raw", digest)
	for _, warm := range []bool{false, true} {
		resp, b, err := get(t, url, map[string]string{"Range": "bytes=100-4195"})
		if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, blob[100:4196]) {
			t.Fatalf("warm=%v: Range 100-4195: %v, status %v, %d bytes", warm, err, resp.StatusCode, len(b))
		}
		if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 100-4195/%d", len(blob)); got != want {
			t.Errorf("Content-Range = %q, want %q", got, want)
		}
		etag := resp.Header.Get("ETag")
		if etag != `"sha256:`+digest+`"` {
			t.Errorf("ETag = %q, want the digest", etag)
		}
		// If-Range with the ETag resumes; with another validator it sends all.
		resp, b, err = get(t, url, map[string]string{"Range": "bytes=500000-", "If-Range": etag})
		if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, blob[500000:]) {
			t.Fatalf("If-Range (match): %v, status %v", err, resp.StatusCode)
		}
		resp, b, err = get(t, url, map[string]string{"Range": "bytes=500000-", "If-Range": `"other"`})
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
			t.Fatalf("If-Range (mismatch): %v, status %v", err, resp.StatusCode)
		}
	}
}

func TestCorruptUpstreamRefused(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	blob, digest := randomBlob(2 << 20)
	bad := bytes.Clone(blob)
	bad[len(bad)/2] ^= 0xff
	up.put("/image.raw", bad)
	c, base := startCache(t, up.srv.URL, t.TempDir())
	url, _ := BlobURL(base, up.srv.URL+"/image.raw", digest)
	for i := range 4 {
		resp, b, err := get(t, url, nil)
		// Either refused outright or cut short: never a complete body.
		if err == nil && resp.StatusCode == http.StatusOK && len(b) == len(bad) {
			t.Fatalf("client %d received the whole corrupt blob", i)
		}
		if err == nil && resp.StatusCode == http.StatusBadGateway && !strings.Contains(string(b), "sha256") {
			t.Errorf("refusal says %q, want it to name the digest mismatch", b)
		}
	}
	if s := c.Stats(); s.Refused == 0 {
		t.Errorf("Stats() = %+v, want a refused fetch", s)
	}
	if _, err := os.Stat(filepath.Join(c.cfg.Dir, "blobs", "sha256", digest)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt blob kept: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(c.cfg.Dir, "tmp"))
	waitUntil(t, "the partial file to be removed", func() bool {
		entries, _ = os.ReadDir(filepath.Join(c.cfg.Dir, "tmp"))
		return len(entries) == 0
	})
	// Once the controller's copy is fixed, the next request caches it.
	up.put("/image.raw", blob)
	if resp, b, err := get(t, url, nil); err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("after the upstream is fixed: %v", err)
	}
}

func TestResumesInterruptedUpstream(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	blob, digest := randomBlob(2 << 20)
	up.put("/image.raw", blob)
	up.cut.Store(700_000)
	c, base := startCache(t, up.srv.URL, t.TempDir())
	url, _ := BlobURL(base, up.srv.URL+"/image.raw", digest)
	resp, b, err := get(t, url, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("GET through an interrupted upstream: %v (%d bytes)", err, len(b))
	}
	if s := c.Stats(); s.Resumes != 1 || s.UpstreamBytes != uint64(len(blob)) {
		t.Errorf("Stats() = %+v, want 1 resume and %d upstream bytes (nothing fetched twice)", s, len(blob))
	}
	if up.rng.Load() != 1 {
		t.Errorf("upstream Range requests = %d, want 1", up.rng.Load())
	}
}

// An upstream that stops sending mid-body is cut off after UpstreamIdle
// and the fetch resumes from where it stopped.
func TestResumesStalledUpstream(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	blob, digest := randomBlob(1 << 20)
	up.put("/image.raw", blob)
	up.stall.Store(300_000)
	c, err := New(Config{Upstream: up.srv.URL, Dir: t.TempDir(), Addr: netip.MustParseAddrPort("127.0.0.1:0"),
		RetryWait: 10 * time.Millisecond, UpstreamIdle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Ready()
	url, _ := BlobURL("http://"+c.Addr().String(), up.srv.URL+"/image.raw", digest)
	resp, b, err := get(t, url, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("GET through a stalled upstream: %v (%d bytes)", err, len(b))
	}
	if s := c.Stats(); s.Resumes == 0 || s.Fetches != 1 {
		t.Errorf("Stats() = %+v, want the one fetch resumed", s)
	}
}

func TestSurvivesRestart(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	blob, digest := randomBlob(1<<20 + 7)
	other, otherDigest := randomBlob(100_000)
	up.put("/image.raw", blob)
	up.put("/other.raw", other)
	dir := t.TempDir()

	ctx, cancel := context.WithCancel(context.Background())
	c1, err := New(Config{Upstream: up.srv.URL, Dir: dir, Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c1.Serve(ctx) }()
	<-c1.Ready()
	base := "http://" + c1.Addr().String()
	for p, d := range map[string]string{"/image.raw": digest, "/other.raw": otherDigest} {
		url, _ := BlobURL(base, up.srv.URL+p, d)
		if _, _, err := get(t, url, nil); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A stray partial fetch, and a kept blob damaged on disk.
	os.WriteFile(filepath.Join(dir, "tmp", "junk"), []byte("partial"), 0o644)
	kept := filepath.Join(dir, "blobs", "sha256", otherDigest)
	damaged, _ := os.ReadFile(kept)
	damaged[10] ^= 1
	os.WriteFile(kept, damaged, 0o644)
	before := up.reqs.Load()

	c2, base2 := startCache(t, up.srv.URL, dir)
	url, _ := BlobURL(base2, up.srv.URL+"/image.raw", digest)
	resp, b, err := get(t, url, map[string]string{"Range": "bytes=10-"})
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, blob[10:]) {
		t.Fatalf("after restart: %v, status %v", err, resp.StatusCode)
	}
	if n := up.reqs.Load() - before; n != 0 {
		t.Errorf("the kept blob was fetched again (%d upstream requests)", n)
	}
	url, _ = BlobURL(base2, up.srv.URL+"/other.raw", otherDigest)
	if _, b, err := get(t, url, nil); err != nil || !bytes.Equal(b, other) {
		t.Fatalf("damaged blob: %v", err)
	}
	if n := up.reqs.Load() - before; n != 1 {
		t.Errorf("the damaged blob: %d upstream requests, want 1 (fetched again)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "junk")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial fetch not cleared at start: %v", err)
	}
	_ = c2
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	_, digest := randomBlob(10)
	_, base := startCache(t, up.srv.URL, t.TempDir())
	url, _ := BlobURL(base, up.srv.URL+"/missing.raw", digest)
	resp, b, err := get(t, url, nil)
	if err != nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "artifact") {
		t.Errorf("missing upstream file: %v, status %v, %q", err, resp.StatusCode, b)
	}
	for _, p := range []string{"/sha256/xyz/a", "/sha256/" + digest, "/sha256/" + digest + "/../x", "/other"} {
		resp, _, err := get(t, base+p, nil)
		if err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %v, status %v, want 404", p, err, resp.StatusCode)
		}
	}
	// The upstream is down: 502 naming it.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + l.Addr().String()
	l.Close()
	_, base2 := startCache(t, deadURL, t.TempDir())
	url, _ = BlobURL(base2, deadURL+"/x.raw", digest)
	resp, b, err = get(t, url, nil)
	if err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "reachable") {
		t.Errorf("dead upstream: %v, status %v, %q", err, resp.StatusCode, b)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no upstream":  {Dir: t.TempDir()},
		"bad upstream": {Upstream: "ftp://x", Dir: t.TempDir()},
		"no dir":       {Upstream: "http://127.0.0.1:1"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestBlobURL(t *testing.T) {
	t.Parallel()
	d := strings.Repeat("ab", 32)
	for name, tc := range map[string]struct {
		base, image, digest, want string
		err                       bool
	}{
		"plain":        {"http://10.1.0.5:8090", "http://10.0.0.1:8081/image.raw", d, "http://10.1.0.5:8090/sha256/" + d + "/image.raw", false},
		"prefixed":     {"http://10.1.0.5:8090/", "http://10.0.0.1:8081/a/b%20c.raw", "sha256:" + d, "http://10.1.0.5:8090/sha256/" + d + "/a/b%20c.raw", false},
		"bad digest":   {"http://c:1", "http://u/x", "abc", "", true},
		"no path":      {"http://c:1", "http://u", d, "", true},
		"bad cache":    {"c:1", "http://u/x", d, "", true},
		"upper digest": {"http://c:1", "http://u/x", strings.ToUpper(d), "", true},
	} {
		got, err := BlobURL(tc.base, tc.image, tc.digest)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: BlobURL(%q, %q, %q) = %q, %v, want %q", name, tc.base, tc.image, tc.digest, got, err, tc.want)
		}
		if err == nil {
			u := strings.TrimPrefix(got, strings.TrimSuffix(tc.base, "/"))
			if dg, _, err := ParsePath(strings.ReplaceAll(u, "%20", " ")); err != nil || dg != strings.TrimPrefix(tc.digest, "sha256:") {
				t.Errorf("%s: ParsePath(%q) = %q, %v", name, u, dg, err)
			}
		}
	}
}

func FuzzParsePath(f *testing.F) {
	d := strings.Repeat("0f", 32)
	for _, s := range []string{"/sha256/" + d + "/image.raw", "/sha256/" + d + "/a/../b", "/sha256/" + d + "//x", "/sha256/", "/x", "/sha256/" + d + "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		digest, up, err := ParsePath(p)
		if err != nil {
			return
		}
		if !validDigest(digest) || !strings.HasPrefix(up, "/") || up == "/" || strings.Contains(up, "..") && strings.Contains("/"+up+"/", "/../") {
			t.Fatalf("ParsePath(%q) = %q, %q", p, digest, up)
		}
	})
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes -1-2/3", "bytes 1-2", "items 1-2/3", "bytes 99999999999999999999-1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, total, ok := contentRange(h)
		if ok && (start < 0 || total < -1) {
			t.Fatalf("contentRange(%q) = %d, %d", h, start, total)
		}
	})
}
