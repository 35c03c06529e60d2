// Package rbac checks access control end to end: a controller started the
// way serve starts it, with access control and TLS on and extensions
// mounted, is asked every route it serves with every kind of credential.
package rbac

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/fwrun"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/policy"
	"github.com/rackstrap/rackstrap/controller/store"
)

// probes mounts one route per permission, so routes added by extensions at
// run time are checked like the built-in ones.
type probes struct{}

func (probes) Name() string { return "rbac probes" }

func (probes) Start(_ context.Context, rt *controller.Runtime) error {
	perms := []api.Permission{api.PermPublic, api.PermRead, api.PermOperate, api.PermAdmin, api.PermAudit, api.PermAgent}
	var routes []api.Route
	paths := map[string]any{}
	for _, p := range perms {
		path := "/api/v1/rbac-probe/" + string(p)
		routes = append(routes, api.Route{Method: "POST", Path: path, Perm: p, Handle: func(w http.ResponseWriter, r *http.Request) error {
			return api.WriteJSON(w, http.StatusOK, map[string]string{"caller": api.Caller(r)})
		}})
		paths[path] = map[string]any{"post": map[string]any{"summary": "probe", "responses": map[string]any{"200": map[string]any{"description": "OK"}}}}
	}
	doc, _ := json.Marshal(map[string]any{"paths": paths})
	return rt.API.Extend(api.Extension{Name: "rbac", Routes: routes, OpenAPI: doc})
}

// capture keeps the API server once every feature before it has started.
type capture struct{ api *api.Server }

