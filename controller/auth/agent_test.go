package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/agenttls"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

func agentCert(t *testing.T, iss *agenttls.Issuer, node string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: node}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	c, _, err := iss.Sign(csr, node)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAgentCertificateBinding: on agent routes, an agent certificate must
// verify against the local CA and name the node of the session beside it;
// on operator routes it is nobody.
func TestAgentCertificateBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, "", filepath.Join(dir, "data"), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, _, _ := auth.LoadOrCreateCA(filepath.Join(dir, "rogue"))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	a, err := auth.New(auth.Config{Store: db, CA: ca, ClientCAs: pool, Log: slog.New(slog.DiscardHandler), SummaryEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, _, err := db.CreateNode(ctx, model.Node{Name: n}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	s1, _ := db.IssueToken(ctx, "n1", "session", time.Hour, "test")
	s2, _ := db.IssueToken(ctx, "n2", "session", time.Hour, "test")
	checkin, _ := db.IssueToken(ctx, "n1", "netboot", time.Hour, "test")
	iss := &agenttls.Issuer{CA: ca, Store: db}
	n1 := agentCert(t, iss, "n1")
	rogue := agentCert(t, &agenttls.Issuer{CA: rogueCA, Store: db}, "n1")
	expired := agentCert(t, &agenttls.Issuer{CA: ca, Store: db, Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }}, "n1")

	for name, tc := range map[string]struct {
		cert   *x509.Certificate
		bearer string
		perm   api.Permission
		want   string // "": allowed; else what the refusal says
	}{
		"own session":          {n1, s1, api.PermAgent, ""},
		"another's session":    {n1, s2, api.PermAgent, "agent certificate of node n1 used with a session of node n2"},
		"check-in token":       {n1, checkin, api.PermAgent, ""},
		"no certificate":       {nil, s2, api.PermAgent, ""},
		"another CA's":         {rogue, s1, api.PermAgent, "agent certificate refused"},
		"expired":              {expired, s1, api.PermAgent, "agent certificate refused"},
		"on an operator route": {n1, "", api.PermRead, "names no role"},
	} {
		r := httptest.NewRequest("GET", "https://controller/api/v1/agent/task", nil)
		if tc.bearer != "" {
			r.Header.Set("Authorization", "Bearer "+tc.bearer)
		}
		if tc.cert != nil {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}}
		}
		_, err := a.Authorize(r, tc.perm)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Authorize = %v, want %q", name, err, tc.want)
		}
	}
}
