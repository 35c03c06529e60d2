// Package cache is the per-rack image cache (`rackstrap serve --role
// rack-cache`): an HTTP server in a rack that fetches each content-addressed
// blob once from the controller's boot server (its upstream), verifies its
// SHA-256 before keeping it, and serves the rack's nodes from its disk.
//
// A blob is asked for as
//
//	GET /sha256/<64 hex digits>/<path on the upstream>
//
// (BlobURL builds such a URL from an image URL and its digest). The first
// request for a digest starts one upstream fetch; every request for it,
// first or concurrent, streams from the file as the fetch writes it, so no
// client waits for the whole blob. The last byte is held back until the
// digest is verified: a client of a blob whose upstream bytes do not match
// never receives a complete body (its connection ends short of the
// Content-Length), and the bytes are not kept. Range, If-Range (the ETag is
// the digest) and HEAD work on blobs in flight as on blobs on disk, so an
// agent resumes an interrupted download from the byte it stopped at.
//
// An interrupted upstream fetch resumes with a Range request. Verified
// blobs live under Dir/blobs/sha256/<hex>, renamed into place after an
// fsync, and survive restarts; after a restart each is hashed again once,
// on its first request, before it is served.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrDigest means the upstream's bytes do not hash to the digest asked for.
var ErrDigest = errors.New("content does not match its sha256 digest")

// ErrNotFound means the upstream has no file at the path asked for.
var ErrNotFound = errors.New("not found upstream")

// Config configures a Cache.
type Config struct {
	// Upstream is the base URL blobs are fetched from: the controller's
	// HTTP boot server (http://10.0.0.1:8081).
	Upstream string
	// Dir keeps the verified blobs (Dir/blobs/sha256) and partial fetches
	// (Dir/tmp, emptied at start).
	Dir string
	// Addr is the listen address of Serve (default 0.0.0.0:8090).
	Addr netip.AddrPort
	// Client fetches from the upstream (default: a client with connect
	// and response-header timeouts, no overall timeout: blobs are large).
	Client *http.Client
	// Retries is how many times an interrupted upstream fetch resumes
	// (default 5), RetryWait the first wait between them, doubling
	// (default 1 s).
	Retries   int
	RetryWait time.Duration
	// MaxBlob refuses upstream files larger than this (default 256 GiB).
	MaxBlob int64
	// UpstreamIdle ends an upstream response that sends nothing for this
	// long (default 60 s); the fetch then resumes with Range.
	UpstreamIdle time.Duration
	// ReadHeaderTimeout and IdleTimeout guard against slow or idle
	// clients (defaults 10 s, 60 s).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// Metrics, when set, is served at /metrics (Register adds the cache's
	// counters to a registry).
	Metrics prometheus.Gatherer
	Log     *slog.Logger
}

