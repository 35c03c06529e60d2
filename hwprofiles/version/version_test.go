package version

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"1.2", "1.2.0", 0},
		{"1.2.1", "1.2", 1},
		{"1.10", "1.9", 1},
		{"v1.2", "1.2", 0},
		{"BMC 24.01.05", "24.01.05", 0},
		{"1.5.0-rc1", "1.5.0", -1},
		{"1.5.0-rc2", "1.5.0-rc10", -1},
		{"1.5.0-beta", "1.5.0-rc1", -1},
		{"3.0a", "3.0", 1},
		{"3.0a", "3.0b", -1},
		{"3.0a", "3.1", -1},
		{"96.00.74.00.01", "96.00.74.00.1C", -1},
		{"96.00.74.00.1C", "96.00.74.00.01", 1},
		{"28.39.1002", "28.39.1010", -1},
		{"A05", "A10", -1},
		{"2.19.0", "2.9.99", 1},
		{"U46 v2.20 (05/15/2024)", "U46 v2.20 (01/01/2024)", 1},
		{"99999999999999999999999.1", "99999999999999999999998.9", 1},
		{"007", "7", 0},
		{"abc", "ABC", 0},
		{"abc", "abd", -1},
		{"", "0", 0},
		{"", "1", -1},
	}
	for _, tc := range tests {
		if got := Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Compare(tc.b, tc.a); got != -tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestSort(t *testing.T) {
	t.Parallel()
	vs := []string{"1.5.1", "1.5.0a", "1.5.0", "1.5.0-rc1", "1.5.0-beta2", "1.4.99", "v1.10"}
	sort.Slice(vs, func(i, j int) bool { return Compare(vs[i], vs[j]) < 0 })
	want := []string{"1.4.99", "1.5.0-beta2", "1.5.0-rc1", "1.5.0", "1.5.0a", "1.5.1", "v1.10"}
	if diff := cmp.Diff(want, vs); diff != "" {
		t.Errorf("sorted (-want +got):\n%s", diff)
	}
	if !AtLeast("2.1", "2.0.9") || AtLeast("2.0", "2.0.1") {
		t.Error("AtLeast is wrong")
	}
}

// FuzzCompare checks that Compare is a total order: reflexive, antisymmetric
// and transitive, and never panics.
func FuzzCompare(f *testing.F) {
	f.Add("1.2.3", "1.2", "1.2.3-rc1")
	f.Add("96.00.74.00.01", "A05", "v2.20")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		if Compare(a, a) != 0 {
			t.Fatalf("Compare(%q, %q) != 0", a, a)
		}
		ab, ba := Compare(a, b), Compare(b, a)
		if ab != -ba {
			t.Fatalf("Compare(%q,%q)=%d but Compare(%q,%q)=%d", a, b, ab, b, a, ba)
		}
		bc, ac := Compare(b, c), Compare(a, c)
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but Compare(a,c)=%d", a, b, c, ac)
		}
		if ab == 0 && bc == 0 && ac != 0 {
			t.Fatalf("equality not transitive: %q %q %q", a, b, c)
		}
	})
}
