package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/controller/store"
)

// TestExtend mounts an extension and checks that it is served, documented,
// listed with its permission, and that duplicates are refused.
func TestExtend(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t)
	ext := Extension{
		Name: "demo",
		Routes: []Route{{Method: "GET", Path: "/api/v1/demo/{id}", Perm: PermRead, Handle: func(w http.ResponseWriter, r *http.Request) error {
			if r.PathValue("id") == "bad" {
				return Errorf(http.StatusBadRequest, "bad_id", "use a good id", "id %q is bad", r.PathValue("id"))
			}
			return WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
		}}},
		OpenAPI: []byte(`{"paths":{"/api/v1/demo/{id}":{"get":{"summary":"demo","responses":{"200":{"description":"OK"}}}}},
			"components":{"schemas":{"Demo":{"type":"object"}}}}`),
	}
	if err := s.Extend(ext); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckOpenAPI(); err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(ext); err == nil {
		t.Fatal("mounting the same routes twice was accepted")
	}
	if err := s.Extend(Extension{Name: "undocumented", Routes: []Route{{Method: "GET", Path: "/api/v1/x", Perm: PermRead, Handle: ext.Routes[0].Handle}}, OpenAPI: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckOpenAPI(); err == nil || !strings.Contains(err.Error(), "/api/v1/x") {
		t.Fatalf("an undocumented route was not reported: %v", err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	for path, want := range map[string]string{"/api/v1/demo/7": `"id": "7"`, "/api/v1/demo/bad": `"code": "bad_id"`, "/api/v1/openapi.json": `"Demo"`} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("GET %s = %s, want it to contain %s", path, b, want)
		}
	}
	found := false
	for _, r := range s.Routes() {
		if r.Path == "/api/v1/demo/{id}" && r.Perm == PermRead {
			found = true
		}
		if r.Perm == "" {
			t.Errorf("route %s %s declares no permission", r.Method, r.Path)
		}
	}
	if !found {
		t.Error("Routes() does not list the extension's route with its permission")
	}
}

// TestAuthorizer: every request passes the authorizer with its route's
// permission; refusals come back as the API's JSON error, and the caller it
// names is the actor in the audit log.
func TestAuthorizer(t *testing.T) {
	t.Parallel()
	s, db := newServer(t)
	var asked []Permission
	s.SetAuthorizer(func(r *http.Request, perm Permission) (string, error) {
		asked = append(asked, perm)
		if r.Header.Get("Authorization") != "Bearer ok" && perm != PermPublic {
			return "", Errorf(http.StatusUnauthorized, "unauthorized", "pass a token", "no valid token")
		}
		return "token:alice", nil
	})
	ts := httptest.NewServer(s)
	defer ts.Close()
	do := func(method, path, body, token string) (int, string) {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/healthz", "", ""); code != 200 {
		t.Errorf("public /healthz = %d", code)
	}
	if code, body := do("POST", "/api/v1/nodes", `{"name":"n9"}`, ""); code != 401 || !strings.Contains(body, `"unauthorized"`) {
		t.Errorf("unauthenticated POST = %d %s", code, body)
	}
	if code, body := do("POST", "/api/v1/nodes", `{"name":"n9"}`, "ok"); code/100 != 2 {
		t.Fatalf("authorized POST = %d %s", code, body)
	}
	if code, _ := do("GET", "/api/v1/no-such-route", "", ""); code != 404 {
		t.Errorf("unknown route = %d, want 404", code)
	}
	want := []Permission{PermPublic, PermOperate, PermOperate}
	if strings.Join(permStrings(asked), ",") != strings.Join(permStrings(want), ",") {
		t.Errorf("authorizer asked %v, want %v", asked, want)
	}
	entries, err := db.ListAudit(t.Context(), store.AuditFilter{Node: "n9"})
	if err != nil || len(entries) == 0 {
		t.Fatalf("no audit entry for n9: %v", err)
	}
	if entries[0].Actor != "token:alice" {
		t.Errorf("audit actor %q, want the authorizer's caller token:alice", entries[0].Actor)
	}
}

func permStrings(ps []Permission) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

// TestClientSendsToken: a client made with credentials sends its token, and
// a bad CA file is refused with a hint.
func TestClientSendsToken(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t)
	s.SetAuthorizer(func(r *http.Request, perm Permission) (string, error) {
		if r.Header.Get("Authorization") != "Bearer s3cret" && perm != PermPublic {
			return "", Errorf(http.StatusUnauthorized, "unauthorized", "pass --token", "no valid token")
		}
		return "token:t", nil
	})
	ts := httptest.NewServer(s)
	defer ts.Close()
	c, err := NewClientWith(ts.URL, Credentials{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes(t.Context(), "", ""); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	anon, _ := NewClientWith(ts.URL, Credentials{})
	if _, err := anon.Nodes(t.Context(), "", ""); err == nil || !strings.Contains(err.Error(), "pass --token") {
		t.Fatalf("without a token: %v", err)
	}
	if _, err := NewClientWith("https://127.0.0.1:1", Credentials{CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "--ca-cert") {
		t.Fatalf("missing CA file: %v", err)
	}
}

// TestClientNamesUntrustedCertificate: a TLS controller whose CA the client
// lacks gets an error that says to pass --ca-cert.
func TestClientNamesUntrustedCertificate(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t)
	ts := httptest.NewTLSServer(s)
	defer ts.Close()
	c, err := NewClientWith(ts.URL, Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes(t.Context(), "", ""); err == nil || !strings.Contains(err.Error(), "--ca-cert") {
		t.Fatalf("untrusted controller certificate: %v", err)
	}
}