func (c Config) withDefaults() Config {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), 8090)
	}
	if c.Client == nil {
		c.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 nil, // air-gapped: never through a proxy
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 60 * time.Second,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	if c.Retries <= 0 {
		c.Retries = 5
	}
	if c.RetryWait <= 0 {
		c.RetryWait = time.Second
	}
	if c.MaxBlob <= 0 {
		c.MaxBlob = 256 << 30
	}
	if c.UpstreamIdle <= 0 {
		c.UpstreamIdle = 60 * time.Second
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats counts what a Cache did since it started.
type Stats struct {
	// Requests: blob requests answered (any status). Hits: of those, for a
	// blob already verified on disk. Fetches: upstream fetches started
	// (one per blob, plus one per refused or failed fetch retried later).
	// Resumes: upstream requests that resumed a fetch with Range.
	Requests, Hits, Fetches, Resumes uint64
	// UpstreamBytes: bytes read from the upstream. ServedBytes: body bytes
	// sent to clients.
	UpstreamBytes, ServedBytes uint64
	// Refused: fetched blobs thrown away because their digest did not
	// match; Failed: fetches that failed otherwise (upstream down, 404).
	Refused, Failed uint64
}

// Cache is a rack image cache.
type Cache struct {
	cfg      Config
	upstream *url.URL
	log      *slog.Logger
	blobs    string
	tmp      string

	mu       sync.Mutex
	verified map[string]int64 // digest -> size, hashed by this process
	flights  map[string]*flight

	base    context.Context // ends when Serve ends: cancels fetches
	stop    context.CancelFunc
	fetches sync.WaitGroup

	ready chan struct{}
	addr  atomic.Value // net.Addr

	requests, hits, fetchesN, resumes, upstreamBytes, servedBytes, refused, failed atomic.Uint64
}

// New validates cfg and prepares the cache directory (keeping verified
// blobs, removing partial fetches).
func New(cfg Config) (*Cache, error) {
	cfg = cfg.withDefaults()
	if cfg.Upstream == "" {
		return nil, errors.New("cache: no upstream: give the controller's boot server URL, e.g. http://10.0.0.1:8081")
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cache: upstream %q: want an http:// or https:// URL of the controller's boot server, e.g. http://10.0.0.1:8081", cfg.Upstream)
	}
	if cfg.Dir == "" {
		return nil, errors.New("cache: no directory: give one for the cached blobs")
	}
	c := &Cache{
		cfg: cfg, upstream: u, log: cfg.Log,
		blobs: filepath.Join(cfg.Dir, "blobs", "sha256"), tmp: filepath.Join(cfg.Dir, "tmp"),
		verified: map[string]int64{}, flights: map[string]*flight{}, ready: make(chan struct{}),
	}
	if err := os.MkdirAll(c.blobs, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w; check --cache-dir exists and is writable", err)
	}
	if err := os.RemoveAll(c.tmp); err != nil {
		return nil, fmt.Errorf("cache: clear partial fetches: %w", err)
	}
	if err := os.MkdirAll(c.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.base, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Requests: c.requests.Load(), Hits: c.hits.Load(), Fetches: c.fetchesN.Load(), Resumes: c.resumes.Load(),
		UpstreamBytes: c.upstreamBytes.Load(), ServedBytes: c.servedBytes.Load(),
		Refused: c.refused.Load(), Failed: c.failed.Load(),
	}
}

// Register adds the cache's counters to reg, as rackstrap_cache_*.
func (c *Cache) Register(reg prometheus.Registerer) error {
	for name, f := range map[string]func() uint64{
		"requests_total":         c.requests.Load,
		"hits_total":             c.hits.Load,
		"upstream_fetches_total": c.fetchesN.Load,
		"upstream_resumes_total": c.resumes.Load,
		"upstream_bytes_total":   c.upstreamBytes.Load,
		"served_bytes_total":     c.servedBytes.Load,
		"refused_total":          c.refused.Load,
		"failed_total":           c.failed.Load,
	} {
		f := f
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "rackstrap_cache_" + name, Help: "rack image cache: " + strings.ReplaceAll(name, "_", " ")},
			func() float64 { return float64(f()) })); err != nil {
			return fmt.Errorf("cache: metrics: %w", err)
		}
	}
	return nil
}

// Ready is closed once Serve listens; Addr is then its address.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Addr is the address Serve listens on (nil before Ready).
func (c *Cache) Addr() net.Addr {
	a, _ := c.addr.Load().(net.Addr)
	return a
}

// Serve listens on Config.Addr and serves until ctx ends; upstream fetches
// in progress are then cancelled (their partial files are removed at the
// next start).
func (c *Cache) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", c.cfg.Addr.String())
	if err != nil {
		return fmt.Errorf("cache: listen %s: %w; pick another --cache-listen address or stop what uses it", c.cfg.Addr, err)
	}
	return c.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx ends.
func (c *Cache) ServeListener(ctx context.Context, ln net.Listener) error {
	c.addr.Store(ln.Addr())
	hs := &http.Server{Handler: c, ReadHeaderTimeout: c.cfg.ReadHeaderTimeout, IdleTimeout: c.cfg.IdleTimeout,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(shut)
		hs.Close()
	}()
	close(c.ready)
	c.log.Info("rack cache listening", "addr", ln.Addr().String(), "upstream", c.upstream.String(), "dir", c.cfg.Dir)
	err := hs.Serve(ln)
	close(done)
	c.Close()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("cache: serve: %w", err)
}

// Close cancels upstream fetches and waits for them (Serve calls it).
func (c *Cache) Close() {
	c.stop()
	c.fetches.Wait()
}

