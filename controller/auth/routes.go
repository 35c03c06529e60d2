package auth

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

//go:embed openapi.json
var openAPI []byte

// Default and longest lifetimes.
const (
	DefaultTokenTTL = 90 * 24 * time.Hour
	DefaultCertTTL  = 365 * 24 * time.Hour
	MaxTTL          = 5 * 365 * 24 * time.Hour
)

// TokenRequest asks for a new API token.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// TTL is a Go duration ("720h"); empty is DefaultTokenTTL.
	TTL string `json:"ttl,omitempty"`
}

// NewTokenReply carries a new token's secret: the only time it is shown.
type NewTokenReply struct {
	Token  store.APIToken `json:"token"`
	Secret string         `json:"secret"`
}

// CertRequest asks the controller's CA to sign a client certificate.
type CertRequest struct {
	User string `json:"user"`
	Role string `json:"role"`
	CSR  string `json:"csr"` // PEM CERTIFICATE REQUEST; its subject is ignored
	TTL  string `json:"ttl,omitempty"`
}

// CertReply is an issued client certificate and the CA that signed it.
type CertReply struct {
	Cert        store.ClientCert `json:"cert"`
	Certificate string           `json:"certificate"` // PEM
	CA          string           `json:"ca"`          // PEM
}

// Extension is the API's token and certificate management (admin only).
func (a *Authenticator) Extension() api.Extension {
	return api.Extension{Name: "auth", OpenAPI: openAPI, Routes: []api.Route{
		{Method: "POST", Path: "/api/v1/tokens", Perm: api.PermAdmin, Handle: a.createToken},
		{Method: "GET", Path: "/api/v1/tokens", Perm: api.PermAdmin, Handle: a.listTokens},
		{Method: "DELETE", Path: "/api/v1/tokens/{name}", Perm: api.PermAdmin, Handle: a.revokeToken},
		{Method: "POST", Path: "/api/v1/certs", Perm: api.PermAdmin, Handle: a.issueCert},
		{Method: "GET", Path: "/api/v1/certs", Perm: api.PermAdmin, Handle: a.listCerts},
		{Method: "DELETE", Path: "/api/v1/certs/{serial}", Perm: api.PermAdmin, Handle: a.revokeCert},
	}}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", "see /api/v1/openapi.json for the request body", "invalid request body: %v", err)
	}
	return nil
}

// ParseTTL reads a lifetime: empty is def; it must be positive and at most
// MaxTTL.
func ParseTTL(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > MaxTTL {
		return 0, fmt.Errorf("invalid ttl %q: give a positive duration up to %s, e.g. 720h", s, MaxTTL)
	}
	return d, nil
}

func badRequest(err error) error {
	return api.Errorf(http.StatusBadRequest, "bad_request", "see /api/v1/openapi.json", "%v", err)
}

// CreateToken makes a token and records its hash; the secret is returned
// once. The CLI's --bootstrap path calls it on the store directly.
func CreateToken(ctx context.Context, db *store.DB, req TokenRequest, now time.Time, actor string) (NewTokenReply, error) {
	if err := CheckName(req.Name); err != nil {
		return NewTokenReply{}, badRequest(err)
	}
	role, err := ParseRole(req.Role)
	if err != nil {
		return NewTokenReply{}, badRequest(err)
	}
	ttl, err := ParseTTL(req.TTL, DefaultTokenTTL)
	if err != nil {
		return NewTokenReply{}, badRequest(err)
	}
	secret, err := NewToken()
	if err != nil {
		return NewTokenReply{}, err
	}
	t, err := db.CreateAPIToken(ctx, req.Name, string(role), HashToken(secret), now.Add(ttl), actor)
	if errors.Is(err, store.ErrExists) {
		return NewTokenReply{}, api.Errorf(http.StatusConflict, "exists", "pick another name, or revoke the old token first ('rackstrap token revoke "+req.Name+"')", "%v", err)
	}
	if err != nil {
		return NewTokenReply{}, err
	}
	return NewTokenReply{Token: t, Secret: secret}, nil
}

