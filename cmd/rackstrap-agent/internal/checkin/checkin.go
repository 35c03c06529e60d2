// Package checkin is the agent's side of the check-in contract with the
// controller:
//
//	POST {server}/api/v1/agent/checkin
//	Authorization: Bearer <one-time token>
//	Content-Type: application/json
//	{"phase":"netboot"|"firstboot","agentVersion":"…","inventory":{…},"notes":["…"]}
//
// 200 {"node":"<name>","accepted":true,"session":"<token>"} is success;
// the session token authorises the node's task requests (package tasks). Errors are
// {"code":"…","message":"…","hint":"…"}: 401 (bad, used or expired token)
// and 409 (wrong phase) and the other 4xx are final; 5xx, 429, 408 and
// connection failures are retried with capped exponential backoff and
// jitter (honouring Retry-After) until accepted or the context ends.
package checkin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Path is the check-in endpoint below the server URL.
const Path = "/api/v1/agent/checkin"

// Phase is the boot in which the agent checks in.
type Phase string

const (
	// Netboot is the check-in from the netboot initramfs, before imaging.
	Netboot Phase = "netboot"
	// Firstboot is the check-in from the installed OS's first boot.
	Firstboot Phase = "firstboot"
)

// ParsePhase checks a phase name.
func ParsePhase(s string) (Phase, error) {
	switch Phase(s) {
	case Netboot, Firstboot:
		return Phase(s), nil
	}
	return "", fmt.Errorf("unknown phase %q; use %q or %q", s, Netboot, Firstboot)
}

// Request is the check-in body.
type Request struct {
	Phase        Phase               `json:"phase"`
	AgentVersion string              `json:"agentVersion"`
	Inventory    inventory.Inventory `json:"inventory"`
	// Notes are the collectors' notes (what could not be read and why);
	// optional, for the operator.
	Notes []string `json:"notes,omitempty"`
}

// Response is the controller's answer to an accepted check-in.
type Response struct {
	Node     string `json:"node"`
	Accepted bool   `json:"accepted"`
	// Session authorises fetching and reporting the node's tasks
	// (GET /api/v1/agent/task). A controller that hands out no tasks (or
	// the checkintest stand-in) leaves it empty.
	Session string `json:"session,omitempty"`
}

// APIError is a refusal the controller explained.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "controller refused the check-in: HTTP %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "; %s", e.Hint)
	}
	return b.String()
}

// Retryable says whether trying again may succeed: server errors, rate
// limiting and request timeouts. A bad, used or expired token (401) or a
// wrong phase (409) never gets better by retrying.
func (e *APIError) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

// ErrNotAccepted is a 200 answer whose body did not say accepted.
var ErrNotAccepted = errors.New("controller answered 200 without accepting the check-in")

// Config configures a Client.
type Config struct {
	// Server is the controller's base URL ("https://10.0.0.1:8443").
	Server string
	// Token is the node's one-time enrolment token.
	Token string
	// CAFile is a PEM bundle of the CAs that sign the controller's
	// certificate; empty means the system roots.
	CAFile string
	// CAPEM is the same bundle's contents (the first-boot record carries
	// it); it is used when CAFile is empty.
	CAPEM []byte
	// RequestTimeout bounds one attempt (default 30s).
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// 1s and 30s).
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient replaces the client built from CAFile (tests).
	HTTPClient *http.Client
	// Logger logs each attempt; nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Client checks in to one controller.
type Client struct {
	cfg      Config
	endpoint string
	http     *http.Client
}

// New validates cfg and builds a client.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("checkin: server %q is not an http:// or https:// URL; pass --server https://CONTROLLER:PORT or rackstrap.server= on the kernel command line", cfg.Server)
	}
	if cfg.Token == "" {
		return nil, errors.New("checkin: no enrolment token; pass --token-file or rackstrap.token= on the kernel command line")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("checkin: the enrolment token contains white space")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		pem := cfg.CAPEM
		if cfg.CAFile != "" {
			b, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("checkin: read CA bundle: %w", err)
			}
			pem = b
		}
		if hc, err = HTTPClient(pem); err != nil {
			name := cfg.CAFile
			if name == "" {
				name = "(given inline)"
			}
			return nil, fmt.Errorf("checkin: CA bundle %s: %w", name, err)
		}
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + Path
	return &Client{cfg: cfg, endpoint: u.String(), http: hc}, nil
}

