package controller_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/model"
)

// probe is a Feature that uses every hook a feature has.
type probe struct {
	looped atomic.Bool
	asked  atomic.Int64
}

func (p *probe) Name() string { return "probe" }

func (p *probe) Start(ctx context.Context, rt *controller.Runtime) error {
	if err := rt.API.Extend(api.Extension{Name: "probe",
		Routes: []api.Route{{Method: "GET", Path: "/api/v1/probe", Perm: api.PermRead, Handle: func(w http.ResponseWriter, r *http.Request) error {
			return api.WriteJSON(w, 200, map[string]bool{"looped": p.looped.Load()})
		}}},
		OpenAPI: []byte(`{"paths":{"/api/v1/probe":{"get":{"summary":"probe","responses":{"200":{"description":"OK"}}}}}}`),
	}); err != nil {
		return err
	}
	rt.Engine.AddGate(p)
	rt.Go("probe loop", func(ctx context.Context) error {
		p.looped.Store(true)
		<-ctx.Done()
		return nil
	})
	return rt.API.CheckOpenAPI()
}

func (p *probe) Hold(_ context.Context, n model.Node, next model.State) (string, error) {
	p.asked.Add(1)
	return "probe holds every node", nil
}

// TestFeatureHooks starts a simulated controller with a feature and checks
// that its route is served, its loop runs and its gate holds nodes.
func TestFeatureHooks(t *testing.T) {
	t.Parallel()
	p := &probe{}
	cfg := controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Features: []controller.Feature{p},
		Simulate: &controller.SimConfig{Nodes: 1}}
	cfg.Engine.Poll = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *controller.Controller) { ready <- c })
	}()
	var c *controller.Controller
	select {
	case c = <-ready:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	deadline := time.Now().Add(120 * time.Second)
	for p.asked.Load() == 0 || !p.looped.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("gate asked %d times, loop ran %v", p.asked.Load(), p.looped.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + c.API + "/api/v1/probe")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"looped": true`) {
		t.Errorf("GET /api/v1/probe = %s", b)
	}
	n, err := c.Store.GetNode(ctx, "sim-r1-n01")
	if err != nil {
		t.Fatal(err)
	}
	if n.State != model.Validated {
		t.Errorf("held node is %s, want Validated", n.State)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// tlsFeature serves the API over TLS with a certificate made for the test.
type tlsFeature struct{ cert tls.Certificate }

func (f tlsFeature) Name() string { return "tls" }
func (f tlsFeature) Start(_ context.Context, rt *controller.Runtime) error {
	rt.ServeAPIWithTLS(&tls.Config{Certificates: []tls.Certificate{f.cert}, MinVersion: tls.VersionTLS12})
	return nil
}

// TestFeatureServesAPIWithTLS: a feature can put the API behind TLS.
func TestFeatureServesAPIWithTLS(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rackstrap-test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	cfg := controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 0},
		Features: []controller.Feature{tlsFeature{tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *controller.Controller) { ready <- c })
	}()
	var c *controller.Controller
	select {
	case c = <-ready:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := cl.Get("https://" + c.API + "/healthz")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz over TLS = %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + c.API + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was answered by a TLS API")
	}
	cancel()
	<-done
}
