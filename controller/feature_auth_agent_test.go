package controller_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/agenttls"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/test/lab"
)

// TestAgentTLSBootScript: with --agent-tls, a controller driving real
// machines speaks TLS, its boot script sends agents to the HTTPS URL with
// the site initrd appended and rackstrap.ca= pointing into it, the site
// initrd served by the boot server holds the controller's local CA, and
// agents' certificate route answers.
func TestAgentTLSBootScript(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := lab.Prepare(lab.Config{Rack: "tls", Nodes: 1, Dir: filepath.Join(dir, "artifacts"), ImageSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	authF, err := controller.NewAuthFeature(controller.AuthConfig{Mode: "on", TLS: "auto", AgentTLS: true, SummaryEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Refused without an HTTPS agent URL: the installed OS's first boot
	// would be told plain HTTP.
	refused := controller.Config{DataDir: filepath.Join(dir, "refused"), APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: l.Boot, Features: []controller.Feature{authF}}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	err = controller.Run(ctx, refused, slog.New(slog.DiscardHandler), func(*controller.Controller) { t.Error("started with --agent-tls and an http:// agent URL") })
	cancel()
	if err == nil || !strings.Contains(err.Error(), "--agent-url https://") {
		t.Errorf("Run with an http:// agent URL = %v, want a refusal naming --agent-url", err)
	}

	// Agents reach the API by this URL (the test reads the script only).
	edge := *l.Edge
	edge.AgentServer = "https://127.0.0.1:8443"
	data := filepath.Join(dir, "data")
	c := startPolicyController(t, controller.Config{DataDir: data, APIListen: "127.0.0.1:0", Edge: &edge, Boot: l.Boot,
		Features: []controller.Feature{authF, openAPICheck{}}})

	get := func(url string) []byte {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
		}
		return b
	}
	// An unknown machine gets the discovery boot: the agent, with a token.
	script := string(get(l.Boot.BootBase + "/ipxe?mac=52:54:00:aa:bb:01"))
	if !strings.Contains(script, "rackstrap.server=https://127.0.0.1:8443 ") || !strings.Contains(script, "rackstrap.ca=/etc/rackstrap/ca.crt") {
		t.Fatalf("boot script does not send the agent to the HTTPS API trusting the site CA:\n%s", script)
	}
	m := regexp.MustCompile(`initrd --name \S+ (\S+/site/rackstrap-site-[0-9a-f]+\.cpio)`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("boot script does not load the site initrd:\n%s", script)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(get(m[1]))))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(data, "tls", auth.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Name == agenttls.CAFile {
			b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			found = bytes.Equal(b, caPEM)
		}
	}
	if !found {
		t.Errorf("the site initrd does not hold the controller's CA at %s", agenttls.CAFile)
	}

	// The API speaks TLS under that CA, and the certificate route asks
	// for a session.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cl := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := cl.Post("https://"+c.API+agenttls.CertificatePath, "application/x-pem-file", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e api.Error
	if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || e.Hint == "" {
		t.Errorf("certificate without a session = %d %s, want 401 with a hint", resp.StatusCode, b)
	}
}
