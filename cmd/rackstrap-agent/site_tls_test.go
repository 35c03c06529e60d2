package main

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunTrustsTheSiteCA: a kernel command line that names no CA, with the
// site initrd's files (serve --agent-tls) in place: `run` checks in over
// HTTPS trusting the CA the site initrd brought, and goes on with its
// session token when the controller gives it no client certificate.
func TestRunTrustsTheSiteCA(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := startController(t, httptest.NewTLSServer)
	db, srv := c.db, c.srv
	const node = "rack7-node01"
	tok := c.node(node)

	site := t.TempDir()
	os.MkdirAll(filepath.Join(site, "etc/rackstrap"), 0o755)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	os.WriteFile(filepath.Join(site, "etc/rackstrap/ca.crt"), ca, 0o644)
	os.WriteFile(filepath.Join(site, "etc/rackstrap/server"), []byte(srv.URL+"\n"), 0o644)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmdline, []byte("rackstrap.server="+srv.URL+" rackstrap.token="+tok+" rackstrap.phase=netboot\n"), 0o644)

	_, stderr, err := executeCtx(t, ctx, testDeps(), "run", "--cmdline", cmdline, "--sys-root", hostTree(t), "--site-root", site,
		"--idle-exit", "300ms", "--task-state", "")
	if err != nil {
		t.Fatalf("run with the site CA: %v\n%s", err, stderr)
	}
	n, err := db.GetNode(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Inventory) == 0 {
		t.Errorf("the check-in over TLS left no inventory on %s (state %s)", node, n.State)
	}
	if !strings.Contains(stderr, "no client certificate") {
		t.Errorf("run did not say it went on without a client certificate:\n%s", stderr)
	}
}
