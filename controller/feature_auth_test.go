package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/auth"
)

func TestAuthModes(t *testing.T) {
	t.Parallel()
	for in, want := range map[[4]string]string{
		// mode, tls, listen, real edge → auth, tls
		{"auto", "auto", "127.0.0.1:8080", ""}:    "false false",
		{"auto", "auto", "localhost:8080", ""}:    "false false",
		{"auto", "auto", "[::1]:8080", ""}:        "false false",
		{"auto", "auto", "0.0.0.0:8080", ""}:      "true true",
		{"auto", "auto", ":8080", ""}:             "true true",
		{"auto", "auto", "10.0.0.1:8080", ""}:     "true true",
		{"auto", "auto", "10.0.0.1:8080", "real"}: "true false",
		{"auto", "on", "10.0.0.1:8080", "real"}:   "true true",
		{"on", "auto", "127.0.0.1:8080", ""}:      "true true",
		{"off", "auto", "0.0.0.0:8080", ""}:       "false false",
		{"off", "on", "0.0.0.0:8080", ""}:         "false true",
		{"on", "off", "0.0.0.0:8080", ""}:         "true false",
	} {
		a, tl := AuthConfig{Mode: in[0], TLS: in[1]}.modes(in[2], in[3] == "real")
		if got := fmt.Sprint(a, tl); got != want {
			t.Errorf("modes(%v) = %s, want %s", in, got, want)
		}
	}
	// Agents that learn the CA from the boot script let TLS be on with
	// real machines.
	if a, tl := (AuthConfig{Mode: "auto", TLS: "auto", AgentTLS: true}).modes("10.0.0.1:8080", true); !a || !tl {
		t.Errorf("modes with --agent-tls and real machines = %v %v, want auth and TLS on", a, tl)
	}
	if _, err := NewAuthFeature(AuthConfig{Mode: "yes", TLS: "auto"}); err == nil {
		t.Error("NewAuthFeature accepted --auth yes")
	}
	if _, err := NewAuthFeature(AuthConfig{Mode: "on", TLS: "on", ServerCertFile: "x.crt"}); err == nil {
		t.Error("NewAuthFeature accepted --tls-cert without --tls-key")
	}
}

// TestAuthFeatureOperatorCertificate: with --tls-cert/--tls-key the API
// serves the operator's certificate, and with --auth off it asks for no
// credentials.
func TestAuthFeatureOperatorCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(dir, "site"))
	if err != nil {
		t.Fatal(err)
	}
	// The site's certificate, made by the site's CA in another directory.
	if _, _, err := auth.ServerCertificate(filepath.Join(dir, "site"), ca, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	f, err := NewAuthFeature(AuthConfig{Mode: "off", TLS: "on",
		ServerCertFile: filepath.Join(dir, "site", auth.ServerCertFile), ServerKeyFile: filepath.Join(dir, "site", auth.ServerKeyFile)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: filepath.Join(dir, "data"), APIListen: "127.0.0.1:0", Simulate: &SimConfig{Nodes: 0}, Features: []Feature{f}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *Controller) { ready <- c })
	}()
	var c *Controller
	select {
	case c = <-ready:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := cl.Get("https://" + c.API + "/api/v1/nodes")
	if err != nil {
		t.Fatalf("https with the site's CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/nodes with --auth off = %d, want 200", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "tls", auth.ServerCertFile)); err == nil {
		t.Error("a server certificate was issued although the operator gave one")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
