package strictyaml

import (
	"fmt"
	"strings"
)

// Suggest returns the known key a mistyped key most likely meant, or ""
// when none is close: the nearest by edit distance (ignoring case) if
// fewer than three edits away (among equals, the one sharing the longest
// run of letters, then the longest prefix: "isk" is "disk", not "iso");
// failing that, one that differs only in case, '-' and '_'
// (sourceDateEpoch for source_date_epoch).
func Suggest(key string, known []string) string {
	lkey := strings.ToLower(key)
	best, bestD, bestS, bestP := "", 3, 0, 0
	for _, k := range known {
		lk := strings.ToLower(k)
		d := distance(lkey, lk)
		if d > bestD || (d == bestD && best == "") {
			continue
		}
		s, p := commonRun(lkey, lk), commonPrefix(lkey, lk)
		if d < bestD || s > bestS || (s == bestS && p > bestP) {
			best, bestD, bestS, bestP = k, d, s, p
		}
	}
	if best != "" {
		return best
	}
	norm := squash(lkey)
	for _, k := range known {
		if squash(strings.ToLower(k)) == norm {
			return k
		}
	}
	return ""
}

func squash(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(s)
}

// UnknownField is the default wording for a key the type lacks:
//
//	unknown field "gpu" (did you mean "gpus"?); known fields: name, gpus
func UnknownField(key string, known []string) string {
	hint := ""
	if s := Suggest(key, known); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	return fmt.Sprintf("unknown field %q%s; known fields: %s", key, hint, strings.Join(known, ", "))
}

// UnknownKey is the shorter wording, which lists the known keys only when
// it has no suggestion:
//
//	unknown key "dirr"; did you mean "dir"?
//	unknown key "x"; known keys: api_version, images
func UnknownKey(key string, known []string) string {
	if s := Suggest(key, known); s != "" {
		return fmt.Sprintf("unknown key %q; did you mean %q?", key, s)
	}
	return fmt.Sprintf("unknown key %q; known keys: %s", key, strings.Join(known, ", "))
}

// commonRun is the length of the longest substring of both a and b.
func commonRun(a, b string) int {
	best := 0
	for i := range a {
		for j := range b {
			n := 0
			for i+n < len(a) && j+n < len(b) && a[i+n] == b[j+n] {
				n++
			}
			best = max(best, n)
		}
	}
	return best
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// distance is the Levenshtein distance of a and b in bytes; keys longer
// than 64 bytes are never close to anything (and cost no quadratic work).
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
