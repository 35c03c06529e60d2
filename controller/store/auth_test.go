package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAPITokens(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			a, err := db.CreateAPIToken(ctx, "ci", "operator", "hash-a", exp, "test")
			if err != nil {
				t.Fatal(err)
			}
			if a.ID == 0 || a.Name != "ci" || a.Role != "operator" || a.RevokedAt != nil || a.LastUsedAt != nil {
				t.Errorf("CreateAPIToken = %+v", a)
			}
			if _, err := db.CreateAPIToken(ctx, "ci", "viewer", "hash-b", exp, "test"); !errors.Is(err, ErrExists) {
				t.Errorf("second live token named ci: %v, want ErrExists", err)
			}
			got, err := db.APITokenByHash(ctx, "hash-a")
			if err != nil || got.ID != a.ID {
				t.Fatalf("APITokenByHash = %+v, %v", got, err)
			}
			if _, err := db.APITokenByHash(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("APITokenByHash(nope) = %v, want ErrNotFound", err)
			}
			used := time.Now().Truncate(time.Microsecond)
			if err := db.TouchAPIToken(ctx, a.ID, used); err != nil {
				t.Fatal(err)
			}
			if got, _ := db.APITokenByHash(ctx, "hash-a"); got.LastUsedAt == nil || !got.LastUsedAt.Equal(used) {
				t.Errorf("last used = %v, want %v", got.LastUsedAt, used)
			}
			r, err := db.RevokeAPIToken(ctx, "ci", "test")
			if err != nil || r.RevokedAt == nil {
				t.Fatalf("RevokeAPIToken = %+v, %v", r, err)
			}
			if _, err := db.RevokeAPIToken(ctx, "ci", "test"); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoke twice = %v, want ErrNotFound", err)
			}
			// The name is free again once revoked.
			if _, err := db.CreateAPIToken(ctx, "ci", "viewer", "hash-c", exp, "test"); err != nil {
				t.Errorf("re-create after revoke: %v", err)
			}
			list, err := db.ListAPITokens(ctx)
			if err != nil || len(list) != 2 || list[0].RevokedAt == nil || list[1].RevokedAt != nil {
				t.Errorf("ListAPITokens = %+v, %v", list, err)
			}
			entries, _ := db.ListAudit(ctx, AuditFilter{})
			var actions []string
			for _, e := range entries {
				actions = append(actions, e.Action)
				if strings.Contains(string(e.Detail), "hash-") {
					t.Errorf("audit entry %d holds a token hash: %s", e.Seq, e.Detail)
				}
			}
			if got := strings.Join(actions, ","); got != "auth.token.create,auth.token.revoke,auth.token.create" {
				t.Errorf("audit actions = %s", got)
			}
			if _, err := db.VerifyAudit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestClientCerts(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			c := ClientCert{Serial: "0abc", User: "alice", Role: "operator", SHA256: "ff", IssuedBy: "token:root", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := db.RecordClientCert(ctx, c); err != nil {
				t.Fatal(err)
			}
			if rev, err := db.ClientCertRevoked(ctx, "0abc"); err != nil || rev {
				t.Errorf("ClientCertRevoked(issued) = %v, %v", rev, err)
			}
			if r, err := db.RevokeClientCert(ctx, "0abc", "test"); err != nil || r.User != "alice" || r.RevokedAt == nil {
				t.Errorf("RevokeClientCert = %+v, %v", r, err)
			}
			if _, err := db.RevokeClientCert(ctx, "0abc", "test"); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoke twice = %v, want ErrNotFound", err)
			}
			// A certificate from another CA is revoked by serial all the same.
			if _, err := db.RevokeClientCert(ctx, "beef", "test"); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"0abc", "beef"} {
				if rev, err := db.ClientCertRevoked(ctx, s); err != nil || !rev {
					t.Errorf("ClientCertRevoked(%s) = %v, %v", s, rev, err)
				}
			}
			list, err := db.ListClientCerts(ctx)
			if err != nil || len(list) != 2 {
				t.Errorf("ListClientCerts = %+v, %v", list, err)
			}
			if _, err := db.VerifyAudit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}
