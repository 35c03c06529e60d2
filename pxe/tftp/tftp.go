// Package tftp serves first-stage boot loaders (iPXE binaries) read-only
// over TFTP, from an artifact source chain, with github.com/pin/tftp/v3.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/rackstrap/rackstrap/pxe/artifact"
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address (default 0.0.0.0:69).
	Addr netip.AddrPort
	// Timeout is the retransmit timeout (default 1.5 s; the library's 5 s
	// stalls a boot ROM for seconds on one lost packet). Retries defaults
	// to 5.
	Timeout time.Duration
	Retries int
	// MaxBlockSize caps the negotiated blksize (0: the interface MTU).
	MaxBlockSize int
	// MaxTransfers bounds concurrent transfers (default 128). In a boot
	// storm a request beyond it waits up to QueueWait (default 2 s, below a
	// PXE ROM's retransmit time) for a slot, because a boot ROM treats a
	// TFTP error as final; at most 4×MaxTransfers requests wait, the rest get
	// an error at once.
	MaxTransfers int
	QueueWait    time.Duration
}

func (c Config) withDefaults() Config {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), 69)
	}
	if c.Timeout == 0 {
		c.Timeout = 1500 * time.Millisecond
	}
	if c.Retries == 0 {
		c.Retries = 5
	}
	if c.MaxTransfers == 0 {
		c.MaxTransfers = 128
	}
	if c.QueueWait == 0 {
		c.QueueWait = 2 * time.Second
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Timeout < 100*time.Millisecond || c.Timeout > 10*time.Second {
		errs = append(errs, fmt.Errorf("timeout %v: use 1s to 2s", c.Timeout))
	}
	if c.Retries < 1 || c.MaxTransfers < 1 {
		errs = append(errs, errors.New("retries and max transfers must be positive"))
	}
	if c.MaxBlockSize != 0 && (c.MaxBlockSize < 512 || c.MaxBlockSize > 65464) {
		errs = append(errs, fmt.Errorf("max block size %d: use 512 to 65464", c.MaxBlockSize))
	}
	return errors.Join(errs...)
}

// Stats counts transfers.
type Stats struct {
	Served, Failed, Refused, NotFound, Busy, SizeProbes uint64
	Active                                              int
}

// Server is a read-only TFTP server.
type Server struct {
	cfg Config
	log *slog.Logger
	src artifact.Source
	sem chan struct{}

	served, failed, refused, notFound, busy, probes atomic.Uint64
	waiting                                         atomic.Int64

	ready chan struct{}
	mu    sync.Mutex
	addr  netip.AddrPort
}

// New validates cfg and returns a server for the files of src.
func New(cfg Config, log *slog.Logger, src artifact.Source) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("pxe/tftp: invalid configuration: %w", err)
	}
	if src == nil {
		return nil, errors.New("pxe/tftp: no artifact source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log.With("service", "tftp"), src: src,
		sem: make(chan struct{}, cfg.MaxTransfers), ready: make(chan struct{})}, nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address (after Ready).
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Served: s.served.Load(), Failed: s.failed.Load(), Refused: s.refused.Load(),
		NotFound: s.notFound.Load(), Busy: s.busy.Load(), SizeProbes: s.probes.Load(), Active: len(s.sem)}
}

// Serve listens and serves until ctx ends; transfers under way finish first.
func (s *Server) Serve(ctx context.Context) error {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(s.cfg.Addr))
	if err != nil {
		return fmt.Errorf("pxe/tftp: start: listen %v: %w", s.cfg.Addr, err)
	}
	srv := tftp.NewServer(s.read, nil)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBackoff(func(int) time.Duration { return 50 * time.Millisecond })
	if s.cfg.MaxBlockSize != 0 {
		srv.SetBlockSize(s.cfg.MaxBlockSize)
	}
	srv.SetHook(hook{s})
	s.mu.Lock()
	s.addr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s.mu.Unlock()
	s.log.Info("serving", "addr", s.Addr(), "timeout", s.cfg.Timeout, "max_transfers", s.cfg.MaxTransfers)
	close(s.ready)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	select {
	case <-ctx.Done():
		srv.Shutdown()
		<-done
		return nil
	case err := <-done:
		conn.Close()
		return fmt.Errorf("pxe/tftp: serve: %w", err)
	}
}

// acquire takes a transfer slot, waiting up to QueueWait when all are busy
// (and few enough others wait) so a burst of boots queues instead of
// failing.
func (s *Server) acquire() bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
	}
	if s.waiting.Add(1) > int64(4*cap(s.sem)) {
		s.waiting.Add(-1)
		return false
	}
	defer s.waiting.Add(-1)
	t := time.NewTimer(s.cfg.QueueWait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (s *Server) read(filename string, rf io.ReaderFrom) error {
	var remote string
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		remote = ra.String()
	}
	name, err := artifact.CleanPath(filename, false)
	if err != nil {
		s.refused.Add(1)
		s.log.Warn("request refused", "remote", remote, "file", filename, "err", err)
		return errors.New("access violation: path refused")
	}
	if !s.acquire() {
		s.busy.Add(1)
		s.log.Warn("busy: too many transfers; raise MaxTransfers if this persists", "remote", remote, "file", name)
		return errors.New("server busy, retry")
	}
	defer func() { <-s.sem }()
	f, err := s.src.Open(context.Background(), name)
	if err != nil {
		if errors.Is(err, artifact.ErrBadPath) {
			s.refused.Add(1)
			s.log.Warn("request refused", "remote", remote, "file", filename, "err", err)
			return errors.New("access violation: path refused")
		}
		s.notFound.Add(1)
		s.log.Info("not found", "remote", remote, "file", name, "err", err)
		return errors.New("file not found")
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(st.Size())
		}
	}
	_, err = rf.ReadFrom(f)
	return err // the hook has counted and logged it
}

type hook struct{ s *Server }

func (h hook) OnSuccess(st tftp.TransferStats) {
	h.s.served.Add(1)
	h.s.log.Debug("sent", "remote", st.RemoteAddr, "file", st.Filename, "duration", st.Duration)
}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "code=8"):
		// UEFI firmware asks for tsize, then aborts with ERROR 8 and asks
		// again for the data: normal.
		h.s.probes.Add(1)
		h.s.log.Debug("size probe", "remote", st.RemoteAddr, "file", st.Filename)
	case strings.Contains(msg, "access violation") || strings.Contains(msg, "file not found") || strings.Contains(msg, "server busy"):
		// Already counted and logged by read.
	default:
		h.s.failed.Add(1)
		h.s.log.Warn("transfer failed", "remote", st.RemoteAddr, "file", st.Filename, "err", err)
	}
}
