package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// One holder per rack; a live lease is not taken; an expired or released
// one is, and the hand-over is counted.
func TestRackLeases(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := time.Unix(1_800_000_000, 0)
			db.now = func() time.Time { return clock }
			racks := []string{"r1", "r2"}
			got, err := db.AcquireRacks(ctx, "a", racks, 10*time.Second)
			if err != nil || !cmp.Equal(got, racks) {
				t.Fatalf("AcquireRacks(a) = %v, %v; want both", got, err)
			}
			if got, err := db.AcquireRacks(ctx, "b", racks, 10*time.Second); err != nil || len(got) != 0 {
				t.Errorf("AcquireRacks(b) while a holds them = %v, %v; want none", got, err)
			}
			clock = clock.Add(5 * time.Second)
			if got, err := db.AcquireRacks(ctx, "a", []string{"r1"}, 10*time.Second); err != nil || !cmp.Equal(got, []string{"r1"}) {
				t.Errorf("renew r1 = %v, %v", got, err)
			}
			clock = clock.Add(6 * time.Second) // r2 expired, r1 renewed until +15 s
			if got, err := db.AcquireRacks(ctx, "b", racks, 10*time.Second); err != nil || !cmp.Equal(got, []string{"r2"}) {
				t.Errorf("AcquireRacks(b) after r2 expired = %v, %v; want r2", got, err)
			}
			if err := db.ReleaseRacks(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if got, err := db.AcquireRacks(ctx, "b", racks, 10*time.Second); err != nil || !cmp.Equal(got, racks) {
				t.Errorf("AcquireRacks(b) after a released = %v, %v; want both", got, err)
			}
			leases, err := db.RackLeases(ctx)
			if err != nil || len(leases) != 2 || leases[0].Holder != "b" || leases[0].Epoch != 2 || leases[1].Epoch != 2 {
				t.Errorf("RackLeases = %+v, %v; want both held by b, handed over once", leases, err)
			}
		})
	}
}
