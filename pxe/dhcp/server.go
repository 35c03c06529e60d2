package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Deps are the collaborators a Server calls; all are optional.
type Deps struct {
	// Store keeps leases durable; nil keeps them in memory only.
	Store LeaseStore
	// Observer hears about every client the server answers.
	Observer Observer
	// Policy overrides the boot program per client.
	Policy BootPolicy
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Server is a DHCPv4 server. Create it with New, run it with Serve.
type Server struct {
	cfg   Config
	log   *slog.Logger
	deps  Deps
	now   func() time.Time
	tab   *table
	stats counters

	// queue holds requests, releases and declines: exchanges under way,
	// served first. fresh holds DISCOVERs: new exchanges, dropped first
	// under overload and dropped when they waited past MaxQueueDelay. This
	// keeps a server offered more than it can do finishing what it starts.
	queue   chan packet
	fresh   chan packet
	commits chan commitItem
	bufs    sync.Pool
	ifaces  ifaceCache

	// sendHook, when set (tests, fuzzing), receives replies instead of the
	// network.
	sendHook func(*reply)

	lastExhausted atomic.Int64
	// arpFD is a socket for SIOCSARP (unicast replies to clients without
	// an address); -1 when none could be opened.
	arpFD int

	ready    chan struct{}
	mu       sync.Mutex
	port     uint16 // bound server port, for tests that ask for port 0
	proxyPrt uint16
}

// New validates cfg and returns a Server.
func New(cfg Config, log *slog.Logger, deps Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("pxe/dhcp: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Server{
		cfg:     cfg,
		log:     log.With("service", "dhcp"),
		deps:    deps,
		now:     deps.Now,
		tab:     newTable(cfg.Subnets),
		queue:   make(chan packet, cfg.QueueSize),
		fresh:   make(chan packet, cfg.QueueSize),
		commits: make(chan commitItem, cfg.QueueSize),
		ready:   make(chan struct{}),
		arpFD:   -1,
	}
	s.bufs.New = func() any { b := make([]byte, 1500); return &b }
	return s, nil
}

// packet is one received datagram waiting for a worker.
type packet struct {
	buf     *[]byte
	n       int
	src     netip.AddrPort
	dst     netip.Addr // local address it was sent to (broadcast for most)
	ifIndex int
	conn    *ipv4.PacketConn
	proxy   bool // arrived on the proxyDHCP boot-server port
	at      time.Time
}

// work handles packets, exchanges under way first, until both queues close.
func (s *Server) work(ctx context.Context) {
	queue, fresh := s.queue, s.fresh
	for queue != nil || fresh != nil {
		var p packet
		var ok bool
		select {
		case p, ok = <-queue:
			if !ok {
				queue = nil
				continue
			}
		default:
			select {
			case p, ok = <-queue:
				if !ok {
					queue = nil
					continue
				}
			case p, ok = <-fresh:
				if !ok {
					fresh = nil
					continue
				}
				if s.now().Sub(p.at) > s.cfg.MaxQueueDelay {
					s.stats.stale.Add(1)
					s.bufs.Put(p.buf)
					continue
				}
			}
		}
		s.handle(ctx, p)
	}
}

// isDiscover peeks at option 53 without parsing the whole packet.
func isDiscover(b []byte) bool {
	if len(b) < 241 {
		return false
	}
	for i := 240; i+2 < len(b); {
		switch code := b[i]; code {
		case 0:
			i++
		case 255:
			return false
		case 53:
			return b[i+1] == 1 && b[i+2] == 1
		default:
			i += 2 + int(b[i+1])
		}
	}
	return false
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Port returns the bound server port (after Ready).
func (s *Server) Port() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// ProxyPort returns the bound proxyDHCP port (after Ready; proxy mode only).
func (s *Server) ProxyPort() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxyPrt
}

// Serve loads the leases, listens, and serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	if s.deps.Store != nil {
		ls, err := s.deps.Store.Load(ctx)
		if err != nil {
			return fmt.Errorf("pxe/dhcp: start: %w", err)
		}
		s.tab.restore(ls)
		s.log.Info("leases loaded", "count", len(ls))
	}
	conns := []*ipv4.PacketConn{}
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	main, port, err := s.listen(ctx, s.cfg.Port)
	if err != nil {
		return fmt.Errorf("pxe/dhcp: start: %w", err)
	}
	conns = append(conns, main)
	var proxyConn *ipv4.PacketConn
	var proxyPort uint16
	if s.cfg.Mode == ModeProxy {
		proxyConn, proxyPort, err = s.listen(ctx, s.cfg.ProxyPort)
		if err != nil {
			closeAll()
			return fmt.Errorf("pxe/dhcp: start: %w", err)
		}
		conns = append(conns, proxyConn)
	}
	if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
		s.arpFD = fd
		defer unix.Close(fd)
	}
	s.mu.Lock()
	s.port, s.proxyPrt = port, proxyPort
	s.mu.Unlock()
	s.log.Info("serving", "mode", s.cfg.Mode, "interface", s.cfg.Interface, "addr", s.cfg.Addr, "port", port, "workers", s.cfg.Workers, "queue", s.cfg.QueueSize)
	close(s.ready)

	var workers, readers, committer sync.WaitGroup
	for range s.cfg.Workers {
		workers.Go(func() {
			s.work(ctx)
		})
	}
	committer.Go(func() { s.commitLoop(ctx) })
	for _, c := range conns {
		readers.Go(func() { s.readLoop(c, c == proxyConn) })
	}
	stop := make(chan struct{})
	readers.Go(func() { s.expireLoop(ctx, stop) })

	<-ctx.Done()
	close(stop)
	closeAll()
	readers.Wait()
	close(s.queue)
	close(s.fresh)
	workers.Wait()
	close(s.commits)
	committer.Wait()
	return nil
}

