package agenttls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ctlagenttls "github.com/rackstrap/rackstrap/controller/agenttls"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/netboot"
	"github.com/rackstrap/rackstrap/controller/store"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/agenttls"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin"
)

// TestBootScriptToMutualTLS follows one netboot with the real parts on
// both sides: the controller's boot script (agent TLS on) is read by the
// agent's own command-line parser; the agent's own check-in client, given
// only what the script and the site initrd say, checks in over TLS to an
// API with access control on; the session it gets enrols a certificate,
// with which the task route answers; the same certificate with another
// node's session is refused.
func TestBootScriptToMutualTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
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
	a, err := api.New(db, noActor{}, log, prometheus.NewRegistry(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	authz, err := auth.New(auth.Config{Store: db, CA: ca, Log: log, SummaryEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a.SetAuthorizer(authz.Authorize)
	if err := a.Extend((&ctlagenttls.Issuer{CA: ca, Store: db}).Extension()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	nb, err := netboot.New(netboot.Config{BootBase: "http://10.0.0.1:8081", Server: "http://10.0.0.1:8080", Kernel: "vmlinuz", Initrd: "initrd.img"}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	nb.SetAgentTLS(srv.URL, "site/rackstrap-site-test.cpio")
	for i, name := range []string{"n1", "n2"} {
		if _, _, err := db.CreateNode(ctx, model.Node{Name: name, State: model.Inspecting, Identity: model.Identity{MACs: []string{"52:54:00:00:02:0" + string(rune('1'+i))}}}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	mac, _ := net.ParseMAC("52:54:00:00:02:01")
	script, err := nb.Script(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	var cmdline string
	for _, line := range strings.Split(string(script), "\n") {
		if strings.HasPrefix(line, "kernel ") {
			cmdline = strings.TrimSuffix(strings.SplitN(line, " ", 3)[2], " || goto failed")
		}
	}
	p, err := checkin.ParseCmdline(cmdline)
	if err != nil {
		t.Fatalf("the agent cannot parse the boot script's command line %q: %v", cmdline, err)
	}
	if p.Server != srv.URL || p.CAFile != "/"+agenttls.CAFile {
		t.Fatalf("command line says server %q, CA %q", p.Server, p.CAFile)
	}

	// The kernel unpacks the site initrd; the agent reads it.
	root := filepath.Join(dir, "root")
	initrd, err := ctlagenttls.SiteInitrd(ca.PEM, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	unpack(t, initrd, root)
	site, err := agenttls.Load(root)
	if err != nil || site == nil {
		t.Fatalf("Load = %v, %v", site, err)
	}

	// Today's check-in client, configured from the command line alone.
	cl, err := checkin.New(checkin.Config{Server: p.Server, Token: p.Token, CAFile: filepath.Join(root, p.CAFile)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.CheckIn(ctx, checkin.Request{Phase: p.Phase, AgentVersion: "test"})
	if err != nil || resp.Node != "n1" || resp.Session == "" {
		t.Fatalf("check-in over TLS = %+v, %v", resp, err)
	}
	var warn bytes.Buffer
	hc := site.Mutual(ctx, resp.Session, resp.Node, cl.HTTP(), &warn)
	if hc == cl.HTTP() {
		t.Fatalf("no client certificate: %s", warn.String())
	}
	task := func(c *http.Client, session string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/agent/task", nil)
		req.Header.Set("Authorization", "Bearer "+session)
		r, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if status := task(hc, resp.Session); status != http.StatusNoContent && status != http.StatusOK {
		t.Errorf("task fetch over mutual TLS = %d, want it answered", status)
	}
	other, err := db.IssueToken(ctx, "n2", "session", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	if status := task(hc, other); status != http.StatusForbidden {
		t.Errorf("n1's certificate with n2's session = %d, want 403", status)
	}
	if status := task(cl.HTTP(), other); status == http.StatusForbidden || status == http.StatusUnauthorized {
		t.Errorf("n2's session without a certificate = %d, want it answered (certificates are not required yet)", status)
	}
}