// BlobURL is the URL of an image at imageURL (on the upstream, with that
// sha256 hex digest) in the cache at cacheBase: cacheBase/sha256/<hex><path
// of imageURL>.
func BlobURL(cacheBase, imageURL, digest string) (string, error) {
	digest = strings.TrimPrefix(digest, "sha256:")
	if !validDigest(digest) {
		return "", fmt.Errorf("cache: digest %q: want 64 lowercase hex digits", digest)
	}
	u, err := url.Parse(imageURL)
	if err != nil || u.Path == "" || u.Path == "/" {
		return "", fmt.Errorf("cache: image URL %q has no path", imageURL)
	}
	b, err := url.Parse(cacheBase)
	if err != nil || (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" {
		return "", fmt.Errorf("cache: cache URL %q: want http://host:port", cacheBase)
	}
	return strings.TrimSuffix(cacheBase, "/") + "/sha256/" + digest + u.EscapedPath(), nil
}

// ParsePath splits a blob request path /sha256/<hex>/<path> into the digest
// and the cleaned upstream path (always starting with "/").
func ParsePath(p string) (digest, upstreamPath string, err error) {
	rest, ok := strings.CutPrefix(p, "/sha256/")
	if !ok {
		return "", "", fmt.Errorf("path %q: want /sha256/<hex digest>/<path on the boot server>", p)
	}
	digest, up, ok := strings.Cut(rest, "/")
	if !ok || up == "" {
		return "", "", fmt.Errorf("path %q: want /sha256/<hex digest>/<path on the boot server>", p)
	}
	if !validDigest(digest) {
		return "", "", fmt.Errorf("path %q: digest %q is not 64 lowercase hex digits", p, digest)
	}
	clean := path.Clean("/" + up)
	if clean == "/" {
		return "", "", fmt.Errorf("path %q: no file after the digest", p)
	}
	for _, seg := range strings.Split(up, "/") {
		if seg == ".." {
			return "", "", fmt.Errorf("path %q: '..' is not allowed", p)
		}
	}
	return digest, clean, nil
}

func validDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if !(d[i] >= '0' && d[i] <= '9' || d[i] >= 'a' && d[i] <= 'f') {
			return false
		}
	}
	return true
}

// ServeHTTP serves blobs, /healthz, /stats (the counters as JSON) and
// /metrics (with Config.Metrics).
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		io.WriteString(w, "ok\n")
		return
	case "/metrics":
		if c.cfg.Metrics != nil {
			promhttp.HandlerFor(c.cfg.Metrics, promhttp.HandlerOpts{}).ServeHTTP(w, r)
			return
		}
	case "/stats":
		w.Header().Set("Content-Type", "application/json")
		s := c.Stats()
		fmt.Fprintf(w, `{"requests":%d,"hits":%d,"fetches":%d,"resumes":%d,"upstreamBytes":%d,"servedBytes":%d,"refused":%d,"failed":%d}`+"\n",
			s.Requests, s.Hits, s.Fetches, s.Resumes, s.UpstreamBytes, s.ServedBytes, s.Refused, s.Failed)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "rack cache: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	digest, up, err := ParsePath(r.URL.Path)
	if err != nil {
		http.Error(w, "rack cache: "+err.Error(), http.StatusNotFound)
		return
	}
	c.requests.Add(1)
	cw := &countingWriter{ResponseWriter: w, n: &c.servedBytes}
	c.serveBlob(cw, r, digest, up)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Uint64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(uint64(n))
	return n, err
}

// ReadFrom keeps sendfile for files on disk.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(w.ResponseWriter, r)
	w.n.Add(uint64(n))
	return n, err
}

func (c *Cache) blobPath(digest string) string { return filepath.Join(c.blobs, digest) }

func (c *Cache) serveBlob(w http.ResponseWriter, r *http.Request, digest, up string) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"sha256:`+digest+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")

	for try := 0; ; try++ {
		c.mu.Lock()
		if _, ok := c.verified[digest]; ok {
			c.mu.Unlock()
			if f, err := os.Open(c.blobPath(digest)); err == nil {
				defer f.Close()
				c.hits.Add(1)
				http.ServeContent(w, r, "", time.Time{}, f)
				return
			}
			// Removed under us (an operator cleaned the cache): fetch again.
			c.mu.Lock()
			delete(c.verified, digest)
		}
		fl := c.flights[digest]
		if fl == nil {
			fl = newFlight(digest)
			c.flights[digest] = fl
			c.fetches.Add(1)
			go c.run(fl, up)
		}
		c.mu.Unlock()

		// Wait until the size is known (or the flight failed).
		select {
		case <-fl.sized:
		case <-r.Context().Done():
			return
		}
		rd, err := fl.reader(r.Context())
		if errors.Is(err, errRetired) && try < 3 {
			continue // it just finished: serve the kept file
		}
		c.serveFlight(w, r, rd, err)
		return
	}
}

