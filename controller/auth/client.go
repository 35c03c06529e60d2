package auth

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

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Client manages tokens and certificates through a controller's API. It
// presents the same credentials as the CLI's api.Client.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// NewClient returns a client for the controller at base.
func NewClient(base string, creds api.Credentials) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid controller address %q: use http://HOST:PORT or https://HOST:PORT (flag --server or RACKSTRAP_SERVER)", base)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if creds.CAFile != "" {
		b, err := os.ReadFile(creds.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the controller CA bundle: %w; pass the CA the controller's certificate is signed by with --ca-cert", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s holds no PEM certificate; pass the controller's CA certificate with --ca-cert", creds.CAFile)
		}
	}
	if creds.CertFile != "" || creds.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(creds.CertFile, creds.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate: %w; pass both --client-cert and --client-key (PEM)", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	return &Client{base: strings.TrimSuffix(base, "/"), http: &http.Client{Timeout: 30 * time.Second, Transport: tr}, token: creds.Token}, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var unknownCA x509.UnknownAuthorityError
		if errors.As(err, &unknownCA) {
			return fmt.Errorf("the controller at %s presented a certificate this client does not trust: %w; pass the controller's CA with --ca-cert (RACKSTRAP_CA_CERT): ca.crt in the controller's --tls-dir, DATA-DIR/tls by default", c.base, err)
		}
		return fmt.Errorf("cannot reach the controller at %s: %w; start it with 'rackstrap serve' or point --server (RACKSTRAP_SERVER) at it", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read reply from %s: %w", c.base, err)
	}
	if resp.StatusCode >= 400 {
		e := &api.APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Error_) != nil || e.Error_.Message == "" {
			e.Error_ = api.Error{Code: "http", Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("reply from %s%s is not what this rackstrap expects (%v): are client and controller the same version?", c.base, path, err)
	}
	return nil
}

// CreateToken asks for a new token; the reply holds its secret.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (NewTokenReply, error) {
	var out NewTokenReply
	return out, c.do(ctx, "POST", "/api/v1/tokens", req, &out)
}

// Tokens lists tokens.
func (c *Client) Tokens(ctx context.Context) ([]store.APIToken, error) {
	var out []store.APIToken
	return out, c.do(ctx, "GET", "/api/v1/tokens", nil, &out)
}

// RevokeToken revokes the token called name.
func (c *Client) RevokeToken(ctx context.Context, name string) (store.APIToken, error) {
	var out store.APIToken
	return out, c.do(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(name), nil, &out)
}

// IssueCert asks the controller's CA for a client certificate.
func (c *Client) IssueCert(ctx context.Context, req CertRequest) (CertReply, error) {
	var out CertReply
	return out, c.do(ctx, "POST", "/api/v1/certs", req, &out)
}

// Certs lists issued and revoked client certificates.
func (c *Client) Certs(ctx context.Context) ([]store.ClientCert, error) {
	var out []store.ClientCert
	return out, c.do(ctx, "GET", "/api/v1/certs", nil, &out)
}

// RevokeCert revokes a client certificate by serial.
func (c *Client) RevokeCert(ctx context.Context, serial string) (store.ClientCert, error) {
	var out store.ClientCert
	return out, c.do(ctx, "DELETE", "/api/v1/certs/"+url.PathEscape(serial), nil, &out)
}
