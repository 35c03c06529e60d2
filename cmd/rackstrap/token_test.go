package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
)

// runAuth runs the token and user verbs with the credentials in g.
func runAuth(t *testing.T, g *globals, args ...string) (string, string, error) {
	t.Helper()
	root := &cobra.Command{Use: "rackstrap", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "")
	root.AddCommand(newTokenCmd(g), newUserCmd(g))
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// listNodes asks for the node list as the CLI's verbs do. (Building a
// whole command tree while serve runs would race on the flag variables of
// features that still share them across trees.)
func listNodes(server string, creds api.Credentials) error {
	c, err := api.NewClientWith(server, creds)
	if err != nil {
		return err
	}
	_, err = c.Nodes(context.Background(), "", "")
	return err
}

// TestServeWithAccessControl is the operator's path: the first admin token
// made on the controller's host, serve with access control and TLS, then
// tokens and a client certificate made, used and revoked through the API
// with the CLI.
func TestServeWithAccessControl(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")

	out, note, err := runAuth(t, &globals{}, "token", "create", "--bootstrap", "--data-dir", data, "--name", "root", "--role", "admin")
	if err != nil {
		t.Fatalf("token create --bootstrap: %v", err)
	}
	rootTok := strings.TrimSpace(out)
	if auth.ParseToken(rootTok) != nil || !strings.Contains(note, "shown only now") {
		t.Fatalf("token create --bootstrap printed %q (stderr %q)", out, note)
	}

	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("api_version: rackstrap.io/policy/v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeTCPAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runCtx(ctx, "serve", "--data-dir", data, "--api-listen", addr, "--simulate", "1", "--auth", "on", "--policy", policyFile, "--log-format", "json", "--log-level", "error")
		done <- err
	}()
	server := "https://" + addr
	caFile := filepath.Join(data, "tls", auth.CACertFile)
	waitFor(t, done, func() bool { return listNodes(server, api.Credentials{CAFile: caFile, Token: rootTok}) == nil })

	// No credentials, a wrong token, plain HTTP.
	if err := listNodes(server, api.Credentials{CAFile: caFile}); err == nil || !strings.Contains(err.Error(), "rackstrap token create") {
		t.Errorf("nodes list without a token: %v", err)
	}
	bogus, _ := auth.NewToken()
	if err := listNodes(server, api.Credentials{CAFile: caFile, Token: bogus}); err == nil || !strings.Contains(err.Error(), "unknown API token") {
		t.Errorf("nodes list with an unknown token: %v", err)
	}
	if err := listNodes("http://"+addr, api.Credentials{Token: rootTok}); err == nil {
		t.Error("the API answered plain HTTP with TLS on")
	}

	if _, _, err := runAuth(t, &globals{server: server, creds: api.Credentials{Token: rootTok}}, "token", "list"); err == nil || !strings.Contains(err.Error(), "--ca-cert") {
		t.Errorf("token list without the controller's CA: %v", err)
	}
	admin := &globals{server: server, creds: api.Credentials{Token: rootTok, CAFile: caFile}}
	out, _, err = runAuth(t, admin, "token", "create", "--name", "ci", "--role", "viewer", "--ttl", "24h", "-o", "json")
	var made auth.NewTokenReply
	if err != nil || json.Unmarshal([]byte(out), &made) != nil || made.Token.Role != "viewer" {
		t.Fatalf("token create over the API: %v\n%s", err, out)
	}
	if _, _, err := runAuth(t, admin, "token", "create", "--name", "ci", "--role", "viewer"); err == nil || !strings.Contains(err.Error(), "revoke") {
		t.Errorf("a second token named ci: %v", err)
	}
	if err := listNodes(server, api.Credentials{CAFile: caFile, Token: made.Secret}); err != nil {
		t.Errorf("nodes list with the viewer token: %v", err)
	}
	viewer := &globals{server: server, creds: api.Credentials{Token: made.Secret, CAFile: caFile}}
	if _, _, err := runAuth(t, viewer, "token", "list"); err == nil || !strings.Contains(err.Error(), "role viewer") {
		t.Errorf("token list as a viewer: %v", err)
	}
	// An auditor: the audit log and reports only. 'rackstrap report' and
	// 'policy show' work; what operators read to run the site does not.
	out, _, err = runAuth(t, admin, "token", "create", "--name", "audit", "--role", "auditor", "-o", "json")
	var audTok auth.NewTokenReply
	if err != nil || json.Unmarshal([]byte(out), &audTok) != nil {
		t.Fatalf("token create --role auditor: %v\n%s", err, out)
	}
	auditor := &globals{server: server, output: "table", creds: api.Credentials{Token: audTok.Secret, CAFile: caFile}}
	if got, err := runKeysBundleCmd(t, newReportCmd(auditor), "--rack", "sim-r1", "--format", "json"); err != nil || !strings.Contains(got, "sim-r1-n01") {
		t.Errorf("report as an auditor = %v\n%.300s", err, got)
	}
	if got, err := runKeysBundleCmd(t, newPolicyCmd(auditor), "show"); err != nil || !strings.Contains(got, "sha256:") || !strings.Contains(got, "validation") {
		t.Errorf("policy show as an auditor = %v\n%s", err, got)
	}
	if _, err := runKeysBundleCmd(t, newPolicyCmd(auditor), "holds"); err == nil || !strings.Contains(err.Error(), "role auditor") {
		t.Errorf("policy holds as an auditor (operators' view) = %v, want refused", err)
	}
	if got, err := runKeysBundleCmd(t, newPolicyCmd(viewer), "holds"); err != nil || !strings.Contains(got, "RULE") {
		t.Errorf("policy holds as a viewer = %v\n%s", err, got)
	}
	out, _, err = runAuth(t, admin, "token", "list")
	if err != nil || !regexp.MustCompile(`(?m)^ci\s+viewer\s+active`).MatchString(out) || !strings.Contains(out, "root") || strings.Contains(out, made.Secret) {
		t.Errorf("token list: %v\n%s", err, out)
	}
	if _, _, err := runAuth(t, admin, "token", "revoke", "ci"); err != nil {
		t.Fatal(err)
	}
	if err := listNodes(server, api.Credentials{CAFile: caFile, Token: made.Secret}); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("nodes list with a revoked token: %v", err)
	}

	// A client certificate: the key is made here, the CA signs it.
	certDir := filepath.Join(dir, "alice")
	if out, _, err := runAuth(t, admin, "user", "cert", "issue", "--user", "alice", "--role", "operator", "--out", certDir); err != nil {
		t.Fatalf("user cert issue: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(certDir, "alice.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("alice.key: %v, %v", st, err)
	}
	alice := api.Credentials{CAFile: filepath.Join(certDir, "ca.crt"), CertFile: filepath.Join(certDir, "alice.crt"), KeyFile: filepath.Join(certDir, "alice.key")}
	if err := listNodes(server, alice); err != nil {
		t.Errorf("nodes list with alice's certificate: %v", err)
	}
	out, _, err = runAuth(t, admin, "user", "cert", "list", "-o", "json")
	var certs []struct{ Serial, User string }
	if err != nil || json.Unmarshal([]byte(out), &certs) != nil || len(certs) != 1 || certs[0].User != "alice" {
		t.Fatalf("user cert list: %v\n%s", err, out)
	}
	if _, _, err := runAuth(t, admin, "user", "cert", "revoke", certs[0].Serial); err != nil {
		t.Fatal(err)
	}
	if err := listNodes(server, alice); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("nodes list with a revoked certificate: %v", err)
	}

	// Locally, with the controller running: list shows what the API made.
	out, _, err = runAuth(t, &globals{}, "token", "list", "--data-dir", data)
	if err != nil || !strings.Contains(out, "revoked") {
		t.Errorf("token list --data-dir: %v\n%s", err, out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
