package bmc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// testCA is a certificate authority made by the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key}
}

// leaf issues a server certificate for ip, signed by ca (self-signed when
// ca is nil).
func leaf(t *testing.T, ca *testCA, ip net.IP, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "bmc"},
		IPAddresses: []net.IP{ip}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A BMC verified against the operator's CA bundle: a certificate the CA
// signed for the BMC's address is trusted; a self-signed one, one for
// another address or one from another CA stops work with a clear error;
// a pinned certificate that changes stops work even when the CA signed the
// new one.
func TestCABundle(t *testing.T) {
	t.Parallel()
	ca, other := newTestCA(t, "site BMC CA"), newTestCA(t, "somebody else")
	bmcIP := net.ParseIP("127.0.0.1")
	sim, err := redfishsim.New(redfishsim.SampleNode(7), redfishsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[tls.Certificate]
	// httptest's StartTLS would present its own certificate: serve TLS by hand.
	srv := httptest.NewUnstartedServer(sim)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.Listener = tls.NewListener(srv.Listener, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }})
	srv.Start()
	t.Cleanup(srv.Close)
	url := "https://" + srv.Listener.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	signed := leaf(t, &ca, bmcIP, 10)
	renewed := leaf(t, &ca, bmcIP, 11)
	cases := map[string]struct {
		cert tls.Certificate
		pin  *tls.Certificate
		ok   bool
		msg  string
	}{
		"signed by the CA":            {cert: signed, ok: true},
		"pinned and signed":           {cert: signed, pin: &signed, ok: true},
		"self-signed":                 {cert: leaf(t, nil, bmcIP, 12), msg: "not trusted by the CA bundle"},
		"another CA":                  {cert: leaf(t, &other, bmcIP, 13), msg: "not trusted by the CA bundle"},
		"signed for another address":  {cert: leaf(t, &ca, net.ParseIP("127.0.0.2"), 14), msg: "not trusted by the CA bundle"},
		"renewed while pinned":        {cert: renewed, pin: &signed, msg: "the new certificate is signed by the CA bundle"},
		"changed, pinned, not signed": {cert: leaf(t, &other, bmcIP, 15), pin: &signed, msg: "the CA bundle does not vouch for it"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			// One server, one certificate at a time.
			current.Store(&tc.cert)
			c := New(Config{Timeout: 10 * time.Second, Logger: testLogger(t), RootCAs: pool})
			ep := Endpoint{Address: url, Username: "admin", Password: "password"}
			if tc.pin != nil {
				ep.CertSHA256 = Fingerprint(tc.pin.Certificate[0])
			}
			id, err := c.Identify(context.Background(), ep)
			if tc.ok {
				if err != nil || id.CertSHA256 != Fingerprint(tc.cert.Certificate[0]) {
					t.Fatalf("Identify = %+v, %v", id, err)
				}
				return
			}
			var ce *CertError
			if FailureClass(err) != ClassCertChanged || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Identify = %v; want a %s error saying %q", err, ClassCertChanged, tc.msg)
			}
			if !strings.Contains(err.Error(), "re-pin") {
				t.Errorf("error %q gives no remedy", err)
			}
		})
	}
	// Without a CA bundle the same self-signed certificate is trusted on
	// first use.
	self := cases["self-signed"].cert
	current.Store(&self)
	if _, err := New(Config{Timeout: 10 * time.Second, Logger: testLogger(t)}).Identify(context.Background(), Endpoint{Address: url, Username: "admin", Password: "password"}); err != nil {
		t.Errorf("trust on first use: %v", err)
	}
}

// A hostile BMC whose links point at another host cannot make the client
// send anything (credentials least of all) there.
func TestLinksStayOnTheBMC(t *testing.T) {
	t.Parallel()
	var leaked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { leaked.Add(1) }))
	t.Cleanup(elsewhere.Close)
	other := strings.TrimPrefix(elsewhere.URL, "http://")
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/redfish/v1/":
			w.Write([]byte(`{"RedfishVersion":"1.15.0","Systems":{"@odata.id":"/redfish/v1/Systems"}}`))
		case "/redfish/v1/Systems":
			w.Write([]byte(`{"Members":[{"@odata.id":"@` + other + `/steal"},{"@odata.id":"http://` + other + `/steal"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(hostile.Close)
	_, err := fastClient(t).Identify(context.Background(), Endpoint{Address: hostile.URL, Username: "admin", Password: "s3cret"})
	if FailureClass(err) != ClassProtocol {
		t.Errorf("Identify = %v, want %s", err, ClassProtocol)
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the other host received %d requests", n)
	}
	// The transport refuses other hosts whoever builds the URL (gofish
	// builds its own).
	tr := newTransport(context.Background(), Endpoint{}, "127.0.0.1", 1<<20, nil, nil)
	req, _ := http.NewRequest(http.MethodGet, elsewhere.URL+"/x", nil)
	req.URL.Host = "localhost:" + req.URL.Port()
	if _, err := tr.RoundTrip(req); !errors.Is(err, errForeignHost) {
		t.Errorf("RoundTrip to another host = %v, want %v", err, errForeignHost)
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the other host received %d requests", n)
	}
}
