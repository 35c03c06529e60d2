package spec

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// strictBase is a valid spec the cases below break.
const strictBase = `api_version: rackstrap.io/image/v1
name: tiny
version: "1"
source_date_epoch: 1700000000
base:
  dir: rootfs
kernel:
  version: 6.1.0-28-amd64
outputs:
  netboot: {}
`

// strictKnownList matches the list of known keys that ends an unknown-key
// message: the types' fields are other code's to change, so it is not
// compared.
var strictKnownList = regexp.MustCompile(`(known (keys|fields)(?: here)?): [^\n]*`)

// The strict checker's messages, one case per kind of problem, as they
// read before the checker moved to internal/strictyaml: they are what users
// and scripts see, so a change to them must be deliberate. (One changed on
// purpose: an unknown key given twice is "given twice" the second time, as
// any other key, where it was "unknown" twice.)
func TestStrictMessages(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"alias":       {strings.Replace(strictBase, "name: tiny", "name: &n tiny", 1) + "hostname: *n\n", "s.yaml:2:7: name: YAML anchors and aliases (&, *) are not supported in image specs; write the value out\ns.yaml:11:11: hostname: YAML anchors and aliases (&, *) are not supported in image specs; write the value out"},
		"anchor":      {strings.Replace(strictBase, "name: tiny", "name: &n tiny", 1), "s.yaml:2:7: name: YAML anchors and aliases (&, *) are not supported in image specs; write the value out"},
		"bool":        {strictBase + "  disk: {size: 1GiB, sparse: maybe}\n", "s.yaml:11:30: outputs.disk.sparse: want true or false, got \"maybe\""},
		"dupnested":   {strings.Replace(strictBase, "  dir: rootfs", "  dir: rootfs\n  dir: again", 1), "s.yaml:7:3: base.dir: key given twice (first on line 6); keep one"},
		"int list":    {strings.Replace(strictBase, "source_date_epoch: 1700000000", "source_date_epoch: [1]", 1), "s.yaml:4:20: source_date_epoch: want a whole number, got a list"},
		"keyword":     {strictBase + "? [a]\n: b\n", "s.yaml:11:3: keys must be plain words"},
		"list":        {strictBase + "users: {name: x}\n", "s.yaml:11:8: users: want a list, got a mapping"},
		"null":        {strictBase + "hostname: ~\nusers:\n", ""},
		"textlist":    {strictBase + "  disk: {size: [1]}\n", "s.yaml:11:16: outputs.disk.size: want a single value, got a list"},
		"unknown dup": {strictBase + "x: 1\nx: 2\n", "s.yaml:11:1: unknown key \"x\"; known keys here: agent, api_version, base, boot, first_boot, gpu_driver, hostname, kernel, layers, name, outputs, source_date_epoch, users, version\ns.yaml:12:1: x: key given twice (first on line 11); keep one"},
		"yaml syntax": {strictBase + "users: [\n", "s.yaml:11:1: did not find expected node content"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse([]byte(tc.in), "s.yaml")
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
				t.Fatalf("Parse(%q) error =\n%s\nwant\n%s", tc.in, got, want)
			}
			if s == nil {
				return
			}
			if p, ok := s.PosOf("base.dir"); !ok || p != (Pos{6, 8}) {
				t.Errorf("PosOf(base.dir) = %v, %v, want 6:8", p, ok)
			}
			if p, ok := s.PosOf(""); ok {
				t.Errorf("PosOf(\"\") = %v, want none", p)
			}
		})
	}
}
