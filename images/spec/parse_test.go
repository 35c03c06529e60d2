package spec

import (
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/internal/strictyaml/strictyamltest"
)

// The strict checker's messages, one case per kind of problem (each breaks
// spec_test.go's minimal spec), as they read before the checker moved to
// internal/strictyaml: they are what users and scripts see, so a change to
// them must be deliberate. (One changed on purpose: an unknown key given
// twice is "given twice" the second time, as any other key, where it was
// "unknown" twice.)
func TestStrictMessages(t *testing.T) {
	t.Parallel()
	strictyamltest.Run[Errors](t, func(t *testing.T, doc []byte) error {
		s, err := Parse(doc, "s.yaml")
		if s != nil {
			if p, ok := s.PosOf("base.dir"); !ok || p != (Pos{6, 8}) {
				t.Errorf("PosOf(base.dir) = %v, %v, want 6:8", p, ok)
			}
			if p, ok := s.PosOf(""); ok {
				t.Errorf("PosOf(\"\") = %v, want none", p)
			}
		}
		return err
	}, map[string]strictyamltest.Case{
		"alias":       {In: strings.Replace(minimal, "name: tiny", "name: &n tiny", 1) + "hostname: *n\n", Want: "s.yaml:2:7: name: YAML anchors and aliases (&, *) are not supported in image specs; write the value out\ns.yaml:11:11: hostname: YAML anchors and aliases (&, *) are not supported in image specs; write the value out"},
		"anchor":      {In: strings.Replace(minimal, "name: tiny", "name: &n tiny", 1), Want: "s.yaml:2:7: name: YAML anchors and aliases (&, *) are not supported in image specs; write the value out"},
		"bool":        {In: minimal + "  disk: {size: 1GiB, sparse: maybe}\n", Want: "s.yaml:11:30: outputs.disk.sparse: want true or false, got \"maybe\""},
		"dupnested":   {In: strings.Replace(minimal, "  dir: rootfs", "  dir: rootfs\n  dir: again", 1), Want: "s.yaml:7:3: base.dir: key given twice (first on line 6); keep one"},
		"int list":    {In: strings.Replace(minimal, "source_date_epoch: 1700000000", "source_date_epoch: [1]", 1), Want: "s.yaml:4:20: source_date_epoch: want a whole number, got a list"},
		"keyword":     {In: minimal + "? [a]\n: b\n", Want: "s.yaml:11:3: keys must be plain words"},
		"list":        {In: minimal + "users: {name: x}\n", Want: "s.yaml:11:8: users: want a list, got a mapping"},
		"null":        {In: minimal + "hostname: ~\nusers:\n", Want: ""},
		"textlist":    {In: minimal + "  disk: {size: [1]}\n", Want: "s.yaml:11:16: outputs.disk.size: want a single value, got a list"},
		"unknown dup": {In: minimal + "x: 1\nx: 2\n", Want: "s.yaml:11:1: unknown key \"x\"; known keys here: agent, api_version, base, boot, first_boot, gpu_driver, hostname, kernel, layers, name, outputs, source_date_epoch, users, version\ns.yaml:12:1: x: key given twice (first on line 11); keep one"},
		"yaml syntax": {In: minimal + "users: [\n", Want: "s.yaml:11:1: did not find expected node content"},
	})
}
