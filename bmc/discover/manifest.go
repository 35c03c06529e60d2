package discover

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Expected is one machine a rack manifest lists. Serial, BMCMAC and
// BMCAddress identify it; any of them may be empty.
type Expected struct {
	Slot       string
	Serial     string
	BMCMAC     string
	BMCAddress netip.Addr
}

// Match is an expected machine and the BMC found for it.
type Match struct {
	Expected Expected
	Found    Found
}

// Mismatch is a slot whose BMC was found but does not fit the manifest:
// another machine in the slot, or a BMC at another address.
type Mismatch struct {
	Expected Expected
	Found    Found
	Reasons  []string // "serial RSIM000009, manifest says RSIM000002"
}

// Report is a manifest compared with a scan.
type Report struct {
	Matched    []Match
	Mismatched []Mismatch
	Missing    []Expected // listed, not found
	Unexpected []Found    // found, not listed
}

// MatchManifest pairs each expected machine with a found BMC: by serial
// first, then by BMC MAC, then by BMC address. A pair whose other
// identifiers disagree is a mismatch (the reasons say which). A found BMC
// is used at most once; those left over are unexpected.
func MatchManifest(expected []Expected, found []Found) Report {
	var r Report
	used := make([]bool, len(found))
	find := func(ok func(Found) bool) int {
		for i, f := range found {
			if !used[i] && ok(f) {
				return i
			}
		}
		return -1
	}
	for _, e := range expected {
		serial, mac := strings.TrimSpace(e.Serial), normMAC(e.BMCMAC)
		i := -1
		if serial != "" {
			i = find(func(f Found) bool { return strings.EqualFold(f.Survey.Serial, serial) })
		}
		if i < 0 && mac != "" {
			i = find(func(f Found) bool { return normMAC(f.Survey.BMCMAC) == mac })
		}
		if i < 0 && e.BMCAddress.IsValid() {
			i = find(func(f Found) bool { return f.Address == e.BMCAddress.Unmap() })
		}
		if i < 0 {
			r.Missing = append(r.Missing, e)
			continue
		}
		used[i] = true
		f := found[i]
		var why []string
		if serial != "" && f.Survey.Serial != "" && !strings.EqualFold(f.Survey.Serial, serial) {
			why = append(why, fmt.Sprintf("serial %s, manifest says %s", f.Survey.Serial, serial))
		}
		if serial != "" && f.Survey.Serial == "" {
			why = append(why, "serial unknown (no working BMC credentials), manifest says "+serial)
		}
		if mac != "" && f.Survey.BMCMAC != "" && normMAC(f.Survey.BMCMAC) != mac {
			why = append(why, fmt.Sprintf("BMC MAC %s, manifest says %s", normMAC(f.Survey.BMCMAC), mac))
		}
		if e.BMCAddress.IsValid() && f.Address != e.BMCAddress.Unmap() {
			why = append(why, fmt.Sprintf("BMC address %s, manifest says %s", f.Address, e.BMCAddress))
		}
		if len(why) > 0 {
			r.Mismatched = append(r.Mismatched, Mismatch{Expected: e, Found: f, Reasons: why})
		} else {
			r.Matched = append(r.Matched, Match{Expected: e, Found: f})
		}
	}
	for i, f := range found {
		if !used[i] {
			r.Unexpected = append(r.Unexpected, f)
		}
	}
	slices.SortStableFunc(r.Unexpected, func(a, b Found) int { return a.Address.Compare(b.Address) })
	return r
}

func normMAC(s string) string {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return strings.ToLower(strings.TrimSpace(s))
	}
	return hw.String()
}
