package policy

import (
	"errors"
	"regexp"
	"testing"
)

// strictKnownList matches the list of known keys that ends an unknown-key
// message: the types' fields are other code's to change, so it is not
// compared.
var strictKnownList = regexp.MustCompile(`(known (keys|fields)(?: here)?): [^\n]*`)

// The strict checker's messages, one case per kind of problem, as they
// read before the checker moved to internal/strictyaml: they are what users
// and scripts see, so a change to them must be deliberate.
func TestStrictMessages(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"alias":   {"api_version: rackstrap.io/policy/v1\npower: {timezone: &z UTC}\nimages: {default: [*z]}\n", "p.yaml:3:20: images.default[0]: YAML aliases are not allowed in a policy; write the value out"},
		"bool":    {"api_version: rackstrap.io/policy/v1\nrequire: {firmware_compliance: sometimes}\n", "p.yaml:2:32: require.firmware_compliance: want true or false, got \"sometimes\""},
		"dupmap":  {"api_version: rackstrap.io/policy/v1\nimages:\n  by_profile:\n    a: ['x:1']\n    a: ['y:1']\n", "p.yaml:5:5: images.by_profile.a: duplicate key (first at line 4)"},
		"mapping": {"api_version: rackstrap.io/policy/v1\nimages: {by_profile: [a]}\n", "p.yaml:2:22: images.by_profile: want a mapping, got a list"},
		"notmap":  {"api_version: rackstrap.io/policy/v1\nrequire: [validation]\n", "p.yaml:2:10: require: want a mapping of keys, got a list"},
		"string":  {"api_version: [rackstrap.io/policy/v1]\n", "p.yaml:1:14: api_version: want a string, got a list"},
		"suggest": {"api_version: rackstrap.io/policy/v1\nrequire: {validaton: true}\n", "p.yaml:2:11: require: unknown key \"validaton\"; did you mean \"validation\"?"},
		"unknown": {"api_version: rackstrap.io/policy/v1\nfrobnicate: 1\n", "p.yaml:2:1: unknown key \"frobnicate\"; known keys: api_version, trusted_signers, require, images, power"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.in), "p.yaml")
			var es Errors
			if err == nil || !errors.As(err, &es) {
				t.Fatalf("Parse(%q) = %v, want Errors", tc.in, err)
			}
			got := strictKnownList.ReplaceAllString(err.Error(), "$1: …")
			if want := strictKnownList.ReplaceAllString(tc.want, "$1: …"); got != want {
				t.Errorf("Parse(%q) error =\n%s\nwant\n%s", tc.in, got, want)
			}
		})
	}
}
