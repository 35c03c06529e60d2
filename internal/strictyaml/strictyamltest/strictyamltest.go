// Package strictyamltest checks a strict-YAML format's messages against a
// table of documents, for the tests of the formats built on strictyaml.
package strictyamltest

import (
	"errors"
	"regexp"
	"testing"
)

// Case is a document and the whole error text its parser must give for
// it; "" when the parser must accept it.
type Case struct {
	In, Want string
}

// knownList matches the list of known keys that ends an unknown-key
// message.
var knownList = regexp.MustCompile(`(known (?:keys|fields)(?: here)?): [^\n]*`)

// Run parses each case's document with parse, in parallel subtests, and
// compares the error text with the case's; an error must be (or wrap) an
// E, the format's error list type. The lists of known keys that
// end unknown-key messages are not compared: a format's fields are its
// types' to change, and such a change must not break these tests.
func Run[E error](t *testing.T, parse func(t *testing.T, doc []byte) error, cases map[string]Case) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := ""
			if err := parse(t, []byte(tc.In)); err != nil {
				got = knownList.ReplaceAllString(err.Error(), "$1: …")
				if !errors.As(err, new(E)) {
					t.Errorf("parse(%q) error is %T, want %T", tc.In, err, *new(E))
				}
			}
			if want := knownList.ReplaceAllString(tc.Want, "$1: …"); got != want {
				t.Errorf("parse(%q) error =\n%s\nwant\n%s", tc.In, got, want)
			}
		})
	}
}
