package redfishsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Config says where and how a Fleet serves its BMCs.
type Config struct {
	// First is the first BMC's address; BMC i gets the i-th address after
	// it (default 127.10.0.1). Every address of 127.0.0.0/8 is loopback on
	// Linux, so a fleet needs no interface set-up.
	First netip.Addr
	// Port is the port every BMC listens on; 0 picks a free port (on First)
	// and uses it for every address.
	Port uint16
	// HTTP serves plain HTTP instead of HTTPS.
	HTTP bool
	// Wildcard serves every BMC from one listener on the unspecified address
	// (0.0.0.0:Port), routing each connection by the address it was sent
	// to; connections to addresses that are no BMC's are reset. Without it,
	// each BMC has a listener of its own.
	Wildcard bool
	// Options apply to every BMC.
	Options Options
	// Mockup, when set, is the tree every BMC serves (NewFromMockup),
	// overlaid with its node's serial, UUID and MACs.
	Mockup *Mockup
}

func (c Config) withDefaults() Config {
	if !c.First.IsValid() {
		c.First = netip.MustParseAddr("127.10.0.1")
	}
	return c
}

// Fleet serves many simulated BMCs from one process.
type Fleet struct {
	cfg    Config
	srv    *http.Server
	tlsCfg *tls.Config
	addMu  sync.Mutex // serialises Add, so that port 0 is fixed once

	mu        sync.Mutex
	port      uint16
	bmcs      []*BMC
	byAddr    map[netip.Addr]*BMC
	next      netip.Addr
	listeners []net.Listener
	held      map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// Start serves a BMC for each node on consecutive addresses from
// cfg.First. Close stops them.
func Start(cfg Config, nodes ...Node) (*Fleet, error) {
	cfg = cfg.withDefaults()
	f := &Fleet{
		cfg:    cfg,
		byAddr: map[netip.Addr]*BMC{},
		held:   map[net.Conn]struct{}{},
		next:   cfg.First,
		port:   cfg.Port,
	}
	f.srv = &http.Server{
		Handler:           f,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // scanners and aborted handshakes are routine
	}
	if !cfg.HTTP {
		f.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.certificate}
	}
	if cfg.Wildcard {
		unspec := netip.IPv4Unspecified()
		if cfg.First.Is6() {
			unspec = netip.IPv6Unspecified()
		}
		if err := f.listen(netip.AddrPortFrom(unspec, cfg.Port)); err != nil {
			return nil, err
		}
	}
	for _, n := range nodes {
		if _, err := f.Add(n); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// StartSample serves n BMCs made by SampleNode(0) to SampleNode(n-1): a
// rack (or a fleet) of distinct machines in one call.
func StartSample(cfg Config, n int) (*Fleet, error) {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = SampleNode(i)
	}
	return Start(cfg, nodes...)
}

// Add serves one more BMC, on the next address.
func (f *Fleet) Add(node Node) (*BMC, error) {
	f.addMu.Lock()
	defer f.addMu.Unlock()
	var b *BMC
	var err error
	if f.cfg.Mockup != nil {
		b, err = NewFromMockup(f.cfg.Mockup, node, f.cfg.Options)
	} else {
		b, err = New(node, f.cfg.Options)
	}
	if err != nil {
		return nil, err
	}
	if f.cfg.HTTP {
		b.scheme = "http"
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errors.New("redfishsim: fleet is closed")
	}
	addr := f.next
	f.next = addr.Next()
	f.mu.Unlock()
	if !addr.IsValid() {
		return nil, errors.New("redfishsim: out of addresses")
	}
	if !f.cfg.Wildcard {
		if err := f.listen(netip.AddrPortFrom(addr, f.Port())); err != nil {
			return nil, err
		}
	}
	ap := netip.AddrPortFrom(addr, f.Port())
	b.addr.Store(&ap)
	f.mu.Lock()
	f.bmcs = append(f.bmcs, b)
	f.byAddr[addr] = b
	f.mu.Unlock()
	return b, nil
}

// listen opens a listener; with port 0 it fixes the fleet's port.
func (f *Fleet) listen(ap netip.AddrPort) error {
	l, err := net.Listen("tcp", ap.String())
	if err != nil {
		return fmt.Errorf("redfishsim: listen %s: %w", ap, err)
	}
	var sl net.Listener = &faultListener{Listener: l, f: f}
	if f.tlsCfg != nil {
		sl = tls.NewListener(sl, f.tlsCfg)
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		l.Close()
		return errors.New("redfishsim: fleet is closed")
	}
	if f.port == 0 {
		f.port = uint16(l.Addr().(*net.TCPAddr).Port)
	}
	f.listeners = append(f.listeners, l)
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(sl)
	}()
	return nil
}

// BMCs returns the fleet's BMCs in the order they were added.
func (f *Fleet) BMCs() []*BMC {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*BMC(nil), f.bmcs...)
}

// Lookup returns the BMC at addr, or nil.
func (f *Fleet) Lookup(addr netip.Addr) *BMC {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byAddr[addr.Unmap()]
}

// Port is the port every BMC of the fleet listens on.
func (f *Fleet) Port() uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.port
}

// Close stops every BMC and waits for the listeners to end.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	for c := range f.held {
		c.Close()
	}
	f.mu.Unlock()
	err := f.srv.Close()
	f.mu.Lock()
	for _, l := range f.listeners {
		l.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

// ServeHTTP routes a request to the BMC it was addressed to.
func (f *Fleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := f.bmcFor(r.Context().Value(http.LocalAddrContextKey))
	if b == nil {
		http.Error(w, "no BMC at this address", http.StatusNotFound)
		return
	}
	b.ServeHTTP(w, r)
}

func (f *Fleet) bmcFor(v any) *BMC {
	a, ok := v.(net.Addr)
	if !ok {
		return nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return nil
	}
	return f.Lookup(ap.Addr())
}

func (f *Fleet) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	b := f.bmcFor(hello.Conn.LocalAddr())
	if b == nil {
		return nil, errors.New("no BMC at this address")
	}
	return b.certificate()
}

// certificate is the BMC's self-signed certificate, made on first use.
func (b *BMC) certificate() (*tls.Certificate, error) {
	b.certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.certErr = err
			return
		}
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		now := b.opts.Clock()
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: "bmc-" + b.Serial(), Organization: []string{b.spec.vendor}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.AddDate(10, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		if a := b.Addr(); a.IsValid() {
			tmpl.IPAddresses = []net.IP{a.Addr().AsSlice()}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			b.certErr = err
			return
		}
		b.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return b.cert, b.certErr
}

// faultListener applies connection faults before a connection reaches the
// HTTP server: Refuse resets it, Blackhole holds it unanswered.
type faultListener struct {
	net.Listener
	f *Fleet
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		b := l.f.bmcFor(c.LocalAddr())
		if b == nil {
			reset(c)
			continue
		}
		refuse, blackhole := b.connFault()
		switch {
		case refuse:
			reset(c)
		case blackhole:
			l.f.hold(c)
		default:
			return c, nil
		}
	}
}

// reset closes a connection with an RST, as a host with nothing listening
// would answer.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// hold reads and discards from c until the peer or Close ends it.
func (f *Fleet) hold(c net.Conn) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		c.Close()
		return
	}
	f.held[c] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		_, _ = io.Copy(io.Discard, c)
		c.Close()
		f.mu.Lock()
		delete(f.held, c)
		f.mu.Unlock()
	}()
}
