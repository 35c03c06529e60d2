package profile

import (
	"testing"

	"github.com/rackstrap/rackstrap/internal/strictyaml/strictyamltest"
)

// The strict checker's messages, one case per kind of problem, as they
// read before the checker moved to internal/strictyaml: they are what users
// and scripts see, so a change to them must be deliberate.
func TestStrictMessages(t *testing.T) {
	t.Parallel()
	strictyamltest.Run[Errors](t, func(t *testing.T, doc []byte) error {
		_, err := Parse("f.yaml", doc)
		return err
	}, map[string]strictyamltest.Case{
		"alias bad":     {In: "name: x\nmatch: {vendor: &v Dell}\nnics: *v\n", Want: "f.yaml:2:17: nics: want a list, got \"Dell\""},
		"alias ok":      {In: "name: x\nmatch: {vendor: &v Dell}\ncpu: {model: *v}\n", Want: ""},
		"bool":          {In: "name: x\nfirmware:\n  components:\n    - {id: a, version: {min: '1'}, required: maybe}\n", Want: "f.yaml:4:46: firmware.components[0].required: want true or false, got \"maybe\""},
		"dup nested":    {In: "name: x\ncpu:\n  model: a\n  model: b\n", Want: "f.yaml:4:3: cpu.model: duplicate key (first at line 3)"},
		"map list":      {In: "name: x\nburnin:\n  - name: fio\n    args: [a]\n", Want: "f.yaml:4:11: burnin[0].args: want a mapping, got a list"},
		"null string":   {In: "name: ~\n", Want: "f.yaml:1:7: name: want a string, got nothing"},
		"null struct":   {In: "name: x\ncpu: ~\n", Want: "f.yaml:2:6: cpu: want a mapping of keys, got nothing"},
		"string list":   {In: "name: [x]\n", Want: "f.yaml:1:7: name: want a string, got a list"},
		"unknown plain": {In: "name: x\nfrobnicate: 1\n", Want: "f.yaml:2:1: frobnicate: unknown field \"frobnicate\"; known fields: name, description, extends, match, cpu, memory, disks, nics, gpus, firmware, burnin"},
	})
}