func (c *Cache) serveFlight(w http.ResponseWriter, r *http.Request, rd *blobReader, err error) {
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, ErrNotFound) {
			status = http.StatusNotFound
		}
		http.Error(w, "rack cache: "+err.Error(), status)
		return
	}
	defer rd.Close()
	http.ServeContent(w, r, "", time.Time{}, rd)
}

// run is one blob's flight: verify what is on disk from an earlier run, or
// fetch it from the upstream; then retire the flight.
func (c *Cache) run(fl *flight, up string) {
	defer c.fetches.Done()
	err := c.fill(fl, up)
	c.mu.Lock()
	delete(c.flights, fl.digest)
	if err == nil {
		c.verified[fl.digest] = fl.size
	}
	c.mu.Unlock()
	fl.finish(err)
	if err != nil {
		c.log.Warn("rack cache: blob not cached", "digest", fl.digest, "path", up, "err", err)
	}
}

func (c *Cache) fill(fl *flight, up string) error {
	final := c.blobPath(fl.digest)
	if f, err := os.Open(final); err == nil {
		// Kept from an earlier run: hash it once before serving it.
		fi, serr := f.Stat()
		h := sha256.New()
		n, rerr := io.Copy(h, f)
		f.Close()
		if serr == nil && rerr == nil && n == fi.Size() && hex.EncodeToString(h.Sum(nil)) == fl.digest {
			g, err := os.Open(final)
			if err == nil {
				fl.setSize(n, g)
				fl.progress(n)
				return nil
			}
		}
		c.log.Warn("rack cache: a kept blob does not verify; fetching it again", "digest", fl.digest)
		os.Remove(final)
	}
	c.fetchesN.Add(1)
	err := c.fetch(fl, up)
	if err != nil {
		if errors.Is(err, ErrDigest) {
			c.refused.Add(1)
		} else {
			c.failed.Add(1)
		}
	}
	return err
}

