// Package agenttls is the agent's side of mutual TLS with the controller.
// The controller appends a per-site initrd to the netboot boot script
// (controller/agenttls); the kernel unpacks it over the netboot image, so
// the agent finds /etc/rackstrap/ca.crt (the CA to trust) and
// /etc/rackstrap/server (the controller's HTTPS URL) without any change to
// the image. Load reads them; after its check-in the agent calls Enroll
// with its session token to get a client certificate bound to its node,
// and uses the client Enroll returns (mutual TLS) from then on.
//
// Without the site initrd nothing changes: Load returns nil and the agent
// speaks what its kernel command line says.
package agenttls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The contract with controller/agenttls (checked by this package's test).
const (
	CAFile          = "etc/rackstrap/ca.crt"
	ServerFile      = "etc/rackstrap/server"
	CertificatePath = "/api/v1/agent/certificate"
)

// Site is what the site initrd put in place.
type Site struct {
	// CAFile is the path of the CA certificate; CAPEM its contents.
	CAFile string
	CAPEM  []byte
	// Server is the controller's HTTPS API URL.
	Server string
}

// Load reads the site files under root ("/" on a node): (nil, nil) when
// there are none (no site initrd: the agent goes on as its command line
// says). Half a site, or files that are not what they should be, is an
// error: an agent told to trust a CA must not fall back to trusting none.
func Load(root string) (*Site, error) {
	caPath, serverPath := filepath.Join(root, CAFile), filepath.Join(root, ServerFile)
	ca, errCA := os.ReadFile(caPath)
	srv, errSrv := os.ReadFile(serverPath)
	if errors.Is(errCA, fs.ErrNotExist) && errors.Is(errSrv, fs.ErrNotExist) {
		return nil, nil
	}
	if errCA != nil {
		return nil, fmt.Errorf("agenttls: %s is there but %w; the site initrd is incomplete: check the controller's boot script", serverPath, errCA)
	}
	if errSrv != nil {
		return nil, fmt.Errorf("agenttls: %s is there but %w; the site initrd is incomplete: check the controller's boot script", caPath, errSrv)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("agenttls: %s holds no PEM certificate", caPath)
	}
	server := strings.TrimSpace(string(srv))
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("agenttls: %s says %q, not an https:// URL", serverPath, server)
	}
	return &Site{CAFile: caPath, CAPEM: ca, Server: strings.TrimSuffix(server, "/")}, nil
}

// Client returns an HTTP client that trusts only the site's CA and never
// uses a proxy (air-gapped), presenting cert when it is not nil.
func (s *Site) Client(cert *tls.Certificate) (*http.Client, error) {
	return client(s.CAPEM, cert)
}

func client(caPEM []byte, cert *tls.Certificate) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("agenttls: the CA bundle holds no PEM certificate")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr.TLSClientConfig = conf
	return &http.Client{Transport: tr}, nil
}

// reply is the controller's answer (controller/agenttls.CertificateReply).
type reply struct {
	Node        string    `json:"node"`
	Certificate string    `json:"certificate"`
	CA          string    `json:"ca"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"notAfter"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

// Enroll makes a fresh P-256 key (it never leaves memory), asks the
// controller at s.Server for a client certificate bound to the node of
// session (the check-in's session token), and returns a client presenting
// it. node, when not empty, must be the node the certificate names. The
// request itself goes over server-authenticated TLS (the site's CA).
func (s *Site) Enroll(ctx context.Context, session, node string) (*http.Client, *x509.Certificate, error) {
	if session == "" {
		return nil, nil, errors.New("agenttls: no session token: check in first")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: node}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("agenttls: certificate request: %w", err)
	}
	hc, err := s.Client(nil)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Server+CertificatePath,
		bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+session)
	req.Header.Set("Content-Type", "application/x-pem-file")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("agenttls: ask %s for a client certificate: %w", s.Server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("agenttls: read the certificate reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, nil, fmt.Errorf("agenttls: the controller refused a client certificate (%d): %s; %s", resp.StatusCode, e.Message, e.Hint)
		}
		return nil, nil, fmt.Errorf("agenttls: the controller refused a client certificate: %s", resp.Status)
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, fmt.Errorf("agenttls: certificate reply: %w", err)
	}
	blk, _ := pem.Decode([]byte(r.Certificate))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, errors.New("agenttls: the certificate reply holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("agenttls: certificate reply: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, errors.New("agenttls: the controller's certificate is not for the key this agent made")
	}
	if node != "" && cert.Subject.CommonName != node {
		return nil, nil, fmt.Errorf("agenttls: the controller's certificate names node %q, not %q", cert.Subject.CommonName, node)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.CAPEM)
	// The chain and purpose, not the dates: a netbooted machine's clock may
	// be anything; the controller checks the dates by its own.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: cert.NotBefore.Add(time.Minute), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, fmt.Errorf("agenttls: the controller's certificate does not chain to the site CA: %w", err)
	}
	mtls, err := s.Client(&tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key, Leaf: cert})
	if err != nil {
		return nil, nil, err
	}
	return mtls, cert, nil
}

// Mutual is the agent's one call after its check-in: a client presenting
// a certificate bound to node (Enroll with session), or, when enrolment
// fails (a controller without the route, a refusal), fallback, with the
// reason written to warn. The agent then goes on over server-verified TLS
// and its session token alone, as before.
func (s *Site) Mutual(ctx context.Context, session, node string, fallback *http.Client, warn io.Writer) *http.Client {
	c, _, err := s.Enroll(ctx, session, node)
	if err != nil {
		fmt.Fprintf(warn, "rackstrap-agent: no client certificate (%v); going on with the session token over TLS\n", err)
		return fallback
	}
	return c
}
