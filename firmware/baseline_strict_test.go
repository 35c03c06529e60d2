package firmware

import (
	"testing"

	"github.com/rackstrap/rackstrap/internal/strictyaml/strictyamltest"
)

// The strict checker's messages, one case per kind of problem, as they
// read before the checker moved to internal/strictyaml: they are what users
// and scripts see, so a change to them must be deliberate.
func TestBaselineStrictMessages(t *testing.T) {
	t.Parallel()
	strictyamltest.Run[ParseErrors](t, func(t *testing.T, doc []byte) error {
		b, err := Parse(doc)
		if b != nil && (len(b.Components) != 1 || b.Components[0].Line != 2) {
			t.Errorf("Parse(%q) = %+v, want one rule at line 2", doc, b)
		}
		return err
	}, map[string]strictyamltest.Case{
		"alias ok":            {In: "name: &n x\ncomponents: [{id: *n, version: '1'}]\n", Want: ""},
		"empty":               {In: "# nothing\n", Want: "1:1: the baseline is empty; it needs a name and components"},
		"notmap":              {In: "- a\n", Want: "1:1: want a mapping of keys, got a list"},
		"null package":        {In: "name: x\ncomponents: [{id: a, version: '1', package: ~}]\n", Want: ""},
		"null string":         {In: "name: ~\ncomponents: [{id: a, version: '1'}]\n", Want: "1:7: name: want a string, got nothing"},
		"second":              {In: "name: x\ncomponents: [{id: a, version: '1'}]\n---\nname: y\n", Want: "3:1: more than one YAML document; a baseline is one document"},
		"second bad":          {In: "name: x\ncomponents: [{id: a, version: '1'}]\n---\nname: [\n", Want: "4:1: did not find expected node content"},
		"struct scalar":       {In: "name: x\ncomponents: [{id: a, version: '1', package: bmc.bin}]\n", Want: "2:45: components[0].package: want a mapping of keys, got \"bmc.bin\""},
		"syntax":              {In: "name: x\ncomponents: [\n", Want: "2:1: did not find expected node content"},
		"unknown suggestless": {In: "name: x\ncomponents: [{id: a, versoin: '1'}]\n", Want: "2:22: components[0].versoin: unknown field \"versoin\"; known fields: id, name, version, minimum, package"},
	})
}
