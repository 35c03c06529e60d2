package agenttls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/netboot"
	"github.com/rackstrap/rackstrap/controller/store"
)

func testCA(t *testing.T) *auth.CA {
	t.Helper()
	ca, _, err := auth.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestSiteInitrd: the archive the kernel unpacks holds the CA and the URL
// at the paths the agent reads, is the same for the same inputs, and is
// written once.
func TestSiteInitrd(t *testing.T) {
	t.Parallel()
	ca := testCA(t)
	data, err := SiteInitrd(ca.PEM, "https://10.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := SiteInitrd(ca.PEM, "https://10.0.0.1:8443")
	if !bytes.Equal(data, again) {
		t.Error("the site initrd differs between two builds of the same inputs")
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range recs {
		b := []byte{}
		if r.ReaderAt != nil {
			b, _ = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		}
		got[r.Name] = string(b)
	}
	if got[CAFile] != string(ca.PEM) || got[ServerFile] != "https://10.0.0.1:8443\n" {
		t.Errorf("site initrd holds %v", got)
	}
	if _, ok := got["etc/rackstrap"]; !ok {
		t.Errorf("site initrd lacks its directories: %v", got)
	}

	dir := t.TempDir()
	rel, err := WriteSiteInitrd(dir, ca.PEM, "https://10.0.0.1:8443")
	if err != nil || !strings.HasPrefix(rel, "site/rackstrap-site-") {
		t.Fatalf("WriteSiteInitrd = %q, %v", rel, err)
	}
	st1, _ := os.Stat(filepath.Join(dir, rel))
	rel2, err := WriteSiteInitrd(dir, ca.PEM, "https://10.0.0.1:8443")
	st2, _ := os.Stat(filepath.Join(dir, rel2))
	if err != nil || rel2 != rel || !st1.ModTime().Equal(st2.ModTime()) {
		t.Errorf("second WriteSiteInitrd = %q, %v; want the same file left alone", rel2, err)
	}
	if rel3, _ := WriteSiteInitrd(dir, ca.PEM, "https://10.0.0.2:8443"); rel3 == rel {
		t.Error("another URL gave the same file name")
	}

	for name, tc := range map[string]struct {
		ca     []byte
		server string
		want   string
	}{
		"plain http":  {ca.PEM, "http://10.0.0.1:8080", "not an https://"},
		"newline":     {ca.PEM, "https://10.0.0.1\nrackstrap.token=x", "not an https://"},
		"no host":     {ca.PEM, "https://", "not an https://"},
		"not a cert":  {[]byte("hello"), "https://10.0.0.1", "not a PEM certificate"},
		"no CA":       {nil, "https://10.0.0.1", "not a PEM certificate"},
		"credentials": {ca.PEM, "https://u:p@10.0.0.1", "not an https://"},
	} {
		if _, err := SiteInitrd(tc.ca, tc.server); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: SiteInitrd = %v, want %q", name, err, tc.want)
		}
	}
}

func csrPEM(t *testing.T, cn string, ou ...string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ou}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

// TestIssueRoute: an agent with a session token gets a certificate bound to
// its session's node whatever its CSR asks for (an admin role included);
// the certificate is an agent's, never an operator's; the issue is audited;
// bad requests are refused with a reason.
func TestIssueRoute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ca := testCA(t)
	iss := &Issuer{CA: ca, Store: db, TTL: time.Hour}
	a, err := api.New(db, noActor{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Extend(iss.Extension()); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckOpenAPI(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	if _, _, err := db.CreateNode(ctx, model.Node{Name: "gpu-n07"}, "test"); err != nil {
		t.Fatal(err)
	}
	session, err := db.IssueToken(ctx, "gpu-n07", "session", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	post := func(token string, body []byte) (int, []byte) {
		req, _ := http.NewRequest("POST", srv.URL+CertificatePath, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	csr, key := csrPEM(t, "admin", "admin")
	status, b := post(session, csr)
	var rep CertificateReply
	if status != 200 || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("certificate = %d %s", status, b)
	}
	blk, _ := pem.Decode([]byte(rep.Certificate))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) || rep.Node != "gpu-n07" || rep.CA != string(ca.PEM) {
		t.Errorf("reply %+v is not for this key and node", rep)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if node, err := Node(cert, nil, roots, time.Now()); err != nil || node != "gpu-n07" {
		t.Errorf("Node(issued) = %q, %v; want gpu-n07", node, err)
	}
	if _, _, err := auth.CertIdentity(cert); err == nil {
		t.Error("an agent certificate passes as an operator's (it must name no role)")
	}
	if _, err := Node(cert, nil, roots, cert.NotAfter.Add(time.Minute)); !errors.Is(err, ErrNotAgent) {
		t.Errorf("Node(expired) = %v, want ErrNotAgent", err)
	}
	// An operator certificate from the same CA is not an agent's.
	opCSR, _ := csrPEM(t, "alice")
	parsed, _ := auth.ParseCSR(opCSR)
	opCert, _, err := ca.SignClient(parsed, "alice", auth.Admin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Node(opCert, nil, roots, time.Now()); !errors.Is(err, ErrNotAgent) {
		t.Errorf("Node(operator certificate) = %v, want ErrNotAgent", err)
	}
	// Another CA's agent certificate is not trusted.
	other := &Issuer{CA: testCA(t), Store: db}
	parsed, _ = auth.ParseCSR(csr)
	rogue, _, _ := other.Sign(parsed, "gpu-n07")
	if _, err := Node(rogue, nil, roots, time.Now()); !errors.Is(err, ErrNotAgent) {
		t.Errorf("Node(another CA's) = %v, want ErrNotAgent", err)
	}

	for name, tc := range map[string]struct {
		token string
		body  []byte
		want  int
	}{
		"no token":      {"", csr, http.StatusUnauthorized},
		"unknown token": {"not-a-session", csr, http.StatusUnauthorized},
		"not a CSR":     {session, []byte("hello"), http.StatusBadRequest},
	} {
		if status, b := post(tc.token, tc.body); status != tc.want {
			t.Errorf("%s = %d %s, want %d", name, status, b, tc.want)
		}
	}
	entries, err := db.ListAudit(ctx, store.AuditFilter{Node: "gpu-n07"})
	if err != nil {
		t.Fatal(err)
	}
	issued := 0
	for _, e := range entries {
		if e.Action == "agent.cert.issue" && strings.Contains(string(e.Detail), rep.Serial) {
			issued++
		}
	}
	if issued != 1 {
		t.Errorf("agent.cert.issue audited %d times, want 1", issued)
	}
}

type noActor struct{}

func (noActor) Act(context.Context, lifecycle.Request) (model.Operation, error) {
	return model.Operation{}, errors.New("no actions here")
}

// TestContract: the netboot script names the CA file the site initrd holds.
func TestContract(t *testing.T) {
	t.Parallel()
	if netboot.SiteCAFile != CAFile {
		t.Fatalf("netboot.SiteCAFile = %q, the site initrd puts the CA at %q", netboot.SiteCAFile, CAFile)
	}
}
