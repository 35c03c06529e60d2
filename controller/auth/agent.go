package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
)

// AgentOU marks the subject of every agent certificate (issued by
// controller/agenttls): it names no role, so CertIdentity never takes an
// agent's certificate for an operator's.
const AgentOU = "rackstrap-agent"

// AgentURI is the URI SAN of node's agent certificate.
func AgentURI(node string) *url.URL {
	return &url.URL{Scheme: "rackstrap", Host: "agent", Path: "/" + node}
}

// ErrNotAgent means a certificate is not a valid agent certificate.
var ErrNotAgent = errors.New("not a Rackstrap agent certificate")

// IsAgentCert reports whether c is marked as an agent's (not whether it
// is valid: AgentNode verifies).
func IsAgentCert(c *x509.Certificate) bool {
	return slices.Contains(c.Subject.OrganizationalUnit, AgentOU)
}

// AgentNode verifies an agent certificate (chain to roots, client
// authentication, dates at now, the agent marker and URI) and returns the
// node it is bound to.
func AgentNode(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotAgent, err)
	}
	node := leaf.Subject.CommonName
	if node == "" || !slices.Equal(leaf.Subject.OrganizationalUnit, []string{AgentOU}) || len(leaf.URIs) != 1 || leaf.URIs[0].String() != AgentURI(node).String() {
		return "", fmt.Errorf("%w: subject %q", ErrNotAgent, leaf.Subject.String())
	}
	return node, nil
}

// agentRoots verify agent certificates: the local CA only (it alone
// issues them), else the client CAs.
func (a *Authenticator) agentRoots() *x509.CertPool {
	if a.cfg.CA != nil {
		p := x509.NewCertPool()
		p.AddCert(a.cfg.CA.Cert)
		return p
	}
	return a.cfg.ClientCAs
}

// checkAgentCert binds an agent certificate presented on an agent route to
// the request's session: a certificate that does not verify is refused,
// and so is one whose node is not the session token's. Requests without
// an agent certificate (agents that have not enrolled for one, check-ins
// with their one-time token) are left to the route's handler.
func (a *Authenticator) checkAgentCert(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || !IsAgentCert(r.TLS.PeerCertificates[0]) {
		return nil
	}
	certs := r.TLS.PeerCertificates
	node, err := AgentNode(certs[0], certs[1:], a.agentRoots(), a.cfg.Now())
	if err != nil {
		return a.refuse(r, "agent-cert", "", api.Errorf(http.StatusUnauthorized, "unauthorized",
			"the agent asks for a new certificate with its session token (POST /api/v1/agent/certificate), or reboots the node through Rackstrap",
			"agent certificate refused: %v", err))
	}
	scheme, cred, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil || scheme != "bearer" {
		return nil
	}
	session, err := a.cfg.Store.Session(r.Context(), cred)
	if err != nil {
		return nil // not a session (a check-in's one-time token): the handler decides
	}
	if session != node {
		return a.refuse(r, "agent-cert-node", "agent:"+node, api.Errorf(http.StatusForbidden, "forbidden",
			"an agent presents its own node's certificate with its own session; reboot the node through Rackstrap",
			"agent certificate of node %s used with a session of node %s", node, session))
	}
	return nil
}
