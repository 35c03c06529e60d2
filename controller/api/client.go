package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
)

// Client talks to a controller's API.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// Credentials are how a client proves who it is and whom it trusts.
type Credentials struct {
	// Token is an API token, sent as "Authorization: Bearer".
	Token string
	// CAFile is a PEM bundle that verifies the controller's certificate
	// (https:// only); empty uses the system roots.
	CAFile string
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile, KeyFile string
}

// NewClient returns a client for the controller at base (http://host:port
// or https://host:port) that presents no credentials.
func NewClient(base string) (*Client, error) { return NewClientWith(base, Credentials{}) }

// NewClientWith returns a client for the controller at base that presents
// creds.
func NewClientWith(base string, creds Credentials) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid controller address %q: use http://HOST:PORT or https://HOST:PORT (flag --server or RACKSTRAP_SERVER)", base)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if creds.CAFile != "" {
		pem, err := os.ReadFile(creds.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the controller CA bundle: %w; pass the CA the controller's certificate is signed by with --ca-cert", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate; pass the controller's CA certificate with --ca-cert", creds.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	if creds.CertFile != "" || creds.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(creds.CertFile, creds.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate: %w; pass both --client-cert and --client-key (PEM)", err)
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &Client{base: strings.TrimSuffix(base, "/"), http: &http.Client{Timeout: 30 * time.Second, Transport: tr}, token: creds.Token}, nil
}

// APIError is an error response from the controller.
type APIError struct {
	Status int
	Error_ Error
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("controller: %s", e.Error_.Message)
	if e.Error_.Hint != "" {
		msg += "; " + e.Error_.Hint
	}
	return msg
}

// Do sends body (JSON, or nothing when nil) to path and decodes the reply
// into out (nothing when nil; a *[]byte gets the reply's bytes as they
// are, for documents that are not JSON). Features' CLI verbs use it for
// their routes.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	return c.do(ctx, method, path, body, out)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.doStatus(ctx, method, path, body, out)
	return err
}

func (c *Client) doStatus(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var unknownCA x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		var hostname x509.HostnameError
		switch {
		case errors.As(err, &unknownCA):
			return 0, fmt.Errorf("the controller at %s presents a certificate this client does not trust: %w; pass the CA that signed it with --ca-cert (RACKSTRAP_CA_CERT): ca.crt in the controller's --tls-dir, DATA-DIR/tls by default", c.base, unwrapURL(err))
		case errors.As(err, &invalid), errors.As(err, &hostname):
			return 0, fmt.Errorf("the controller at %s presents a certificate that is not valid for it: %w; check --server's host name and the certificate (rackstrap serve --tls-host adds names)", c.base, unwrapURL(err))
		}
		return 0, fmt.Errorf("cannot reach the controller at %s: %w; start it with 'rackstrap serve' or point --server (RACKSTRAP_SERVER) at it", c.base, unwrapURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read reply from %s: %w", c.base, err)
	}
	if resp.StatusCode >= 400 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Error_) != nil || e.Error_.Message == "" {
			e.Error_ = Error{Code: "http", Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
		}
		return resp.StatusCode, e
	}
	if out == nil {
		return resp.StatusCode, nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return resp.StatusCode, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("reply from %s%s is not what this rackstrap expects (%v): are client and controller the same version?", c.base, path, err)
	}
	return resp.StatusCode, nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Nodes lists nodes; state and rack may be empty.
func (c *Client) Nodes(ctx context.Context, state, rack string) ([]model.Node, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if rack != "" {
		q.Set("rack", rack)
	}
	var out []model.Node
	path := "/api/v1/nodes"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// Node returns one node.
func (c *Client) Node(ctx context.Context, name string) (model.Node, error) {
	var out model.Node
	return out, c.do(ctx, "GET", "/api/v1/nodes/"+url.PathEscape(name), nil, &out)
}

// Timeline returns a node's step attempts.
func (c *Client) Timeline(ctx context.Context, name string) ([]model.Step, error) {
	var out []model.Step
	return out, c.do(ctx, "GET", "/api/v1/nodes/"+url.PathEscape(name)+"/timeline", nil, &out)
}

// CreateNode creates the node, or returns the existing one unchanged with
// created false.
func (c *Client) CreateNode(ctx context.Context, in NodeCreate) (n model.Node, created bool, err error) {
	status, err := c.doStatus(ctx, "POST", "/api/v1/nodes", in, &n)
	return n, status == http.StatusCreated, err
}

// Act asks for an action on a node.
func (c *Client) Act(ctx context.Context, name string, action lifecycle.Action, handOff bool) (model.Operation, error) {
	var out model.Operation
	return out, c.do(ctx, "POST", "/api/v1/nodes/"+url.PathEscape(name)+"/actions", ActionRequest{Action: action, HandOff: handOff}, &out)
}

// Racks summarises racks.
func (c *Client) Racks(ctx context.Context) ([]model.RackSummary, error) {
	var out []model.RackSummary
	return out, c.do(ctx, "GET", "/api/v1/racks", nil, &out)
}

// VerifyAudit asks the controller to walk its audit chain.
func (c *Client) VerifyAudit(ctx context.Context) (VerifyReply, error) {
	var out VerifyReply
	return out, c.do(ctx, "GET", "/api/v1/audit/verify", nil, &out)
}

// Operations lists operations (of one node when node is not empty).
func (c *Client) Operations(ctx context.Context, node string) ([]model.Operation, error) {
	var out []model.Operation
	path := "/api/v1/operations"
	if node != "" {
		path += "?node=" + url.QueryEscape(node)
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// Audit lists audit entries in chain order, of one node when node is set.
func (c *Client) Audit(ctx context.Context, node string, after int64, limit int) ([]model.AuditEntry, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	if after > 0 {
		q.Set("after", fmt.Sprint(after))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out []model.AuditEntry
	return out, c.do(ctx, "GET", "/api/v1/audit?"+q.Encode(), nil, &out)
}

// SetBMCCredentials stores a node's BMC login (sealed at rest, never read
// back).
func (c *Client) SetBMCCredentials(ctx context.Context, node, username, password string) error {
	return c.do(ctx, "PUT", "/api/v1/nodes/"+url.PathEscape(node)+"/bmc-credentials", BMCCredentials{Username: username, Password: password}, nil)
}

// SetHandOffTargets sets nodes' hand-off targets (slurm, kubernetes; empty
// clears), served by the cluster feature.
func (c *Client) SetHandOffTargets(ctx context.Context, targets map[string]string) error {
	return c.do(ctx, "PUT", "/api/v1/handoff-targets", map[string]any{"nodes": targets}, nil)
}
