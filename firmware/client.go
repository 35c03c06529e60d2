package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Config tunes a Client; the zero value is usable.
type Config struct {
	// Timeout bounds one read operation such as Inventory (default 60s). A
	// context deadline that comes sooner wins.
	Timeout time.Duration
	// RequestTimeout bounds one HTTP request (default 30s), so that a BMC
	// that stops answering is noticed while a long task is polled.
	RequestTimeout time.Duration
	// TaskTimeout bounds the wait for the BMC's update task (default 30m).
	TaskTimeout time.Duration
	// VerifyTimeout bounds the wait, after the task and the reset, for the
	// BMC to come back and report the new version (default 10m).
	VerifyTimeout time.Duration
	// PollInterval is how often a task or the inventory is polled (default 2s).
	PollInterval time.Duration
	// MaxBody caps one reply body (default 4 MiB); MaxComponents caps the
	// firmware inventory (default 1024 entries).
	MaxBody       int64
	MaxComponents int
	// TrustedKeys verify package signatures. Unless AllowUnsigned is set,
	// Apply refuses a package without a signature by one of these keys.
	TrustedKeys   []ed25519.PublicKey
	AllowUnsigned bool
	Logger        *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.TaskTimeout <= 0 {
		c.TaskTimeout = 30 * time.Minute
	}
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = 10 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 4 << 20
	}
	if c.MaxComponents <= 0 {
		c.MaxComponents = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Client reads firmware inventories and updates firmware over Redfish. It
// is safe for concurrent use; operations on one BMC wait for each other.
type Client struct {
	cfg Config

	mu    sync.Mutex
	locks map[string]chan struct{} // one operation per BMC
	done  map[string]Result        // keys carried out by this Client
}

// New returns a Client.
func New(cfg Config) *Client {
	return &Client{cfg: cfg.withDefaults(), locks: map[string]chan struct{}{}, done: map[string]Result{}}
}

// Inventory reads a BMC's firmware inventory with a default Client.
func Inventory(ctx context.Context, ep bmc.Endpoint) ([]inventory.FirmwareComponent, error) {
	return New(Config{}).Inventory(ctx, ep)
}

// Inventory reads the components the BMC lists under Redfish
// UpdateService/FirmwareInventory, in the BMC's order. Dell's
// "Previous-" and "Available-" entries (images kept for rollback or staged,
// not running) are left out.
func (c *Client) Inventory(ctx context.Context, ep bmc.Endpoint) ([]inventory.FirmwareComponent, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	release, err := c.lock(ctx, ep)
	if err != nil {
		return nil, wrapBMC("firmware inventory", ep, err)
	}
	defer release()
	r, err := c.open(ep)
	if err != nil {
		return nil, err
	}
	defer r.close()
	comps, err := r.inventory(ctx)
	if err != nil {
		return nil, wrapBMC("firmware inventory", ep, err)
	}
	out := make([]inventory.FirmwareComponent, len(comps))
	for i, sc := range comps {
		out[i] = sc.FirmwareComponent
	}
	return out, nil
}

// lock takes the BMC's operation slot.
func (c *Client) lock(ctx context.Context, ep bmc.Endpoint) (func(), error) {
	key := ep.String()
	c.mu.Lock()
	ch, ok := c.locks[key]
	if !ok {
		ch = make(chan struct{}, 1)
		c.locks[key] = ch
	}
	c.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another operation on the BMC: %w", ctx.Err())
	}
}

// rf is a Redfish connection of one operation: basic auth on every request
// (every Redfish service must accept it, and no session is left behind),
// bounded bodies, a deadline per request, the TLS certificate pinned.
type rf struct {
	ep      bmc.Endpoint
	base    *url.URL
	hc      *http.Client
	tr      *http.Transport
	maxBody int64
	reqTO   time.Duration
	// maxComponents caps the firmware inventory.
	maxComponents int
	log           *slog.Logger
}