func (s *Server) listen(ctx context.Context, port uint16) (*ipv4.PacketConn, uint16, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1),
			)
			// The kernel buffer only has to absorb bursts while the reader
			// is descheduled: the queues behind it are where overload is
			// handled (priorities, staleness). A deep one would only add
			// latency. FORCE needs CAP_NET_ADMIN; fall back to the cap.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.cfg.ReadBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, s.cfg.ReadBuffer)
			}
			if serr == nil && s.cfg.Interface != "" {
				serr = unix.BindToDevice(int(fd), s.cfg.Interface)
			}
		})
		return errors.Join(err, serr)
	}}
	addr := netip.AddrPortFrom(s.cfg.Addr, port)
	pc, err := lc.ListenPacket(ctx, "udp4", addr.String())
	if err != nil {
		return nil, 0, fmt.Errorf("listen %v: %w", addr, err)
	}
	c := ipv4.NewPacketConn(pc)
	if err := c.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		pc.Close()
		return nil, 0, fmt.Errorf("listen %v: ask for IP_PKTINFO: %w", addr, err)
	}
	return c, uint16(pc.LocalAddr().(*net.UDPAddr).Port), nil
}

// readLoop reads datagrams into the bounded queue; a full queue drops.
func (s *Server) readLoop(c *ipv4.PacketConn, proxy bool) {
	for {
		bp := s.bufs.Get().(*[]byte)
		n, cm, src, err := c.ReadFrom(*bp)
		if err != nil {
			s.bufs.Put(bp)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("read", "err", err)
			continue
		}
		p := packet{buf: bp, n: n, conn: c, proxy: proxy}
		if ua, ok := src.(*net.UDPAddr); ok {
			p.src = ua.AddrPort()
		}
		if cm != nil {
			p.ifIndex = cm.IfIndex
			p.dst, _ = netip.AddrFromSlice(cm.Dst.To4())
		}
		q := s.queue
		if isDiscover((*bp)[:n]) {
			q = s.fresh
			p.at = s.now()
		}
		select {
		case q <- p:
		default:
			s.stats.dropped.Add(1)
			s.bufs.Put(bp)
		}
	}
}

