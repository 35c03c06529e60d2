// Package http is the HTTP boot server: per-node iPXE scripts from the
// controller, and kernels, initramfs and images from the artifact store,
// with Range, ETag/If-None-Match, HEAD and sendfile (http.ServeContent over
// *os.File).
package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rackstrap/rackstrap/pxe/artifact"
)

// Scripts renders a node's iPXE script; the controller implements it from
// its in-memory view (unknown MACs get the discovery script).
type Scripts interface {
	Script(ctx context.Context, mac net.HardwareAddr) ([]byte, error)
}

// Identities names the node behind a client address (the DHCP server's
// leases satisfy it), for the access log.
type Identities interface {
	Identify(ip netip.Addr) (mac string, ok bool)
}

// Deps are the server's collaborators; any may be nil (their requests get
// 404, the access log shows no MAC).
type Deps struct {
	Files      artifact.Source
	Scripts    Scripts
	Identities Identities
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address (default 0.0.0.0:8080).
	Addr netip.AddrPort
	// ScriptPath serves scripts: GET ScriptPath?mac=aa:bb:… (default /ipxe).
	ScriptPath string
	// MaxConcurrent bounds requests in flight (default 512); a request
	// waits up to QueueWait (default 5 s) for a slot, then gets 503.
	MaxConcurrent int
	QueueWait     time.Duration
	// ReadHeaderTimeout (default 10 s) and IdleTimeout (default 60 s)
	// guard against slow or idle clients.
	ReadHeaderTimeout, IdleTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), 8080)
	}
	if c.ScriptPath == "" {
		c.ScriptPath = "/ipxe"
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 512
	}
	if c.QueueWait == 0 {
		c.QueueWait = 5 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	return c
}

// Stats counts requests.
type Stats struct {
	Requests, Scripts, Files, NotFound, Refused, Busy, Errors uint64
	BytesSent                                                 uint64
	InFlight                                                  int
}

// Server is the HTTP boot server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	src     artifact.Source
	scripts Scripts
	ids     Identities
	sem     chan struct{}

	requests, nScripts, files, notFound, refused, busy, errs, bytes atomic.Uint64

	ready chan struct{}
	mu    sync.Mutex
	addr  netip.AddrPort

	// fileBytes holds an *atomic.Uint64 of body bytes sent per artifact
	// path: one atomic add per request on the serving path, no lock.
	fileBytes sync.Map
}

// New validates cfg and returns a server.
func New(cfg Config, log *slog.Logger, deps Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.MaxConcurrent < 1 || cfg.QueueWait < 0 {
		return nil, errors.New("pxe/http: invalid configuration: max concurrent must be positive")
	}
	if len(cfg.ScriptPath) < 2 || cfg.ScriptPath[0] != '/' {
		return nil, fmt.Errorf("pxe/http: invalid configuration: script path %q: use an absolute path such as /ipxe", cfg.ScriptPath)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log.With("service", "http"), src: deps.Files, scripts: deps.Scripts, ids: deps.Identities,
		sem: make(chan struct{}, cfg.MaxConcurrent), ready: make(chan struct{})}, nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address (after Ready).
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// FileBytes returns the body bytes sent for each artifact served since
// start, by clean relative path (one entry per file that exists: the map
// is as bounded as the artifact store). It measures what the boot server
// sent for images against what rack caches fetched.
func (s *Server) FileBytes() map[string]uint64 {
	out := map[string]uint64{}
	s.fileBytes.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Scripts: s.nScripts.Load(), Files: s.files.Load(),
		NotFound: s.notFound.Load(), Refused: s.refused.Load(), Busy: s.busy.Load(), Errors: s.errs.Load(),
		BytesSent: s.bytes.Load(), InFlight: len(s.sem)}
}

