package auth

import (
	"context"
	"net/url"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Client manages tokens and certificates through a controller's API, over
// the CLI's api.Client (same credentials, TLS and error hints).
type Client struct{ api *api.Client }

// NewClient returns a client for the controller at base.
func NewClient(base string, creds api.Credentials) (*Client, error) {
	c, err := api.NewClientWith(base, creds)
	if err != nil {
		return nil, err
	}
	return &Client{api: c}, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	return c.api.Do(ctx, method, path, body, out)
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