func (c *Client) open(ep bmc.Endpoint) (*rf, error) {
	if ep.Protocol != "" && ep.Protocol != bmc.Redfish {
		return nil, &bmc.Error{Op: "firmware", Host: ep.String(), Class: bmc.ClassUnsupported, Err: fmt.Errorf("firmware over %s is not supported; use the BMC's Redfish endpoint", ep.Protocol)}
	}
	base, err := baseURL(ep.Address)
	if err != nil {
		return nil, &bmc.Error{Op: "firmware", Host: ep.String(), Class: bmc.ClassProtocol, Err: err}
	}
	want := normalizeFingerprint(ep.CertSHA256)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: c.cfg.RequestTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       10 * time.Second,
		TLSClientConfig: &tls.Config{
			// BMCs ship self-signed certificates: trust comes from the pin
			// (Endpoint.CertSHA256), checked here, not from a CA.
			InsecureSkipVerify: true, //nolint:gosec
			VerifyConnection: func(cs tls.ConnectionState) error {
				if want == "" || len(cs.PeerCertificates) == 0 {
					return nil
				}
				if got := bmc.Fingerprint(cs.PeerCertificates[0].Raw); got != want {
					return &bmc.CertError{Want: want, Got: got}
				}
				return nil
			},
		},
	}
	r := &rf{ep: ep, base: base, tr: tr, maxBody: c.cfg.MaxBody, reqTO: c.cfg.RequestTimeout, maxComponents: c.cfg.MaxComponents, log: c.cfg.Logger}
	r.hc = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// BMCs redirect http to https; never to another host.
			if len(via) >= 3 || req.URL.Hostname() != via[0].URL.Hostname() {
				return errRedirect
			}
			return nil
		},
	}
	return r, nil
}

func (r *rf) close() { r.tr.CloseIdleConnections() }

// baseURL resolves an Endpoint address: "10.0.0.12", "10.0.0.12:8443",
// "http://10.0.0.12" (https and port 443 by default).
func baseURL(addr string) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, fmt.Errorf("endpoint has no address")
	}
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("endpoint %q: want host[:port] or http(s)://host[:port]", addr)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("endpoint %q: bad port", addr)
		}
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

func normalizeFingerprint(s string) string {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	return strings.NewReplacer(":", "", " ", "").Replace(s)
}

// resolve turns a link from a Redfish document into a URL on the BMC. Links
// are absolute paths; an absolute URL is accepted only on the BMC's own host.
func (r *rf) resolve(link string) (string, error) {
	if link == "" {
		return "", fmt.Errorf("%w: empty", errBadLink)
	}
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("%w: %q", errBadLink, link)
	}
	if u.IsAbs() {
		if u.Hostname() != r.base.Hostname() {
			return "", fmt.Errorf("%w: %q points at another host", errBadLink, link)
		}
		u.Scheme, u.Host = r.base.Scheme, r.base.Host
		return u.String(), nil
	}
	if !strings.HasPrefix(u.Path, "/") || u.Host != "" {
		return "", fmt.Errorf("%w: %q is not an absolute path", errBadLink, link)
	}
	return r.base.Scheme + "://" + r.base.Host + u.RequestURI(), nil
}

// reply is one HTTP answer with its body read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request and reads the whole (bounded) answer. A non-2xx
// status is an *httpError.
func (r *rf) do(ctx context.Context, method, link string, body any) (reply, error) {
	var rd io.Reader
	ct := ""
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd, ct = bytes.NewReader(data), "application/json"
	}
	return r.send(ctx, method, link, ct, rd, r.reqTO)
}

// send is do with a body of any type and its own deadline.
func (r *rf) send(ctx context.Context, method, link, contentType string, body io.Reader, timeout time.Duration) (reply, error) {
	target, err := r.resolve(link)
	if err != nil {
		return reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.SetBasicAuth(r.ep.Username, r.ep.Password)
	resp, err := r.hc.Do(req)
	if err != nil {
		return reply{}, bmc.DeadlineFirst(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, r.maxBody+1))
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, link, bmc.DeadlineFirst(ctx, err))
	}
	if int64(len(data)) > r.maxBody {
		return reply{}, fmt.Errorf("%s %s: %w (%d bytes)", method, link, errBodyTooLarge, r.maxBody)
	}
	rep := reply{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.StatusCode/100 != 2 {
		return rep, &httpError{Method: method, Path: link, Status: resp.StatusCode, Message: redfishMessage(data)}
	}
	if len(data) > 0 {
		if err := checkJSON(resp.Header.Get("Content-Type")); err != nil {
			return rep, fmt.Errorf("%s %s: %w", method, link, err)
		}
	}
	return rep, nil
}

