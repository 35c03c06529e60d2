package firmware

import (
	"errors"
	"testing"
)

// The strict checker's messages, one case per kind of problem, as they
// read before the checker moved to internal/strictyaml: they are what users
// and scripts see, so a change to them must be deliberate.
func TestBaselineStrictMessages(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"alias ok":            {"name: &n x\ncomponents: [{id: *n, version: '1'}]\n", ""},
		"empty":               {"# nothing\n", "1:1: the baseline is empty; it needs a name and components"},
		"notmap":              {"- a\n", "1:1: want a mapping of keys, got a list"},
		"null package":        {"name: x\ncomponents: [{id: a, version: '1', package: ~}]\n", ""},
		"null string":         {"name: ~\ncomponents: [{id: a, version: '1'}]\n", "1:7: name: want a string, got nothing"},
		"second":              {"name: x\ncomponents: [{id: a, version: '1'}]\n---\nname: y\n", "3:1: more than one YAML document; a baseline is one document"},
		"second bad":          {"name: x\ncomponents: [{id: a, version: '1'}]\n---\nname: [\n", "4:1: did not find expected node content"},
		"struct scalar":       {"name: x\ncomponents: [{id: a, version: '1', package: bmc.bin}]\n", "2:45: components[0].package: want a mapping of keys, got \"bmc.bin\""},
		"syntax":              {"name: x\ncomponents: [\n", "2:1: did not find expected node content"},
		"unknown suggestless": {"name: x\ncomponents: [{id: a, versoin: '1'}]\n", "2:22: components[0].versoin: unknown field \"versoin\"; known fields: id, name, version, minimum, package"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := Parse([]byte(tc.in))
			got := ""
			if err != nil {
				got = err.Error()
				var pes ParseErrors
				if !errors.As(err, &pes) {
					t.Errorf("Parse(%q) error is %T, want ParseErrors", tc.in, err)
				}
			}
			if got != tc.want {
				t.Fatalf("Parse(%q) error =\n%s\nwant\n%s", tc.in, got, tc.want)
			}
			if b != nil && (len(b.Components) != 1 || b.Components[0].Line != 2) {
				t.Errorf("Parse(%q) = %+v, want one rule at line 2", tc.in, b)
			}
		})
	}
}
