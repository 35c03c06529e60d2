package dhcp

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFileStoreCompactsAndSurvivesTornWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "leases")
	st := NewFileStore(path)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st.now = func() time.Time { return now }
	if ls, err := st.Load(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("Load(empty) = %v, %v, want none", ls, err)
	}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	// 1200 renewals of one lease, and a released one.
	for i := range 1200 {
		l := Lease{IP: a, MAC: "02:00:00:00:00:01", State: Bound, Expires: now.Add(time.Hour), Updated: now.Add(time.Duration(i))}
		if err := st.Commit(ctx, []Lease{l}); err != nil {
			t.Fatal(err)
		}
	}
	st.Commit(ctx, []Lease{{IP: b, MAC: "02:00:00:00:00:02", State: Released, Updated: now}})
	st.Close()
	data, _ := os.ReadFile(path)
	if n := bytes.Count(data, []byte{'\n'}); n > 1100 {
		t.Errorf("journal holds %d lines after 1201 commits of 2 addresses, want it compacted", n)
	}
	// A crash mid-write leaves a torn last line: ignored.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	f.WriteString(`{"ip":"10.0.0.3","mac":"02:00`)
	f.Close()
	ls, err := NewFileStore(path).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Lease{{IP: a, MAC: "02:00:00:00:00:01", State: Bound, Expires: now.Add(time.Hour), Updated: now.Add(1199)}}
	if d := cmp.Diff(want, ls, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); d != "" {
		t.Errorf("Load after compaction and a torn write (-want +got):\n%s", d)
	}
}