func (a *Authenticator) createToken(w http.ResponseWriter, r *http.Request) error {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	out, err := CreateToken(r.Context(), a.cfg.Store, req, a.cfg.Now(), api.Caller(r))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return api.WriteJSON(w, http.StatusCreated, out)
}

func (a *Authenticator) listTokens(w http.ResponseWriter, r *http.Request) error {
	list, err := a.cfg.Store.ListAPITokens(r.Context())
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, list)
}

func (a *Authenticator) revokeToken(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	t, err := a.cfg.Store.RevokeAPIToken(r.Context(), name, api.Caller(r))
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, "not_found", "list tokens with 'rackstrap token list'", "no unrevoked API token named %q", name)
	}
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, t)
}

// IssueCert signs req with ca and records the certificate. The CLI's
// --local path calls it on the store directly.
func IssueCert(ctx context.Context, db *store.DB, ca *CA, req CertRequest, actor string) (CertReply, error) {
	if ca == nil {
		return CertReply{}, api.Errorf(http.StatusConflict, "no_ca", "start the controller with access control on (--auth on)", "this controller has no local CA")
	}
	if err := CheckName(req.User); err != nil {
		return CertReply{}, badRequest(err)
	}
	role, err := ParseRole(req.Role)
	if err != nil {
		return CertReply{}, badRequest(err)
	}
	ttl, err := ParseTTL(req.TTL, DefaultCertTTL)
	if err != nil {
		return CertReply{}, badRequest(err)
	}
	csr, err := ParseCSR([]byte(req.CSR))
	if err != nil {
		return CertReply{}, badRequest(err)
	}
	cert, pemCert, err := ca.SignClient(csr, req.User, role, ttl)
	if err != nil {
		return CertReply{}, err
	}
	rec := store.ClientCert{Serial: SerialHex(cert.SerialNumber), User: req.User, Role: string(role), SHA256: Fingerprint(cert),
		IssuedBy: actor, IssuedAt: cert.NotBefore.UTC(), ExpiresAt: cert.NotAfter.UTC()}
	if err := db.RecordClientCert(ctx, rec); err != nil {
		return CertReply{}, err
	}
	return CertReply{Cert: rec, Certificate: string(pemCert), CA: string(ca.PEM)}, nil
}

func (a *Authenticator) issueCert(w http.ResponseWriter, r *http.Request) error {
	var req CertRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	out, err := IssueCert(r.Context(), a.cfg.Store, a.cfg.CA, req, api.Caller(r))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusCreated, out)
}

func (a *Authenticator) listCerts(w http.ResponseWriter, r *http.Request) error {
	list, err := a.cfg.Store.ListClientCerts(r.Context())
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, list)
}

func (a *Authenticator) revokeCert(w http.ResponseWriter, r *http.Request) error {
	serial, err := NormalizeSerial(r.PathValue("serial"))
	if err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", "give the serial as 'rackstrap user cert list' shows it", "%v", err)
	}
	c, err := a.cfg.Store.RevokeClientCert(r.Context(), serial, api.Caller(r))
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(http.StatusConflict, "already_revoked", "list certificates with 'rackstrap user cert list'", "client certificate %s is already revoked", serial)
	}
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, c)
}

// NormalizeSerial reads a certificate serial as typed (hex, any case,
// colons allowed) into SerialHex's form.
func NormalizeSerial(s string) (string, error) {
	serial := strings.TrimLeft(strings.ToLower(strings.ReplaceAll(s, ":", "")), "0")
	if serial == "" || strings.Trim(serial, "0123456789abcdef") != "" || len(serial) > 64 {
		return "", fmt.Errorf("invalid certificate serial %q: give it in hex, as 'rackstrap user cert list' shows it", s)
	}
	return serial, nil
}
