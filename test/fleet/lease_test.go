package fleet

import (
	"net/netip"
	"testing"
	"time"
)

func TestOverlaps(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000, 0)
	ip := netip.MustParseAddr("10.0.0.10")
	ip2 := netip.MustParseAddr("10.0.0.11")
	g := func(mac string, a netip.Addr, at, lease time.Duration) LeaseGrant {
		return LeaseGrant{MAC: mac, IP: a, At: t0.Add(at), Lease: lease}
	}
	for name, tc := range map[string]struct {
		grants []LeaseGrant
		want   int
	}{
		"renewals of one MAC":  {[]LeaseGrant{g("a", ip, 0, time.Hour), g("a", ip, time.Minute, time.Hour)}, 0},
		"after expiry":         {[]LeaseGrant{g("a", ip, 0, time.Minute), g("b", ip, 2*time.Minute, time.Hour)}, 0},
		"two addresses":        {[]LeaseGrant{g("a", ip, 0, time.Hour), g("b", ip2, 0, time.Hour)}, 0},
		"during the lease":     {[]LeaseGrant{g("a", ip, 0, time.Hour), g("b", ip, time.Minute, time.Hour)}, 1},
		"renewed, then taken":  {[]LeaseGrant{g("a", ip, 0, time.Minute), g("a", ip, 50*time.Second, time.Minute), g("b", ip, 90*time.Second, time.Hour)}, 1},
		"out of order input":   {[]LeaseGrant{g("b", ip, time.Minute, time.Hour), g("a", ip, 0, time.Hour)}, 1},
		"no lifetime":          {[]LeaseGrant{g("a", ip, 0, 0), g("b", ip, 24*time.Hour, time.Hour)}, 1},
		"repeats counted once": {[]LeaseGrant{g("a", ip, 0, time.Hour), g("b", ip, time.Second, time.Hour), g("b", ip, 2*time.Second, time.Hour)}, 1},
	} {
		if got := Overlaps(tc.grants); len(got) != tc.want {
			t.Errorf("%s: Overlaps = %v, want %d pairs", name, got, tc.want)
		}
	}
}