// get fetches a resource and decodes it with parse.
func get[T any](ctx context.Context, r *rf, link string, parse func([]byte) (T, error)) (T, error) {
	rep, err := r.do(ctx, http.MethodGet, link, nil)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := parse(rep.body)
	if err != nil {
		if len(rep.body) == 0 {
			err = fmt.Errorf("an empty HTTP %d reply where a JSON resource was expected: %w", rep.status, err)
		}
		// A reply cut short by our own deadline is the deadline's doing.
		return v, fmt.Errorf("GET %s: %w", link, bmc.DeadlineFirst(ctx, err))
	}
	return v, nil
}

// checkJSON accepts application/json and its +json relatives (and no type
// at all, which some BMCs send).
func checkJSON(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return fmt.Errorf("%w: Content-Type %q", errContentType, ct)
	}
	return nil
}

// inventory walks UpdateService/FirmwareInventory.
func (r *rf) inventory(ctx context.Context) ([]swComponent, error) {
	_, us, err := r.discover(ctx)
	if err != nil {
		return nil, err
	}
	return r.components(ctx, us)
}

// discover reads the service root and the UpdateService.
func (r *rf) discover(ctx context.Context) (rfRoot, rfUpdateService, error) {
	root, err := get(ctx, r, "/redfish/v1/", parseRoot)
	if err != nil {
		return root, rfUpdateService{}, err
	}
	if root.UpdateService == "" {
		return root, rfUpdateService{}, fmt.Errorf("%w: the BMC has no Redfish UpdateService", bmc.ErrUnsupported)
	}
	us, err := get(ctx, r, root.UpdateService, parseUpdateService)
	return root, us, err
}

// components reads the firmware inventory's members.
func (r *rf) components(ctx context.Context, us rfUpdateService) ([]swComponent, error) {
	if us.FirmwareInventory == "" {
		return nil, fmt.Errorf("%w: the UpdateService lists no FirmwareInventory", bmc.ErrUnsupported)
	}
	members, err := r.members(ctx, us.FirmwareInventory, r.maxComponents)
	if err != nil {
		return nil, err
	}
	var out []swComponent
	seen := map[string]bool{}
	for _, m := range members {
		sw := m.inline
		if sw == nil {
			v, err := get(ctx, r, m.link, parseSoftware)
			if err != nil {
				return nil, err
			}
			sw = &v
		}
		if sw.Link == "" {
			sw.Link = m.link
		}
		c := sw.component()
		if c.ID == "" || seen[c.ID] || skipEntry(c.ID) || sw.Status.State == "Absent" {
			continue
		}
		seen[c.ID] = true
		out = append(out, swComponent{FirmwareComponent: c, link: sw.Link, updateable: sw.Updateable == nil || *sw.Updateable})
	}
	return out, nil
}

// skipEntry leaves out firmware images that are not running (Dell lists
// rollback and staged images beside the installed ones).
func skipEntry(id string) bool {
	return strings.HasPrefix(id, "Previous-") || strings.HasPrefix(id, "Available-")
}

// swComponent is an inventory entry with what an update needs.
type swComponent struct {
	inventory.FirmwareComponent
	link       string // the SoftwareInventory resource, the SimpleUpdate target
	updateable bool
}

// maxPages caps the pages of one collection we follow.
const maxPages = 50

type member struct {
	link   string
	inline *rfSoftware // an expanded member that already carries its version
}

// members lists a collection's members, following nextLink pages.
func (r *rf) members(ctx context.Context, link string, limit int) ([]member, error) {
	var out []member
	for page := 0; link != "" && page < maxPages; page++ {
		c, err := get(ctx, r, link, parseCollection)
		if err != nil {
			return nil, err
		}
		out = append(out, c.Members...)
		if limit > 0 && len(out) > limit {
			return nil, fmt.Errorf("%w: %s lists more than %d members", errBodyTooLarge, link, limit)
		}
		link = c.NextLink
	}
	return out, nil
}