func (c *capture) Name() string { return "capture" }
func (c *capture) Start(_ context.Context, rt *controller.Runtime) error {
	c.api = rt.API
	return rt.API.CheckOpenAPI()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cred is one way of calling the API.
type cred struct {
	name   string
	bearer string
	cert   *tls.Certificate
	// role is what the credential holds; "" means it authenticates no one.
	role auth.Role
	// apiToken: shaped like an API token (refused on agent routes).
	apiToken bool
}

func clientCert(t *testing.T, ca *auth.CA, user string, role auth.Role, ttl time.Duration) (tls.Certificate, string) {
	t.Helper()
	keyPEM, csrPEM, err := auth.NewClientKey(user)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := auth.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, certPEM, err := ca.SignClient(csr, user, role, ttl)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, auth.SerialHex(c.SerialNumber)
}

// TestEveryRouteEveryCredential asks every route the controller serves
// (built-in, access control's own, and an extension's) with no
// credentials, a token and a certificate of every role, and expired,
// revoked, untrusted and misplaced credentials. Allowed calls are never
// 401/403; refused ones are 401 (who are you?) or 403 (not allowed) with a
// hint; every refusal is counted in the audit chain. It then plants token
// secrets and a BMC password and looks for them in every reply and log line.
func TestEveryRouteEveryCredential(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var logs lockedBuffer
	var w io.Writer = &logs
	if testing.Verbose() {
		w = io.MultiWriter(&logs, os.Stderr)
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// An operator-given CA (trusted) and a rogue one (not).
	site, _, err := auth.LoadOrCreateCA(filepath.Join(dir, "site"))
	if err != nil {
		t.Fatal(err)
	}
	rogue, _, err := auth.LoadOrCreateCA(filepath.Join(dir, "rogue"))
	if err != nil {
		t.Fatal(err)
	}
	authF, err := controller.NewAuthFeature(controller.AuthConfig{Mode: "on", TLS: "on", AgentTLS: true, SummaryEvery: time.Hour,
		ClientCAFiles: []string{filepath.Join(dir, "site", auth.CACertFile)}})
	if err != nil {
		t.Fatal(err)
	}
	// The other features that mount routes, on, so that their routes are
	// asked too.
	pol, err := policy.Parse([]byte("api_version: "+policy.APIVersion+"\n"), filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := controller.NewClusterFeature(controller.ClusterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	enlist, err := controller.NewEnlister(controller.EnlistConfig{Subnets: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	cpt := &capture{}
	// One node, taken only as far as Enrolled: the lifecycle stays quiet
	// while the routes are asked.
	cfg := controller.Config{DataDir: data, APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 1, Desired: model.WantEnrolled},
		Features: []controller.Feature{authF,
			controller.NewFirmwareFeature(fwrun.Config{Dir: t.TempDir(), AllowUnsigned: true}),
			controller.NewPolicyFeature(pol),
			cluster, enlist,
			probes{}, cpt}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx, cfg, log, func(c *controller.Controller) { ready <- c }) }()
	var ctl *controller.Controller
	select {
	case ctl = <-ready:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	db := ctl.Store
	base := "https://" + ctl.API

	// Credentials of every kind.
	local, created, err := auth.LoadOrCreateCA(filepath.Join(data, "tls"))
	if err != nil || created {
		t.Fatalf("the controller's local CA: created=%v, %v", created, err)
	}
	if st, err := os.Stat(filepath.Join(data, "tls", auth.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode: %v, %v", st, err)
	}
	creds := []cred{{name: "none"}}
	var secrets []string
	for _, r := range auth.Roles {
		out, err := auth.CreateToken(ctx, db, auth.TokenRequest{Name: "tok-" + string(r), Role: string(r)}, time.Now(), "test")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, out.Secret)
		creds = append(creds, cred{name: "token/" + string(r), bearer: out.Secret, role: r, apiToken: true})
		c, _ := clientCert(t, local, "user-"+string(r), r, time.Hour)
		creds = append(creds, cred{name: "cert/" + string(r), cert: &c, role: r})
	}
	siteCert, _ := clientCert(t, site, "site-operator", auth.Operator, time.Hour)
	creds = append(creds, cred{name: "cert/site-ca-operator", cert: &siteCert, role: auth.Operator})

	expSecret, _ := auth.NewToken()
	if _, err := db.CreateAPIToken(ctx, "expired", "admin", auth.HashToken(expSecret), time.Now().Add(-time.Minute), "test"); err != nil {
		t.Fatal(err)
	}
	revSecret, _ := auth.NewToken()
	if _, err := db.CreateAPIToken(ctx, "revoked", "admin", auth.HashToken(revSecret), time.Now().Add(time.Hour), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeAPIToken(ctx, "revoked", "test"); err != nil {
		t.Fatal(err)
	}
	unknown, _ := auth.NewToken()
	secrets = append(secrets, expSecret, revSecret, unknown)
	var agentLike [32]byte
	rand.Read(agentLike[:])
	rogueCert, _ := clientCert(t, rogue, "mallory", auth.Admin, time.Hour)
	expiredCert, _ := clientCert(t, local, "old-admin", auth.Admin, -time.Minute)
	revokedCert, revokedSerial := clientCert(t, local, "gone-admin", auth.Admin, time.Hour)
	if _, err := db.RevokeClientCert(ctx, revokedSerial, "test"); err != nil {
		t.Fatal(err)
	}
	creds = append(creds,
		cred{name: "token/expired", bearer: expSecret, apiToken: true},
		cred{name: "token/revoked", bearer: revSecret, apiToken: true},
		cred{name: "token/unknown", bearer: unknown, apiToken: true},
		cred{name: "bearer/agent-shaped", bearer: base64.RawURLEncoding.EncodeToString(agentLike[:])},
		cred{name: "basic", bearer: "basic"},
		cred{name: "cert/rogue-ca", cert: &rogueCert},
		cred{name: "cert/expired", cert: &expiredCert},
		cred{name: "cert/revoked", cert: &revokedCert},
	)

	roots := x509.NewCertPool()
	roots.AddCert(local.Cert)
	clientFor := func(c cred) *http.Client {
		conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if c.cert != nil {
			conf.Certificates = []tls.Certificate{*c.cert}
		}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	}
	call := func(cl *http.Client, c cred, method, path string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		switch {
		case c.bearer == "basic":
			req.SetBasicAuth("admin", "admin")
		case c.bearer != "":
			req.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s as %s: %v", method, path, c.name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	routes := cpt.api.Routes()
	seen := map[string]bool{}
	for _, r := range routes {
		seen[r.Method+" "+r.Path] = true
	}
	for _, must := range []string{"GET /api/v1/nodes", "POST /api/v1/tokens", "DELETE /api/v1/certs/{serial}", "POST /api/v1/rbac-probe/admin", "POST /api/v1/agent/checkin",
		"GET /api/v1/policy", "GET /api/v1/handoff-targets", "GET /api/v1/bmc-enlistments"} {
		if !seen[must] {
			t.Fatalf("Routes() lacks %s: %v", must, routes)
		}
	}
	// What each role may do, written out here rather than asked of the
	// code under test.
	allowed := map[auth.Role]map[api.Permission]bool{
		auth.Viewer:   {api.PermRead: true},
		auth.Operator: {api.PermRead: true, api.PermOperate: true},
		auth.Auditor:  {api.PermAudit: true},
		auth.Admin:    {api.PermRead: true, api.PermOperate: true, api.PermAdmin: true, api.PermAudit: true},
	}
	// The read routes reports are made of, which auditors may use too
	// ("audit log and reports only").
	auditorReads := map[string]bool{"GET /api/v1/nodes": true, "GET /api/v1/policy": true, "GET /api/v1/firmware/compliance": true}
	for route := range auditorReads {
		if !seen[route] {
			t.Fatalf("Routes() lacks %s, a route auditors read", route)
		}
	}
	refusals := 0
	for _, c := range creds {
		cl := clientFor(c)
		for _, r := range routes {
			path := r.Path
			for strings.Contains(path, "{") {
				i, j := strings.Index(path, "{"), strings.Index(path, "}")
				path = path[:i] + "rbac-none" + path[j+1:]
			}
			var body any
			if r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
				body = map[string]any{}
			}
			status, b := call(cl, c, r.Method, path, body)
			what := fmt.Sprintf("%s %s as %s (route needs %s)", r.Method, path, c.name, r.Perm)
			var e api.Error
			json.Unmarshal(b, &e)
			var want int
			switch {
			case r.Perm == api.PermPublic:
			case r.Perm == api.PermAgent:
				if c.apiToken {
					want = http.StatusForbidden
				}
			case c.role == "":
				want = http.StatusUnauthorized
			case !allowed[c.role][r.Perm] && !(c.role == auth.Auditor && auditorReads[r.Method+" "+r.Path]):
				want = http.StatusForbidden
			}
			switch {
			case r.Perm == api.PermAgent && want == 0:
				// The agent routes' handlers authenticate agents themselves.
				if status == http.StatusForbidden {
					t.Errorf("%s = %d %s, want the handler to answer", what, status, b)
				}
			case want == 0:
				if status == http.StatusUnauthorized || status == http.StatusForbidden || status == 0 {
					t.Errorf("%s = %d %s, want allowed", what, status, b)
				}
			default:
				refusals++
				if status != want || e.Hint == "" || e.Message == "" {
					t.Errorf("%s = %d %s, want %d with a message and a hint", what, status, b, want)
				}
			}
		}
	}

	// Caller names reach handlers (and so the audit log).
	for _, c := range creds[1:4] {
		if status, b := call(clientFor(c), c, "POST", "/api/v1/rbac-probe/public", map[string]any{}); status != 200 {
			t.Errorf("probe as %s = %d %s", c.name, status, b)
		}
	}
	admin := creds[7] // token/admin
	if admin.name != "token/admin" {
		t.Fatalf("creds[7] is %s", admin.name)
	}
	if _, b := call(clientFor(admin), admin, "POST", "/api/v1/rbac-probe/admin", map[string]any{}); !strings.Contains(string(b), `"token:tok-admin"`) {
		t.Errorf("caller seen by a handler = %s, want token:tok-admin", b)
	}
	certAdmin := creds[8]
	if _, b := call(clientFor(certAdmin), certAdmin, "POST", "/api/v1/rbac-probe/admin", map[string]any{}); !strings.Contains(string(b), `"cert:user-admin"`) {
		t.Errorf("caller seen by a handler = %s, want cert:user-admin", b)
	}

	// Planted secrets: a BMC password set through the API, a token made
	// through the API (its reply is the one place its secret may appear)
	// and used, and every token above.
	const bmcPassword = "Planted-BMC-Secret-9c1e77"
	acl := clientFor(admin)
	if status, b := call(acl, admin, "PUT", "/api/v1/nodes/sim-r1-n01/bmc-credentials", api.BMCCredentials{Username: "root", Password: bmcPassword}); status != http.StatusNoContent {
		t.Fatalf("set BMC credentials = %d %s", status, b)
	}
	status, b := call(acl, admin, "POST", "/api/v1/tokens", auth.TokenRequest{Name: "automation", Role: "operator", TTL: "1h"})
	var made auth.NewTokenReply
	if status != http.StatusCreated || json.Unmarshal(b, &made) != nil || auth.ParseToken(made.Secret) != nil {
		t.Fatalf("POST /api/v1/tokens = %d %s", status, b)
	}
	secrets = append(secrets, made.Secret)
	automation := cred{name: "token/automation", bearer: made.Secret, role: auth.Operator, apiToken: true}
	if status, b := call(clientFor(automation), automation, "GET", "/api/v1/nodes", nil); status != 200 {
		t.Errorf("GET /api/v1/nodes with a token made through the API = %d %s", status, b)
	}
	if status, _ := call(clientFor(automation), automation, "GET", "/api/v1/tokens", nil); status != http.StatusForbidden {
		t.Errorf("an operator token listed tokens: %d", status)
	}
	refusals++
	var planted []string
	planted = append(planted, bmcPassword)
	for _, s := range secrets {
		planted = append(planted, s, auth.HashToken(s))
	}
	var replies []string
	for _, r := range routes {
		if r.Method != "GET" || r.Perm == api.PermAgent {
			continue
		}
		path := strings.NewReplacer("{name}", "sim-r1-n01", "{rack}", "sim-r1", "{id}", "1").Replace(r.Path)
		if strings.Contains(path, "/audit") {
			path += "?limit=10000"
		}
		status, b := call(acl, admin, "GET", path, nil)
		if status >= 500 {
			t.Errorf("GET %s = %d %s", path, status, b)
		}
		replies = append(replies, "GET "+path+": "+string(b))
	}
	if len(replies) < 10 {
		t.Fatalf("only %d GET routes answered", len(replies))
	}
	for _, rep := range replies {
		for _, p := range planted {
			if strings.Contains(rep, p) {
				t.Errorf("a planted secret (%.12s…) is in the reply to %.60s", p, rep)
			}
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all := logs.String()
	if !strings.Contains(all, "request refused") || !strings.Contains(all, "/api/v1/nodes") {
		t.Fatal("the log capture saw nothing: the secret check would prove nothing")
	}
	for _, p := range planted {
		if strings.Contains(all, p) {
			t.Errorf("a planted secret (%.12s…) is in the log", p)
		}
	}

	// Every refusal is in the audit chain, summarised at shutdown; so is
	// every token made or revoked, and the chain holds no secret.
	db2, err := store.Open(context.Background(), "", data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	entries, err := db2.ListAudit(context.Background(), store.AuditFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]int{}
	total := 0
	for _, e := range entries {
		counted[e.Action]++
		if e.Action == "auth.refused" {
			var d struct {
				Total int `json:"total"`
			}
			json.Unmarshal(e.Detail, &d)
			total += d.Total
		}
		for _, p := range planted {
			if strings.Contains(string(e.Detail), p) {
				t.Errorf("audit entry %d (%s) holds a planted secret", e.Seq, e.Action)
			}
		}
	}
	if total != refusals {
		t.Errorf("audited refusals = %d, want %d", total, refusals)
	}
	if counted["auth.refused"] != 1 {
		t.Errorf("refusals were audited in %d entries, want 1 summary", counted["auth.refused"])
	}
	if counted["auth.token.create"] != 7 || counted["auth.token.revoke"] != 1 || counted["auth.cert.revoke"] != 1 {
		t.Errorf("audit of tokens and certificates: %v", counted)
	}
	if _, err := db2.VerifyAudit(context.Background()); err != nil {
		t.Error(err)
	}
}
