package model

import (
	"strings"
	"testing"
)

func TestParseStateAndDesired(t *testing.T) {
	t.Parallel()
	for _, s := range States {
		got, err := ParseState(strings.ToLower(string(s)))
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %q, %v", strings.ToLower(string(s)), got, err)
		}
	}
	if _, err := ParseState("Happy"); err == nil || !strings.Contains(err.Error(), "Discovered") {
		t.Errorf("ParseState(Happy) = %v; want the list of states", err)
	}
	if _, err := ParseDesired("gone"); err == nil {
		t.Error("ParseDesired(gone) succeeded")
	}
}

func FuzzNormalizeMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:12:34:56", "52-54-00-12-34-56", "5254.0012.3456", "zz", "", "00:00:00:00:00:00:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeMAC(s)
		if err != nil {
			if !strings.Contains(err.Error(), "aa:bb:cc:dd:ee:ff") {
				t.Fatalf("NormalizeMAC(%q) error %q does not show the expected form", s, err)
			}
			return
		}
		again, err := NormalizeMAC(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeMAC is not idempotent: %q -> %q -> %q, %v", s, got, again, err)
		}
	})
}
