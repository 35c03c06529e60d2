package policy

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
		_, err := Parse(doc, "p.yaml")
		return err
	}, map[string]strictyamltest.Case{
		"alias":   {In: "api_version: rackstrap.io/policy/v1\npower: {timezone: &z UTC}\nimages: {default: [*z]}\n", Want: "p.yaml:3:20: images.default[0]: YAML aliases are not allowed in a policy; write the value out"},
		"bool":    {In: "api_version: rackstrap.io/policy/v1\nrequire: {firmware_compliance: sometimes}\n", Want: "p.yaml:2:32: require.firmware_compliance: want true or false, got \"sometimes\""},
		"dupmap":  {In: "api_version: rackstrap.io/policy/v1\nimages:\n  by_profile:\n    a: ['x:1']\n    a: ['y:1']\n", Want: "p.yaml:5:5: images.by_profile.a: duplicate key (first at line 4)"},
		"mapping": {In: "api_version: rackstrap.io/policy/v1\nimages: {by_profile: [a]}\n", Want: "p.yaml:2:22: images.by_profile: want a mapping, got a list"},
		"notmap":  {In: "api_version: rackstrap.io/policy/v1\nrequire: [validation]\n", Want: "p.yaml:2:10: require: want a mapping of keys, got a list"},
		"string":  {In: "api_version: [rackstrap.io/policy/v1]\n", Want: "p.yaml:1:14: api_version: want a string, got a list"},
		"suggest": {In: "api_version: rackstrap.io/policy/v1\nrequire: {validaton: true}\n", Want: "p.yaml:2:11: require: unknown key \"validaton\"; did you mean \"validation\"?"},
		"unknown": {In: "api_version: rackstrap.io/policy/v1\nfrobnicate: 1\n", Want: "p.yaml:2:1: unknown key \"frobnicate\"; known keys: api_version, trusted_signers, require, images, power"},
	})
}
