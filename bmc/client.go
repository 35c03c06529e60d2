// Package bmc drives BMCs: power, one-time boot device, virtual media,
// inventory and the System Event Log, over Redfish (bmclib's gofish provider,
// plus Rackstrap's own bounded reader for identity and inventory) or IPMI
// (bmclib's ipmitool provider).
//
// Every operation opens its own bmclib client with exactly one provider,
// under the operation's deadline, and closes it (logging out). Operations on
// one BMC are serialised. Side effects take an idempotency key and query
// before they act, so a lifecycle that replays an intent after a crash does
// not act twice: powering on a machine that is on is a no-op that says so.
package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"
)

// Protocol is how Rackstrap talks to a BMC.
type Protocol string

const (
	Redfish Protocol = "redfish"
	IPMI    Protocol = "ipmi"
)

// Endpoint is one BMC and its credentials. Its String form never includes
// the password.
type Endpoint struct {
	// Address is a host name or IP address, optionally with a port
	// ("10.0.0.12", "10.0.0.12:8443", "[fd00::12]:443"), or a URL
	// ("https://10.0.0.12:8443", "http://10.0.0.12").
	Address  string
	Protocol Protocol // default Redfish
	Username string
	Password string
	// CertSHA256 pins the BMC's TLS certificate (hex SHA-256 of the DER,
	// "sha256:" and colons allowed). Empty trusts any certificate and
	// reports the one seen (trust on first use).
	CertSHA256 string
}

// target is an Endpoint resolved to scheme, host and port.
type target struct {
	scheme, host string
	port         int
}

func (ep Endpoint) proto() Protocol {
	if ep.Protocol == "" {
		return Redfish
	}
	return ep.Protocol
}

func (ep Endpoint) resolve() (target, error) {
	t := target{scheme: "https"}
	addr := strings.TrimSpace(ep.Address)
	if addr == "" {
		return t, fmt.Errorf("endpoint has no address")
	}
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return t, fmt.Errorf("endpoint %q: want http(s)://host[:port]", ep.Address)
		}
		t.scheme, addr = u.Scheme, u.Host
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = strings.Trim(addr, "[]"), ""
	}
	t.host = host
	if port != "" {
		if t.port, err = strconv.Atoi(port); err != nil || t.port <= 0 || t.port > 65535 {
			return t, fmt.Errorf("endpoint %q: bad port", ep.Address)
		}
	}
	if t.port == 0 {
		switch {
		case ep.proto() == IPMI:
			t.port = 623
		case t.scheme == "http":
			t.port = 80
		default:
			t.port = 443
		}
	}
	return t, nil
}