// Handler returns the server's handler (for embedding in another mux).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve listens and serves until ctx ends, then drains for up to 5 s.
func (s *Server) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr.String())
	if err != nil {
		return fmt.Errorf("pxe/http: start: listen %v: %w", s.cfg.Addr, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.log.Info("serving", "addr", s.Addr(), "scripts", s.cfg.ScriptPath, "max_concurrent", s.cfg.MaxConcurrent)
	close(s.ready)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("pxe/http: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("pxe/http: serve: %w", err)
	}
	return nil
}

// logWriter records the status and size for the access log.
type logWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *logWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *logWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile: http.ServeContent copies an *os.File into the
// response, which the connection sends with sendfile(2).
func (w *logWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	w.n += n
	return n, err
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.requests.Add(1)
	lw := &logWriter{ResponseWriter: w}
	mac := r.URL.Query().Get("mac")
	defer func() {
		if mac == "" && s.ids != nil {
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				mac, _ = s.ids.Identify(ap.Addr().Unmap())
			}
		}
		s.bytes.Add(uint64(lw.n))
		s.log.Info("request", "remote", r.RemoteAddr, "mac", mac, "method", r.Method, "path", r.URL.Path,
			"range", r.Header.Get("Range"), "status", lw.status, "bytes", lw.n, "duration", time.Since(start))
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		lw.Header().Set("Allow", "GET, HEAD")
		http.Error(lw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !s.acquire(r.Context()) {
		s.busy.Add(1)
		lw.Header().Set("Retry-After", "1")
		http.Error(lw, "busy, retry", http.StatusServiceUnavailable)
		return
	}
	defer func() { <-s.sem }()
	if r.URL.Path == s.cfg.ScriptPath {
		s.script(lw, r, mac)
		return
	}
	s.file(lw, r)
}

// acquire takes a request slot, waiting up to QueueWait.
func (s *Server) acquire(ctx context.Context) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.QueueWait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (s *Server) script(w *logWriter, r *http.Request, mac string) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		s.refused.Add(1)
		http.Error(w, "missing or invalid mac parameter: use ?mac=aa:bb:cc:dd:ee:ff", http.StatusBadRequest)
		return
	}
	if s.scripts == nil {
		s.notFound.Add(1)
		http.NotFound(w, r)
		return
	}
	b, err := s.scripts.Script(r.Context(), hw)
	if err != nil {
		s.errs.Add(1)
		s.log.Error("render script", "mac", hw, "err", err)
		http.Error(w, "cannot render the boot script; see the controller log", http.StatusInternalServerError)
		return
	}
	s.nScripts.Add(1)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

func (s *Server) file(w *logWriter, r *http.Request) {
	name, err := artifact.CleanPath(r.URL.Path, true)
	if err != nil {
		s.refused.Add(1)
		s.log.Warn("path refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		http.Error(w, "path refused", http.StatusBadRequest)
		return
	}
	if s.src == nil {
		s.notFound.Add(1)
		http.NotFound(w, r)
		return
	}
	f, err := s.src.Open(r.Context(), name)
	switch {
	case errors.Is(err, artifact.ErrBadPath):
		s.refused.Add(1)
		s.log.Warn("path refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		http.Error(w, "path refused", http.StatusBadRequest)
		return
	case errors.Is(err, artifact.ErrNotFound):
		s.notFound.Add(1)
		http.NotFound(w, r)
		return
	case err != nil:
		s.errs.Add(1)
		s.log.Error("open artifact", "path", name, "err", err)
		http.Error(w, "cannot open the file; see the server log", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.errs.Add(1)
		http.Error(w, "cannot stat the file", http.StatusInternalServerError)
		return
	}
	s.files.Add(1)
	before := w.n
	defer func() {
		c, ok := s.fileBytes.Load(name)
		if !ok {
			c, _ = s.fileBytes.LoadOrStore(name, new(atomic.Uint64))
		}
		c.(*atomic.Uint64).Add(uint64(w.n - before))
	}()
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, st.Size(), st.ModTime().UnixNano()))
	w.Header().Set("Accept-Ranges", "bytes")
	// ServeContent answers Range, If-None-Match, If-Modified-Since and HEAD.
	http.ServeContent(w, r, name, st.ModTime(), f)
}
