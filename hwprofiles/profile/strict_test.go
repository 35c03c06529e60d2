package profile

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
		"alias bad":     {"name: x\nmatch: {vendor: &v Dell}\nnics: *v\n", "f.yaml:2:17: nics: want a list, got \"Dell\""},
		"alias ok":      {"name: x\nmatch: {vendor: &v Dell}\ncpu: {model: *v}\n", ""},
		"bool":          {"name: x\nfirmware:\n  components:\n    - {id: a, version: {min: '1'}, required: maybe}\n", "f.yaml:4:46: firmware.components[0].required: want true or false, got \"maybe\""},
		"dup nested":    {"name: x\ncpu:\n  model: a\n  model: b\n", "f.yaml:4:3: cpu.model: duplicate key (first at line 3)"},
		"map list":      {"name: x\nburnin:\n  - name: fio\n    args: [a]\n", "f.yaml:4:11: burnin[0].args: want a mapping, got a list"},
		"null string":   {"name: ~\n", "f.yaml:1:7: name: want a string, got nothing"},
		"null struct":   {"name: x\ncpu: ~\n", "f.yaml:2:6: cpu: want a mapping of keys, got nothing"},
		"string list":   {"name: [x]\n", "f.yaml:1:7: name: want a string, got a list"},
		"unknown plain": {"name: x\nfrobnicate: 1\n", "f.yaml:2:1: frobnicate: unknown field \"frobnicate\"; known fields: name, description, extends, match, cpu, memory, disks, nics, gpus, firmware, burnin"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("f.yaml", []byte(tc.in))
			got := ""
			if err != nil {
				got = err.Error()
				var es Errors
				if !errors.As(err, &es) {
					t.Errorf("Parse(%q) error is %T, want Errors", tc.in, err)
				}
			}
			got = strictKnownList.ReplaceAllString(got, "$1: …")
			if want := strictKnownList.ReplaceAllString(tc.want, "$1: …"); got != want {
				t.Errorf("Parse(%q) error =\n%s\nwant\n%s", tc.in, got, want)
			}
		})
	}
}