func (s *Server) expireLoop(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, l := range s.tab.expire(s.now()) {
				s.stats.expired.Add(1)
				s.commit(ctx, commitItem{lease: l})
			}
		}
	}
}

// commitItem is a lease change waiting for the group commit, with the reply
// to send once it is durable (none for releases, declines and expiries).
type commitItem struct {
	lease Lease
	reply *reply
}

type reply struct {
	b       []byte
	conn    *ipv4.PacketConn
	dst     netip.AddrPort
	src     netip.Addr
	ifIndex int
	typ     uint8
	// neighbor, when set, is the client to reach by unicast before it has
	// its address: dst is its new address, broadcast the fallback.
	neighbor  net.HardwareAddr
	broadcast netip.AddrPort
}

func (s *Server) commit(ctx context.Context, it commitItem) {
	if s.deps.Store == nil {
		if it.reply != nil {
			s.send(it.reply)
		}
		return
	}
	select {
	case s.commits <- it:
	case <-ctx.Done():
	}
}

// commitLoop is the group commit: it takes every lease change waiting, makes
// them durable in one store call, then sends their replies. While a commit
// runs the next batch gathers, so a busier server commits bigger batches.
func (s *Server) commitLoop(ctx context.Context) {
	batch := make([]commitItem, 0, s.cfg.MaxBatch)
	leases := make([]Lease, 0, s.cfg.MaxBatch)
	for it := range s.commits {
		batch = append(batch[:0], it)
	gather:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case it, ok := <-s.commits:
				if !ok {
					break gather
				}
				batch = append(batch, it)
			default:
				break gather
			}
		}
		leases = leases[:0]
		for _, it := range batch {
			leases = append(leases, it.lease)
		}
		// The commit outlives ctx by design: changes already promised in
		// memory are written before Serve returns.
		err := s.deps.Store.Commit(context.WithoutCancel(ctx), leases)
		s.stats.batches.Add(1)
		s.stats.committed.Add(uint64(len(leases)))
		if err != nil {
			s.stats.commitErrors.Add(1)
			s.log.Error("commit leases; their ACKs are not sent and clients will retry", "leases", len(leases), "err", err)
			continue
		}
		for _, it := range batch {
			if it.reply != nil {
				s.send(it.reply)
			}
		}
	}
}

func (s *Server) send(r *reply) {
	if s.sendHook != nil {
		s.sendHook(r)
		return
	}
	if r.neighbor != nil {
		if s.arpFD < 0 || setNeighbor(s.arpFD, r.ifIndex, r.dst.Addr(), r.neighbor) != nil {
			s.stats.unicastFallbacks.Add(1)
			r.dst = r.broadcast
		}
	}
	cm := &ipv4.ControlMessage{IfIndex: r.ifIndex}
	if r.src.IsValid() && !r.src.IsUnspecified() {
		cm.Src = r.src.AsSlice()
	}
	if _, err := r.conn.WriteTo(r.b, cm, net.UDPAddrFromAddrPort(r.dst)); err != nil {
		s.stats.sendErrors.Add(1)
		s.log.Warn("send reply", "to", r.dst, "ifindex", r.ifIndex, "err", err)
		return
	}
	s.stats.sent[r.typ%16].Add(1)
}

// ifaceCache maps interface indexes to their IPv4 networks.
type ifaceCache struct {
	mu sync.Mutex
	m  map[int]ifaceEntry
}

type ifaceEntry struct {
	prefixes []netip.Prefix
	at       time.Time
}

func (c *ifaceCache) prefixes(idx int, now time.Time) []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[idx]; ok && now.Sub(e.at) < 5*time.Second {
		return e.prefixes
	}
	var ps []netip.Prefix
	if ifi, err := net.InterfaceByIndex(idx); err == nil {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok {
					ones, _ := ipn.Mask.Size()
					ps = append(ps, netip.PrefixFrom(ip, ones))
				}
			}
		}
	}
	if c.m == nil {
		c.m = map[int]ifaceEntry{}
	}
	c.m[idx] = ifaceEntry{prefixes: ps, at: now}
	return ps
}
