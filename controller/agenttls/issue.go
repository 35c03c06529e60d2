package agenttls

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Issuer signs agents' client certificates with the local CA. Its route
// answers an agent holding a session token (from its check-in): the
// certificate it gets names that token's node, whatever the request says.
type Issuer struct {
	CA    *auth.CA
	Store *store.DB
	// TTL bounds an agent certificate (default 24 h: one netboot and
	// first boot; the agent asks again on its next boot).
	TTL time.Duration
	Log *slog.Logger
	// Now is the clock certificates are dated by; default time.Now.
	Now func() time.Time
}

// CertificateReply is the answer of POST /api/v1/agent/certificate.
type CertificateReply struct {
	Node        string    `json:"node"`
	Certificate string    `json:"certificate"` // PEM
	CA          string    `json:"ca"`          // PEM, the issuing CA
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"notAfter"`
}

// maxCSR bounds a request body.
const maxCSR = 16 << 10

func (i *Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

// Sign issues a client certificate for csr's key, bound to node: subject
// CN = node, OU = AgentOU (no role), URI SAN rackstrap://agent/NODE, usable
// only for client authentication. The CSR's own subject is ignored.
func (i *Issuer) Sign(csr *x509.CertificateRequest, node string) (*x509.Certificate, []byte, error) {
	if i.CA == nil {
		return nil, nil, errors.New("agenttls: no CA to sign agent certificates with")
	}
	if node == "" || strings.ContainsAny(node, "/?#\x00") {
		return nil, nil, fmt.Errorf("agenttls: node name %q cannot be put in a certificate", node)
	}
	ttl := i.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := i.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node, OrganizationalUnit: []string{auth.AgentOU}, Organization: []string{"Rackstrap"}},
		URIs:         []*url.URL{AgentURI(node)},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.CA.Cert, csr.PublicKey, i.CA.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("agenttls: sign the agent certificate of %s: %w", node, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// AgentURI is the URI SAN of node's agent certificate.
func AgentURI(node string) *url.URL { return auth.AgentURI(node) }

// ErrNotAgent means a certificate is not an agent certificate of this CA.
var ErrNotAgent = auth.ErrNotAgent

// Node verifies an agent certificate (chain to roots, client
// authentication, the agent marker) and returns the node it is bound to.
// intermediates may be nil.
func Node(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	return auth.AgentNode(leaf, intermediates, roots, now)
}

// RequestNode returns the node of the agent certificate r presented over
// TLS, verified against roots: ("", nil) when r presented none. The API's
// agent routes use it to check that a session token and the certificate
// beside it name the same node.
func RequestNode(r *http.Request, roots *x509.CertPool, now time.Time) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", nil
	}
	return Node(r.TLS.PeerCertificates[0], r.TLS.PeerCertificates[1:], roots, now)
}

// Extension serves POST /api/v1/agent/certificate.
func (i *Issuer) Extension() api.Extension {
	return api.Extension{
		Name:   "agent certificates",
		Routes: []api.Route{{Method: http.MethodPost, Path: CertificatePath, Perm: api.PermAgent, Handle: i.handle}},
		OpenAPI: []byte(`{"paths":{"` + CertificatePath + `":{"post":{"summary":"An agent's client certificate for mutual TLS, bound to the node of its session token (the CSR's subject is ignored)","operationId":"agentCertificate","tags":["agent"],
"requestBody":{"required":true,"content":{"application/x-pem-file":{"schema":{"type":"string","description":"a PEM CERTIFICATE REQUEST"}}}},
"responses":{"200":{"description":"the certificate","content":{"application/json":{"schema":{"$ref":"#/components/schemas/AgentCertificate"}}}},"400":{"description":"not a certificate request"},"401":{"description":"no valid session token"}}}}},
"components":{"schemas":{"AgentCertificate":{"type":"object","required":["node","certificate","ca","serial","notAfter"],"properties":{"node":{"type":"string"},"certificate":{"type":"string"},"ca":{"type":"string"},"serial":{"type":"string"},"notAfter":{"type":"string","format":"date-time"}}}}}}`),
	}
}

func (i *Issuer) handle(w http.ResponseWriter, r *http.Request) error {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return api.Errorf(http.StatusUnauthorized, "unauthorized", "check in first: the check-in reply carries the session token to ask with", "no agent session token")
	}
	node, err := i.Store.Session(r.Context(), token)
	if errors.Is(err, store.ErrTokenInvalid) || errors.Is(err, store.ErrTokenExpired) {
		return api.Errorf(http.StatusUnauthorized, "unauthorized", "check in again for a new session", "agent session: %v", err)
	}
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCSR+1))
	if err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", "send the PEM certificate request as the body", "read the request: %v", err)
	}
	if len(body) > maxCSR {
		return api.Errorf(http.StatusRequestEntityTooLarge, "too_large", "send one PEM certificate request", "the request is larger than %d bytes", maxCSR)
	}
	csr, err := auth.ParseCSR(body)
	if err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", "send a PEM CERTIFICATE REQUEST signed by the agent's new key", "%v", err)
	}
	cert, certPEM, err := i.Sign(csr, node)
	if err != nil {
		return err
	}
	serial := auth.SerialHex(cert.SerialNumber)
	if err := i.Store.Audit(r.Context(), store.AuditInput{Actor: "agent:" + node, Action: "agent.cert.issue", Node: node, Outcome: "ok",
		Detail: map[string]string{"serial": serial, "notAfter": cert.NotAfter.UTC().Format(time.RFC3339), "remote": r.RemoteAddr}}); err != nil {
		return err
	}
	if i.Log != nil {
		i.Log.Info("agent certificate issued", "node", node, "serial", serial, "notAfter", cert.NotAfter)
	}
	return api.WriteJSON(w, http.StatusOK, CertificateReply{Node: node, Certificate: string(certPEM), CA: string(i.CA.PEM), Serial: serial, NotAfter: cert.NotAfter})
}
