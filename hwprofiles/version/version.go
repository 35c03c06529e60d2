// Package version compares the version strings vendors put on firmware,
// BIOSes, VBIOSes and drivers: dotted numbers with prefixes and suffixes
// ("2.19.0", "1.5.0-rc1", "A05", "96.00.74.00.01", "28.39.1002",
// "U46 v2.20", "3.0a").
//
// A version is read as a sequence of tokens: runs of digits are numbers, runs
// of letters are words, and everything else separates. Leading words before
// the first number are a prefix and ignored ("v1.2" = "1.2", "BMC 24.01" =
// "24.01"), unless the string has no digits at all. Two versions compare token
// by token, the shorter padded with zeros, so "1.2" = "1.2.0". Tokens order as
// pre-release words ("alpha", "beta", "dev", "pre", "preview", "rc") < numbers
// < other words: "1.5.0-rc1" < "1.5.0" < "1.5.0a" < "1.5.1". Numbers compare
// by value with no size limit; words compare case-insensitively.
//
// This is a total order, so sorting and minimum checks are consistent.
package version

import "strings"

type kind int

const (
	preWord kind = iota // pre-release marker
	number
	word
)

type token struct {
	kind kind
	text string // number: digits without leading zeros ("" is 0); word: lower case
}

var preRelease = map[string]bool{"alpha": true, "beta": true, "dev": true, "pre": true, "preview": true, "rc": true}

func tokenize(s string) []token {
	var toks []token
	hasDigit := strings.ContainsAny(s, "0123456789")
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case isDigit(c):
			j := i
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			toks = append(toks, token{number, strings.TrimLeft(s[i:j], "0")})
			i = j
		case isLetter(c):
			j := i
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			w := strings.ToLower(s[i:j])
			i = j
			if hasDigit && len(toks) == 0 {
				continue // prefix before the first number
			}
			k := word
			if preRelease[w] {
				k = preWord
			}
			toks = append(toks, token{k, w})
		default:
			i++
		}
	}
	return toks
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

var zero = token{kind: number}

func compareToken(a, b token) int {
	if a.kind != b.kind {
		if a.kind < b.kind {
			return -1
		}
		return 1
	}
	if a.kind == number && len(a.text) != len(b.text) {
		if len(a.text) < len(b.text) {
			return -1
		}
		return 1
	}
	return strings.Compare(a.text, b.text)
}

// Compare returns -1, 0 or +1 as a is older than, the same as, or newer than b.
func Compare(a, b string) int {
	ta, tb := tokenize(a), tokenize(b)
	n := max(len(ta), len(tb))
	for i := range n {
		x, y := zero, zero
		if i < len(ta) {
			x = ta[i]
		}
		if i < len(tb) {
			y = tb[i]
		}
		if c := compareToken(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// AtLeast reports whether v is min or newer.
func AtLeast(v, min string) bool { return Compare(v, min) >= 0 }

// Valid reports whether s has at least one number or word to compare.
func Valid(s string) bool { return len(tokenize(s)) > 0 }