// fetch streams the upstream file into a temporary file, resuming with
// Range after interruptions, verifies it and renames it into place.
func (c *Cache) fetch(fl *flight, up string) (err error) {
	src := c.upstream.JoinPath(up).String()
	tmp, err := os.CreateTemp(c.tmp, fl.digest+"-")
	if err != nil {
		return fmt.Errorf("fetch %s: %w; check the cache directory is writable and has space", src, err)
	}
	// Readers get their own descriptor of the file being written; it is
	// the flight's once the size is known.
	rd, err := os.Open(tmp.Name())
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	defer func() {
		if err != nil {
			if !fl.hasSize() {
				rd.Close()
			}
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	sum := sha256.New()
	var (
		written int64
		size    int64 = -1
		etag    string
		wait    = c.cfg.RetryWait
		last    error
	)
	for attempt := 0; attempt <= c.cfg.Retries; attempt++ {
		if attempt > 0 {
			c.log.Info("rack cache: upstream fetch interrupted; resuming", "url", src, "at", written, "attempt", attempt, "err", last)
			select {
			case <-c.base.Done():
				return c.base.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		var done, retry bool
		done, retry, last = c.fetchOnce(fl, src, tmp, sum, &written, &size, &etag, rd)
		if done {
			break
		}
		if !retry || c.base.Err() != nil {
			return last
		}
	}
	if last != nil {
		return fmt.Errorf("%w (gave up after %d attempts)", last, c.cfg.Retries+1)
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if got != fl.digest {
		return fmt.Errorf("fetch %s: %w: got sha256 %s for %s; the controller's copy differs from the image manifest: re-import or rebuild the image there", src, ErrDigest, got, fl.digest)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fetch %s: sync: %w", src, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch %s: %w", src, err)
	}
	if err := os.Rename(tmp.Name(), c.blobPath(fl.digest)); err != nil {
		return fmt.Errorf("fetch %s: keep: %w", src, err)
	}
	if d, err := os.Open(c.blobs); err == nil {
		d.Sync()
		d.Close()
	}
	if !fl.hasSize() { // upstream gave no length: readers start now
		fl.setSize(written, rd)
	}
	c.log.Info("rack cache: blob cached", "digest", fl.digest, "bytes", written, "from", src)
	return nil
}

// fetchOnce makes one upstream request from written on. done: the whole
// file is in; retry: the failure may pass.
func (c *Cache) fetchOnce(fl *flight, src string, tmp *os.File, sum hash.Hash, written, size *int64, etag *string, rd *os.File) (done, retry bool, err error) {
	// A stalled upstream (no bytes for UpstreamIdle) is cut off and the
	// fetch resumes.
	ctx, cancel := context.WithCancelCause(c.base)
	defer cancel(nil)
	errIdle := fmt.Errorf("the upstream sent nothing for %s", c.cfg.UpstreamIdle)
	idle := time.AfterFunc(c.cfg.UpstreamIdle, func() { cancel(errIdle) })
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return false, false, fmt.Errorf("fetch %s: %w", src, err)
	}
	if *written > 0 {
		c.resumes.Add(1)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", *written))
		if *etag != "" {
			req.Header.Set("If-Range", *etag)
		}
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return false, true, fmt.Errorf("fetch %s: %w; is the controller's boot server (--upstream) reachable from this rack?", src, err)
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	switch {
	case resp.StatusCode == http.StatusOK:
		if *written > 0 { // the upstream ignored Range (or the file changed): skip what we have
			if _, err := io.CopyN(io.Discard, resp.Body, *written); err != nil {
				return false, true, fmt.Errorf("fetch %s: %w", src, err)
			}
		}
		if resp.ContentLength >= 0 && *size < 0 {
			*size = resp.ContentLength
		}
	case resp.StatusCode == http.StatusPartialContent && *written > 0:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != *written || (*size >= 0 && total >= 0 && total != *size) {
			return false, false, fmt.Errorf("fetch %s: asked for bytes %d-, the upstream answered Content-Range %q", src, *written, resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == http.StatusNotFound:
		return false, false, fmt.Errorf("fetch %s: %w (404); check the image is in the controller's artifact directory", src, ErrNotFound)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return false, true, fmt.Errorf("fetch %s: upstream answered %s", src, resp.Status)
	default:
		return false, false, fmt.Errorf("fetch %s: upstream answered %s", src, resp.Status)
	}
	if *size > c.cfg.MaxBlob {
		return false, false, fmt.Errorf("fetch %s: %d bytes is more than the cache's limit of %d", src, *size, c.cfg.MaxBlob)
	}
	if *etag == "" {
		*etag = resp.Header.Get("ETag")
	}
	if *size >= 0 && !fl.hasSize() {
		fl.setSize(*size, rd)
	}
	limit := c.cfg.MaxBlob
	if *size >= 0 {
		limit = *size
	}
	buf := make([]byte, 256<<10)
	for {
		idle.Reset(c.cfg.UpstreamIdle)
		n, rerr := body.Read(buf)
		if n > 0 {
			if *written+int64(n) > limit {
				return false, false, fmt.Errorf("fetch %s: the upstream sent more than its %d bytes", src, limit)
			}
			if _, err := tmp.Write(buf[:n]); err != nil {
				return false, false, fmt.Errorf("fetch %s: write: %w; check the cache directory has space", src, err)
			}
			sum.Write(buf[:n])
			*written += int64(n)
			c.upstreamBytes.Add(uint64(n))
			fl.progress(*written)
		}
		if rerr == io.EOF {
			if *size >= 0 && *written < *size {
				return false, true, fmt.Errorf("fetch %s: the upstream ended at byte %d of %d", src, *written, *size)
			}
			return true, false, nil
		}
		if rerr != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
				rerr = cause
			}
			return false, true, fmt.Errorf("fetch %s: after %d bytes: %w", src, *written, rerr)
		}
	}
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL may be "*": -1).
func contentRange(h string) (start, total int64, ok bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	s, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, false
		}
	}
	return start, total, true
}
