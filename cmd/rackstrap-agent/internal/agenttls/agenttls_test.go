package agenttls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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

	ctlagenttls "github.com/rackstrap/rackstrap/controller/agenttls"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/agenttls"
)

type noActor struct{}

func (noActor) Act(context.Context, lifecycle.Request) (model.Operation, error) {
	return model.Operation{}, errors.New("no actions here")
}

// unpack extracts a newc archive under root as the kernel does with an
// initrd.
func unpack(t *testing.T, data []byte, root string) {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		p := filepath.Join(root, r.Name)
		switch r.Mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			os.MkdirAll(p, 0o755)
		case cpio.S_IFREG:
			b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestEnrollOverTheSiteInitrd is the whole path with the controller's real
// parts: the site initrd the controller builds, unpacked as the kernel
// would, tells the agent the CA and the HTTPS URL; the agent's request
// (session token, CSR) is answered by the controller's issuer on a TLS
// server whose certificate the local CA signed; the client it gets back
// presents a certificate the controller maps to the node (mutual TLS).
func TestEnrollOverTheSiteInitrd(t *testing.T) {
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
	srvCert, _, err := auth.ServerCertificate(filepath.Join(dir, "tls"), ca, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(db, noActor{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Extend((&ctlagenttls.Issuer{CA: ca, Store: db}).Extension()); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	mux := http.NewServeMux()
	mux.Handle("/api/", a)
	// whoami answers with the node of the agent certificate presented.
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		node, err := ctlagenttls.RequestNode(r, roots, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		io.WriteString(w, node)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	// The contract between the two sides.
	if agenttls.CAFile != ctlagenttls.CAFile || agenttls.ServerFile != ctlagenttls.ServerFile || agenttls.CertificatePath != ctlagenttls.CertificatePath {
		t.Fatal("the agent and the controller disagree on the site files or the route")
	}

	root := filepath.Join(dir, "root")
	if site, err := agenttls.Load(root); site != nil || err != nil {
		t.Fatalf("Load without a site initrd = %+v, %v; want nil, nil (plain as before)", site, err)
	}
	initrd, err := ctlagenttls.SiteInitrd(ca.PEM, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	unpack(t, initrd, root)
	site, err := agenttls.Load(root)
	if err != nil || site == nil || site.Server != srv.URL {
		t.Fatalf("Load = %+v, %v", site, err)
	}

	if _, _, err := db.CreateNode(ctx, model.Node{Name: "gpu-n07"}, "test"); err != nil {
		t.Fatal(err)
	}
	session, err := db.IssueToken(ctx, "gpu-n07", "session", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	whoami := func(c *http.Client) (int, string) {
		resp, err := c.Get(srv.URL + "/whoami")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	plain, err := site.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	if status, who := whoami(plain); status != 200 || who != "" {
		t.Errorf("whoami without a certificate = %d %q, want no node", status, who)
	}
	if _, _, err := site.Enroll(ctx, "wrong-session", "gpu-n07"); err == nil || !strings.Contains(err.Error(), "check in again") {
		t.Errorf("Enroll with a wrong session = %v, want the controller's refusal and hint", err)
	}
	mtls, cert, err := site.Enroll(ctx, session, "gpu-n07")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "gpu-n07" {
		t.Errorf("certificate for %q", cert.Subject.CommonName)
	}
	if status, who := whoami(mtls); status != 200 || who != "gpu-n07" {
		t.Errorf("whoami with the agent's certificate = %d %q, want gpu-n07", status, who)
	}
	var warn bytes.Buffer
	if c := site.Mutual(ctx, "wrong-session", "gpu-n07", plain, &warn); c != plain || !strings.Contains(warn.String(), "going on with the session token") {
		t.Errorf("Mutual with a wrong session: fell back %v, warned %q", c == plain, warn.String())
	}
	if status, who := whoami(site.Mutual(ctx, session, "gpu-n07", plain, &warn)); status != 200 || who != "gpu-n07" {
		t.Errorf("whoami with Mutual's client = %d %q, want gpu-n07", status, who)
	}
	if _, _, err := site.Enroll(ctx, session, "gpu-n08"); err == nil || !strings.Contains(err.Error(), `names node "gpu-n07"`) {
		t.Errorf("Enroll expecting another node = %v", err)
	}

	// A site CA the controller's certificate does not chain to: refused
	// by TLS, not trusted blindly.
	other, _, _ := auth.LoadOrCreateCA(filepath.Join(dir, "other"))
	root2 := filepath.Join(dir, "root2")
	initrd2, _ := ctlagenttls.SiteInitrd(other.PEM, srv.URL)
	unpack(t, initrd2, root2)
	site2, err := agenttls.Load(root2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := site2.Enroll(ctx, session, ""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Enroll against a controller the site CA did not sign = %v", err)
	}
}

// TestLoadRefusesHalfASite: a site that is half there, or wrong, is an
// error, never a silent fall back to plain HTTP.
func TestLoadRefusesHalfASite(t *testing.T) {
	t.Parallel()
	ca, _, err := auth.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		ca, server string
		want       string
	}{
		"no server":  {string(ca.PEM), "", "incomplete"},
		"no CA":      {"", "https://10.0.0.1", "incomplete"},
		"bad CA":     {"nope", "https://10.0.0.1", "no PEM certificate"},
		"plain http": {string(ca.PEM), "http://10.0.0.1", "not an https:// URL"},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc/rackstrap"), 0o755)
		if tc.ca != "" {
			os.WriteFile(filepath.Join(root, agenttls.CAFile), []byte(tc.ca), 0o644)
		}
		if tc.server != "" {
			os.WriteFile(filepath.Join(root, agenttls.ServerFile), []byte(tc.server), 0o644)
		}
		if _, err := agenttls.Load(root); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load = %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), []byte("https://10.0.0.1:8443\n"))
	f.Add([]byte(""), []byte("https://"))
	f.Add([]byte("x"), []byte("http://x\nrackstrap.token=y"))
	f.Fuzz(func(t *testing.T, ca, server []byte) {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc/rackstrap"), 0o755)
		os.WriteFile(filepath.Join(root, agenttls.CAFile), ca, 0o644)
		os.WriteFile(filepath.Join(root, agenttls.ServerFile), server, 0o644)
		site, err := agenttls.Load(root)
		if err == nil && (site == nil || !strings.HasPrefix(site.Server, "https://") || strings.ContainsAny(site.Server, "\n")) {
			t.Fatalf("Load accepted %q as %+v", server, site)
		}
	})
}
