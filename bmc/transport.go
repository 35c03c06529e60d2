package bmc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// transport is the HTTP transport of one operation. Every request is bound
// to the operation's context (gofish runs its requests on
// context.Background, so without this a slow BMC could outlive the
// deadline), reply bodies are capped, and the TLS certificate is checked
// against the endpoint's pin and recorded.
type transport struct {
	base    *http.Transport
	ctx     atomic.Pointer[context.Context]
	maxBody int64
	host    string // the BMC's host: no request leaves for another

	mu   sync.Mutex
	seen string // fingerprint of the last certificate presented
}

func newTransport(ctx context.Context, ep Endpoint, host string, maxBody int64, sessions tls.ClientSessionCache, roots *x509.CertPool) *transport {
	t := &transport{maxBody: maxBody, host: host}
	t.ctx.Store(&ctx)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t.base = &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		// A BMC's headers are small; a hostile one cannot make us buffer 10 MiB
		// (net/http's default) of them per request.
		MaxResponseHeaderBytes: 256 << 10,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        10 * time.Second,
		ForceAttemptHTTP2:      false,
		TLSClientConfig: &tls.Config{
			// BMCs ship self-signed certificates: trust comes from the pin
			// (trust on first use) or the operator's CA bundle, both
			// checked below, not from the system's CAs.
			InsecureSkipVerify: true, //nolint:gosec
			// Resumed sessions save most of a handshake's cost; the pin
			// below is still checked on every connection.
			ClientSessionCache: sessions,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return nil
				}
				got := Fingerprint(cs.PeerCertificates[0].Raw)
				t.mu.Lock()
				t.seen = got
				t.mu.Unlock()
				var chainErr error
				if roots != nil {
					inter := x509.NewCertPool()
					for _, c := range cs.PeerCertificates[1:] {
						inter.AddCert(c)
					}
					_, chainErr = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
				}
				if want := normalizeFingerprint(ep.CertSHA256); want != "" && want != got {
					return &CertError{Want: want, Got: got, CA: roots != nil, ChainErr: chainErr}
				}
				if chainErr != nil {
					return &CertError{Got: got, CA: true, ChainErr: chainErr}
				}
				return nil
			},
		},
	}
	return t
}

// rebind makes later requests use ctx (Close logs out on a fresh deadline).
func (t *transport) rebind(ctx context.Context) { t.ctx.Store(&ctx) }

func (t *transport) fingerprint() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.EqualFold(req.URL.Hostname(), t.host) {
		// gofish and our reader build URLs from links the BMC sends: a
		// hostile BMC must not steer our credentials to another host.
		return nil, fmt.Errorf("%w: %s %s leaves the BMC %s", errForeignHost, req.Method, req.URL.Redacted(), t.host)
	}
	ctx := *t.ctx.Load()
	req = req.WithContext(ctx)
	// gofish asks for a new connection per request; one operation's requests
	// share connections instead (the transport ends with the operation).
	req.Close = false
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.maxBody}
	return resp, nil
}

// client is an http.Client over the transport that follows at most three
// redirects, all to the same host (another port or scheme is fine: BMCs
// redirect http to https).
func (t *transport) client() *http.Client {
	return &http.Client{
		Transport: t,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 || req.URL.Hostname() != via[0].URL.Hostname() {
				return errRedirect
			}
			return nil
		},
	}
}

func (t *transport) close() { t.base.CloseIdleConnections() }

// limitedBody fails a read past its limit instead of truncating silently.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body that ends exactly at the limit from one that goes on.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Fingerprint is the hex SHA-256 of a DER certificate, the form
// Endpoint.CertSHA256 takes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// normalizeFingerprint accepts "sha256:AB:CD..." and similar spellings.
func normalizeFingerprint(s string) string {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	return strings.NewReplacer(":", "", " ", "").Replace(s)
}