// HTTPClient builds the agent's HTTP client: never a proxy from the
// environment (air-gapped), and, when caPEM is not empty, only the CAs in it
// are trusted.
func HTTPClient(caPEM []byte) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // air-gapped: never a proxy from the environment
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// HTTP is the client's HTTP client (its CA, no proxy), for the task API and
// image downloads from the same controller.
func (c *Client) HTTP() *http.Client { return c.http }

// Endpoint is the URL the client posts to.
func (c *Client) Endpoint() string { return c.endpoint }

// CheckIn makes one attempt.
func (c *Client) CheckIn(ctx context.Context, req Request) (Response, error) {
	resp, _, err := c.attempt(ctx, req)
	return resp, err
}

// attempt posts once; retryAfter is the server's Retry-After, if any.
func (c *Client) attempt(ctx context.Context, req Request) (Response, time.Duration, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Response{}, 0, fmt.Errorf("checkin: encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return Response{}, 0, fmt.Errorf("checkin: %w", err)
	}
	hreq.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return Response{}, 0, fmt.Errorf("checkin: post %s: %w", c.endpoint, err)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return Response{}, 0, fmt.Errorf("checkin: read answer: %w", err)
	}
	if hresp.StatusCode == http.StatusOK {
		var r Response
		if err := json.Unmarshal(data, &r); err != nil {
			return Response{}, 0, fmt.Errorf("checkin: controller answered 200 with a body that is not the check-in answer: %w", err)
		}
		if !r.Accepted {
			return r, 0, ErrNotAccepted
		}
		return r, 0, nil
	}
	apiErr := &APIError{Status: hresp.StatusCode}
	if json.Unmarshal(data, apiErr) != nil || apiErr.Message == "" && apiErr.Code == "" {
		apiErr.Message = strings.TrimSpace(string(data))
		if len(apiErr.Message) > 200 {
			apiErr.Message = apiErr.Message[:200] + "…"
		}
	}
	apiErr.Status = hresp.StatusCode
	return Response{}, retryAfter(hresp.Header.Get("Retry-After")), apiErr
}

// retryAfter reads a Retry-After header in seconds (0 if absent or a date).
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, 300)) * time.Second
}

// Retryable says whether an error from CheckIn may go away on its own.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if apiErr, ok := errors.AsType[*APIError](err); ok {
		return apiErr.Retryable()
	}
	// Connection refused, reset, timeouts, a 200 that did not accept, a
	// garbled answer: the controller may be starting or restarting.
	return !errors.Is(err, context.Canceled)
}

// Run checks in until the controller accepts, a final refusal, or ctx ends
// (set its deadline to bound the whole run). Attempts counts the posts made.
func (c *Client) Run(ctx context.Context, req Request) (resp Response, attempts int, err error) {
	backoff := c.cfg.MinBackoff
	var prev error // the last error that was the controller's, not the deadline's
	for {
		attempts++
		r, after, err := c.attempt(ctx, req)
		if err == nil {
			c.cfg.Logger.Info("check-in accepted", "node", r.Node, "attempt", attempts)
			return r, attempts, nil
		}
		if ctx.Err() != nil {
			if prev == nil {
				prev = err
			}
			return Response{}, attempts, fmt.Errorf("checkin: gave up after %d attempts: %w (last error: %w)", attempts, ctx.Err(), prev)
		}
		if !Retryable(err) {
			return Response{}, attempts, err
		}
		prev = err
		// Full jitter between half the backoff and the backoff, so a rack
		// of nodes that all booted at once does not retry in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		if after > wait {
			wait = after
		}
		c.cfg.Logger.Warn("check-in failed; retrying", "attempt", attempts, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Response{}, attempts, fmt.Errorf("checkin: gave up after %d attempts: %w (last error: %w)", attempts, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}
