package auth

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLocalCA(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	ca, created, err := LoadOrCreateCA(dir)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateCA = %v, %v", created, err)
	}
	for name, mode := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, %v; want %v", name, st.Mode().Perm(), err, mode)
		}
	}
	again, created, err := LoadOrCreateCA(dir)
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("second LoadOrCreateCA = %v, %v (same: %v)", created, err, again != nil && again.Cert.Equal(ca.Cert))
	}

	cert, issued, err := ServerCertificate(dir, ca, []string{"127.0.0.1", "ctl.example"})
	if err != nil || !issued {
		t.Fatalf("ServerCertificate = %v, %v", issued, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, ServerKeyFile)); st == nil || st.Mode().Perm() != 0o600 {
		t.Error("server.key is not 0600")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "ctl.example"}); err != nil {
		t.Errorf("server certificate does not verify for ctl.example: %v", err)
	}
	if _, issued, _ := ServerCertificate(dir, ca, []string{"127.0.0.1"}); issued {
		t.Error("a covering server certificate was issued again")
	}
	if c, issued, _ := ServerCertificate(dir, ca, []string{"10.0.0.1"}); !issued || c.Leaf.VerifyHostname("10.0.0.1") != nil {
		t.Error("a new address did not get a new server certificate")
	}

	keyPEM, csrPEM, err := NewClientKey("alice")
	if err != nil || len(keyPEM) == 0 {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.SignClient(csr, "alice", Operator, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify: %v", err)
	}
	if user, role, err := CertIdentity(c); err != nil || user != "alice" || role != Operator {
		t.Errorf("CertIdentity = %s, %s, %v", user, role, err)
	}
	if _, err := ParseCSR([]byte("garbage")); err == nil {
		t.Error("ParseCSR accepted garbage")
	}

	// Half a CA is an error that says what to do, not a new CA.
	os.Remove(filepath.Join(dir, CAKeyFile))
	if _, _, err := LoadOrCreateCA(dir); err == nil {
		t.Error("LoadOrCreateCA made a new CA beside an orphan ca.crt")
	}
}

func FuzzParseCSR(f *testing.F) {
	_, csr, _ := NewClientKey("alice")
	f.Add(csr)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCSR(b); err == nil && c.CheckSignature() != nil {
			t.Error("ParseCSR accepted a request with a bad signature")
		}
	})
}

func TestNormalizeSerial(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"0ABC": "abc", "de:ad:be:ef": "deadbeef", "": "", "xyz": "", "000": ""} {
		got, err := NormalizeSerial(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("NormalizeSerial(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