func (t target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

func (t target) baseURL() string { return t.scheme + "://" + t.hostPort() }

// String names the endpoint in logs and errors: "redfish https://10.0.0.12:443".
func (ep Endpoint) String() string {
	t, err := ep.resolve()
	if err != nil {
		return string(ep.proto()) + " " + ep.Address
	}
	if ep.proto() == IPMI {
		return "ipmi " + t.hostPort()
	}
	return "redfish " + t.baseURL()
}

// Config tunes a Client; the zero value is usable.
type Config struct {
	// Timeout bounds one operation, connection and logout included
	// (default 60s). A context deadline that comes sooner wins.
	Timeout time.Duration
	// SettleTimeout bounds the wait for a power change to show (default
	// 30s); PollInterval is how often it is checked (default 250ms).
	SettleTimeout time.Duration
	PollInterval  time.Duration
	// MaxBody caps one reply body (default 8 MiB).
	MaxBody int64
	// IpmitoolPath is the ipmitool binary (default: looked up in PATH).
	IpmitoolPath string
	// IPMICipherSuite is passed to ipmitool -C (default "3": ipmi_sim and
	// many BMCs reject 17).
	IPMICipherSuite string
	// Quirks are a site's rows of the quirks table, matched before
	// DefaultQuirks (see QuirkRule).
	Quirks []QuirkRule
	// RootCAs, when set, is the operator's CA bundle: a BMC's certificate
	// must chain to it and name the address the BMC is reached at (an IP
	// SAN for an IP address). A certificate pinned on the endpoint is still
	// checked as well. Nil: BMC certificates are trusted on first use and
	// pinned (Endpoint.CertSHA256).
	RootCAs *x509.CertPool
	Logger  *slog.Logger
	// OnOperation, when set, is called after every operation (for the
	// audit log). It must not block.
	OnOperation func(Record)
	// Learned are quirks an earlier client learned (see LearnedQuirk);
	// OnLearn, when set, is called once for each quirk this client learns
	// that it did not know. It must not block.
	Learned []LearnedQuirk
	OnLearn func(LearnedQuirk)
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 30 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 8 << 20
	}
	if c.IPMICipherSuite == "" {
		c.IPMICipherSuite = "3"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Record is one finished operation, for the audit log. It holds no secret.
type Record struct {
	Op       string
	Endpoint string
	Key      string
	Changed  bool
	Note     string
	Class    string // failure class; "" on success
	Err      string
	Started  time.Time
	Duration time.Duration
}

// Result is the outcome of a side-effecting operation.
type Result struct {
	Op  string
	Key string
	// Changed is false when the BMC already was in the wanted state, or the
	// key was already carried out by this Client: nothing was done.
	Changed bool
	// Before and After are the states read before and after acting.
	Before, After string
	Note          string
	// CertSHA256 is the fingerprint of the certificate the BMC presented
	// (Redfish over HTTPS), for trust on first use.
	CertSHA256 string
}

// Client drives BMCs. It is safe for concurrent use; operations on one BMC
// wait for each other.
type Client struct {
	cfg Config

	tlsSessions tls.ClientSessionCache
	quirks      *quirkBook

	mu    sync.Mutex
	locks map[string]*bmcLock
	done  map[string]Result // idempotency keys carried out, bounded
	order []string
}

type bmcLock struct {
	ch   chan struct{}
	refs int
}

const maxKeys = 4096

// New returns a Client.
func New(cfg Config) *Client {
	cfg = cfg.withDefaults()
	return &Client{cfg: cfg, locks: map[string]*bmcLock{}, done: map[string]Result{}, tlsSessions: tls.NewLRUClientSessionCache(4096),
		quirks: newQuirkBook(cfg.Quirks, cfg.Learned...)}
}

// lock waits until no other operation runs on the BMC.
func (c *Client) lock(ctx context.Context, key string) (func(), error) {
	c.mu.Lock()
	l := c.locks[key]
	if l == nil {
		l = &bmcLock{ch: make(chan struct{}, 1)}
		c.locks[key] = l
	}
	l.refs++
	c.mu.Unlock()
	drop := func() {
		c.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(c.locks, key)
		}
		c.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

func (c *Client) remembered(key string) (Result, bool) {
	if key == "" {
		return Result{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.done[key]
	return r, ok
}

func (c *Client) remember(key string, r Result) {
	if key == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.done[key]; !ok {
		c.order = append(c.order, key)
	}
	c.done[key] = r
	if len(c.order) > maxKeys {
		delete(c.done, c.order[0])
		c.order = c.order[1:]
	}
}

// conn is one operation's connection to a BMC.
type conn struct {
	ep  Endpoint
	tgt target
	tr  *transport
	bc  *bmclib.Client // nil until openBMCLib
	rf  *rfReader      // Redfish only
	q   *quirkSet      // the BMC's quirks, once looked up
}

// run is the frame of every operation: deadline, per-BMC lock, connection,
// close, error classification and the audit record.
func (c *Client) run(ctx context.Context, op string, ep Endpoint, key string, fn func(ctx context.Context, cn *conn) (Result, error)) (Result, error) {
	start := time.Now()
	res, err := c.run1(ctx, op, ep, key, fn)
	res.Op, res.Key = op, key
	err = wrap(op, ep, err)
	rec := Record{Op: op, Endpoint: ep.String(), Key: key, Changed: res.Changed, Note: res.Note, Started: start, Duration: time.Since(start)}
	if strings.HasPrefix(op, "probe") {
		// Probes fail on every address that is no BMC: not worth a log line
		// or an audit record.
		return res, err
	}
	if err != nil {
		rec.Class, rec.Err = FailureClass(err), err.Error()
		c.cfg.Logger.Warn("bmc operation failed", "op", op, "bmc", rec.Endpoint, "key", key, "class", rec.Class, "err", err)
	} else {
		c.cfg.Logger.Info("bmc operation", "op", op, "bmc", rec.Endpoint, "key", key, "changed", res.Changed, "note", res.Note, "took", rec.Duration)
	}
	if c.cfg.OnOperation != nil {
		c.cfg.OnOperation(rec)
	}
	return res, err
}

func (c *Client) run1(ctx context.Context, op string, ep Endpoint, key string, fn func(ctx context.Context, cn *conn) (Result, error)) (Result, error) {
	tgt, err := ep.resolve()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if ep.proto() != Redfish && ep.proto() != IPMI {
		return Result{}, fmt.Errorf("%w: protocol %q; use redfish or ipmi", ErrUnsupported, ep.Protocol)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	// One operation per BMC: Redfish and IPMI to one address wait for each other too.
	unlock, err := c.lock(ctx, tgt.host)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	if r, ok := c.remembered(key); ok {
		r.Changed, r.Note = false, "idempotency key already carried out: "+r.Note
		return r, nil
	}
	cn := &conn{ep: ep, tgt: tgt, tr: newTransport(ctx, ep, tgt.host, c.cfg.MaxBody, c.tlsSessions, c.cfg.RootCAs)}
	defer cn.tr.close()
	if ep.proto() == Redfish {
		cn.rf = &rfReader{base: tgt.baseURL(), hostPort: tgt.hostPort(), user: ep.Username, pass: ep.Password, hc: cn.tr.client(), book: c.quirks}
		if k, ok := c.quirks.host(tgt.hostPort()); ok {
			cn.rf.key = k
			cn.rf.useSession = c.quirks.lookup(k).has(QuirkSessionAuth)
		}
	}
	defer func() {
		if cn.bc == nil && (cn.rf == nil || cn.rf.token == "") {
			return
		}
		// Log out even when the operation ran out of time: a BMC has few
		// session slots.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		cn.tr.rebind(cctx)
		if cn.bc != nil {
			_ = cn.bc.Close(cctx)
		}
		if cn.rf != nil {
			cn.rf.logout(cctx)
		}
	}()
	res, err := fn(ctx, cn)
	if cn.rf != nil {
		for _, q := range cn.rf.learned {
			if c.quirks.learn(cn.rf.key, q) {
				c.cfg.Logger.Info("bmc quirk learned", "bmc", ep.String(), "model", cn.rf.key.String(), "quirk", q)
				if c.cfg.OnLearn != nil {
					c.cfg.OnLearn(learnedOf(cn.rf.key, q))
				}
			}
		}
	}
	if err != nil && ep.proto() == IPMI && classify(err) == ClassUnreachable {
		err = c.explainIPMI(ctx, tgt, err)
	}
	if err != nil && ctx.Err() != nil && FailureClass(err) == ClassBMCError {
		err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	res.CertSHA256 = cn.tr.fingerprint()
	if err == nil {
		c.remember(key, res)
	}
	return res, err
}

// openBMCLib opens a bmclib client with the one provider the endpoint's
// protocol calls for.
func (c *Client) openBMCLib(ctx context.Context, cn *conn) error {
	reg := registrar.NewRegistry()
	switch cn.ep.proto() {
	case Redfish:
		drv := redfish.New(cn.tgt.scheme+"://"+hostForURL(cn.tgt.host), cn.ep.Username, cn.ep.Password, logr.Discard(),
			redfish.WithHttpClient(cn.tr.client()), redfish.WithPort(strconv.Itoa(cn.tgt.port)))
		reg.Register(redfish.ProviderName, redfish.ProviderProtocol, redfish.Features, nil, drv)
	case IPMI:
		// bmclib passes the password to ipmitool in the IPMITOOL_PASSWORD
		// environment variable (-E), never in argv.
		drv, err := ipmitool.New(cn.tgt.host, cn.ep.Username, cn.ep.Password,
			ipmitool.WithPort(strconv.Itoa(cn.tgt.port)), ipmitool.WithCipherSuite(c.cfg.IPMICipherSuite),
			ipmitool.WithIpmitoolPath(c.cfg.IpmitoolPath))
		if err != nil {
			return fmt.Errorf("%w: ipmitool: %v; install the ipmitool package", ErrUnsupported, err)
		}
		reg.Register(ipmitool.ProviderName, ipmitool.ProviderProtocol, ipmitool.Features, nil, drv)
	}
	remaining := c.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		remaining = time.Until(dl)
	}
	cn.bc = bmclib.NewClient(cn.tgt.host, cn.ep.Username, cn.ep.Password,
		bmclib.WithRegistry(reg), bmclib.WithPerProviderTimeout(remaining))
	if err := cn.bc.Open(ctx); err != nil {
		cn.bc = nil
		return fmt.Errorf("open: %w", err)
	}
	return nil
}

// quirkSet returns the BMC's quirks (none over IPMI), reading its identity
// when this Client does not know its model yet.
func (c *Client) quirkSet(ctx context.Context, cn *conn) (quirkSet, error) {
	if cn.rf == nil {
		return quirkSet{}, nil
	}
	if cn.q != nil {
		return *cn.q, nil
	}
	if cn.rf.key == (modelKey{}) {
		if _, err := cn.rf.readIdentity(ctx); err != nil {
			return quirkSet{}, err
		}
	}
	q := c.quirks.lookup(cn.rf.key)
	cn.q = &q
	return q, nil
}

// quirkNames are the BMC's quirks: the table's, those learned before, and
// those this operation learned.
func (c *Client) quirkNames(cn *conn) []Quirk {
	out := c.quirks.lookup(cn.rf.key).names()
	for _, q := range cn.rf.learned {
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}

// learn records a quirk the operation saw (against the BMC's model, when
// the operation ends).
func (cn *conn) learn(q Quirk) {
	if cn.rf != nil && !slices.Contains(cn.rf.learned, q) {
		cn.rf.learned = append(cn.rf.learned, q)
	}
}

func hostForURL(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// errSessionRefused marks an IPMI session that a reachable BMC refused.
var errSessionRefused = errors.New("the BMC answers IPMI but refused the session")

// explainIPMI tells a refused login from an unreachable BMC: ipmitool
// reports both as "Unable to establish IPMI v2 / RMCP+ session". A BMC
// that answers Get Channel Authentication Capabilities is reachable, so the
// session was refused for its credentials.
func (c *Client) explainIPMI(ctx context.Context, tgt target, err error) error {
	addr, perr := netip.ParseAddr(tgt.host)
	if perr != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if _, perr := ProbeIPMI(pctx, netip.AddrPortFrom(addr, uint16(tgt.port))); perr != nil {
		return err
	}
	return fmt.Errorf("%w: %w", errSessionRefused, err)
}
