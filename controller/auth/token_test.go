package auth

import (
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/controller/api"
)

func TestRolesAllow(t *testing.T) {
	t.Parallel()
	perms := []api.Permission{api.PermPublic, api.PermAgent, api.PermRead, api.PermOperate, api.PermAdmin, api.PermAudit, "future"}
	want := map[Role]string{
		Viewer:   "public read",
		Operator: "public read operate",
		Auditor:  "public audit",
		Admin:    "public read operate admin audit future",
	}
	for _, r := range Roles {
		var got []string
		for _, p := range perms {
			if r.Allows(p) {
				got = append(got, string(p))
			}
		}
		if strings.Join(got, " ") != want[r] {
			t.Errorf("%s allows %v, want %s", r, got, want[r])
		}
	}
	if Role("root").Allows(api.PermRead) {
		t.Error("an unknown role allows read")
	}
	for _, tc := range []struct {
		role         Role
		method, path string
		perm         api.Permission
		want         bool
	}{
		{Auditor, "GET", "/api/v1/nodes", api.PermRead, true},
		{Auditor, "GET", "/api/v1/nodes/", api.PermRead, true},
		{Auditor, "GET", "/api/v1/policy", api.PermRead, true},
		{Auditor, "GET", "/api/v1/firmware/compliance", api.PermRead, true},
		{Auditor, "GET", "/api/v1/nodes/n1", api.PermRead, false},
		{Auditor, "GET", "/api/v1/racks", api.PermRead, false},
		{Auditor, "POST", "/api/v1/nodes", api.PermOperate, false},
		{Auditor, "POST", "/api/v1/nodes", api.PermRead, false},
		{Auditor, "GET", "/api/v1/tokens", api.PermAdmin, false},
		{Viewer, "GET", "/api/v1/audit", api.PermAudit, false},
		{Viewer, "GET", "/api/v1/nodes", api.PermRead, true},
	} {
		if got := tc.role.AllowsRoute(tc.method, tc.path, tc.perm); got != tc.want {
			t.Errorf("%s AllowsRoute(%s %s, %s) = %v, want %v", tc.role, tc.method, tc.path, tc.perm, got, tc.want)
		}
	}
	for _, r := range Roles {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%s) = %s, %v", r, got, err)
		}
	}
	if _, err := ParseRole("Admin"); err == nil {
		t.Error("ParseRole accepted Admin")
	}
}

func TestTokenFormat(t *testing.T) {
	t.Parallel()
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := ParseToken(tok); err != nil {
		t.Errorf("ParseToken(NewToken()) = %v", err)
	}
	other, _ := NewToken()
	if other == tok || HashToken(tok) == HashToken(other) || len(HashToken(tok)) != 64 {
		t.Error("two tokens collide")
	}
	for _, bad := range []string{"", TokenPrefix, tok[:len(tok)-1], tok + "A", "rsx_" + tok[4:], strings.Replace(tok, tok[10:11], "+", 1),
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ" /* an agent token's shape */} {
		if ParseToken(bad) == nil {
			t.Errorf("ParseToken(%q) accepted it", bad)
		}
	}
}

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                   "||ok",
		"Bearer abc":         "bearer|abc|ok",
		"bearer  abc":        "bearer|abc|ok",
		"Basic dXNlcjpwdw==": "basic|dXNlcjpwdw==|ok",
		"Bearer":             "||error",
		"Bearer ":            "||error",
		"Bearer a b":         "||error",
		" abc":               "||error",
	} {
		s, c, err := ParseAuthorization(in)
		got := s + "|" + c + "|ok"
		if err != nil {
			got = s + "|" + c + "|error"
		}
		if got != want {
			t.Errorf("ParseAuthorization(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "ci-nightly", "alice.smith", "x_1"} {
		if CheckName(ok) != nil {
			t.Errorf("CheckName(%q) refused it", ok)
		}
	}
	for _, bad := range []string{"", "-a", "Alice", "a b", "a/b", strings.Repeat("a", 64)} {
		if CheckName(bad) == nil {
			t.Errorf("CheckName(%q) accepted it", bad)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	tok, _ := NewToken()
	for _, s := range []string{tok, "", TokenPrefix, "rst_" + strings.Repeat("A", 43), "rst_" + strings.Repeat("_", 43), "rst_" + strings.Repeat("A", 42) + "=", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ParseToken(s) != nil {
			return
		}
		if len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix) || strings.ContainsAny(s, " +/=\n") {
			t.Errorf("ParseToken accepted %q", s)
		}
	})
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer  abc", "Basic x", "Bearer", "Bearer a b", " x", "Bearer \t", "Bearer rst_" + strings.Repeat("A", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		scheme, cred, err := ParseAuthorization(h)
		if err != nil || h == "" {
			if scheme != "" || cred != "" {
				t.Errorf("ParseAuthorization(%q) = %q, %q with %v", h, scheme, cred, err)
			}
			return
		}
		if scheme == "" || cred == "" || strings.ContainsAny(cred, " \t\r\n") || scheme != strings.ToLower(scheme) {
			t.Errorf("ParseAuthorization(%q) = %q, %q", h, scheme, cred)
		}
	})
}
