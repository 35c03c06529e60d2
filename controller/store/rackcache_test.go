package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A registration is live until it expires; renewals are not audited, a
// new URL is; removal is audited and a second removal is ErrNotFound.
func TestRackCaches(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := time.Unix(1_800_000_000, 0)
			db.now = func() time.Time { return clock }
			if _, ok, err := db.LiveRackCache(ctx, "r1"); err != nil || ok {
				t.Fatalf("LiveRackCache before any = %v, %v", ok, err)
			}
			audits := func() int {
				es, err := db.ListAudit(ctx, AuditFilter{})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, e := range es {
					if e.Action == "rack.cache.register" || e.Action == "rack.cache.remove" {
						n++
					}
				}
				return n
			}
			if _, err := db.RegisterRackCache(ctx, "r1", "http://10.1.0.5:8090", 30*time.Second, "cache-r1"); err != nil {
				t.Fatal(err)
			}
			clock = clock.Add(10 * time.Second)
			if _, err := db.RegisterRackCache(ctx, "r1", "http://10.1.0.5:8090", 30*time.Second, "cache-r1"); err != nil {
				t.Fatal(err)
			}
			if url, ok, err := db.LiveRackCache(ctx, "r1"); err != nil || !ok || url != "http://10.1.0.5:8090" {
				t.Errorf("LiveRackCache = %q, %v, %v", url, ok, err)
			}
			if n := audits(); n != 1 {
				t.Errorf("audit entries after a registration and a renewal = %d, want 1", n)
			}
			clock = clock.Add(31 * time.Second) // expired
			if _, ok, _ := db.LiveRackCache(ctx, "r1"); ok {
				t.Error("an expired registration is still live")
			}
			list, err := db.RackCaches(ctx)
			if err != nil || len(list) != 1 || list[0].Live {
				t.Errorf("RackCaches = %+v, %v; want r1, not live", list, err)
			}
			if _, err := db.RegisterRackCache(ctx, "r1", "http://10.1.0.6:8090", 30*time.Second, "cache-r1b"); err != nil {
				t.Fatal(err)
			}
			if url, ok, _ := db.LiveRackCache(ctx, "r1"); !ok || url != "http://10.1.0.6:8090" {
				t.Errorf("after re-registration: %q, %v", url, ok)
			}
			if err := db.RemoveRackCache(ctx, "r1", "alice"); err != nil {
				t.Fatal(err)
			}
			if err := db.RemoveRackCache(ctx, "r1", "alice"); !errors.Is(err, ErrNotFound) {
				t.Errorf("second RemoveRackCache = %v, want ErrNotFound", err)
			}
			if n := audits(); n != 3 {
				t.Errorf("audit entries = %d, want 3 (register, new URL, remove)", n)
			}
			if _, err := db.RegisterRackCache(ctx, "", "u", time.Second, "x"); err == nil {
				t.Error("a registration without a rack was accepted")
			}
		})
	}
}
