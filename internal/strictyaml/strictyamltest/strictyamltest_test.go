package strictyamltest_test

import (
	"testing"

	"github.com/rackstrap/rackstrap/internal/strictyaml"
	"github.com/rackstrap/rackstrap/internal/strictyaml/strictyamltest"
)

func TestRun(t *testing.T) {
	t.Parallel()
	parse := func(_ *testing.T, doc []byte) error {
		if string(doc) == "ok" {
			return nil
		}
		return strictyaml.Errors{{Line: 1, Column: 1, Msg: `unknown key "x"; known keys here: a, b, c`}}
	}
	strictyamltest.Run[strictyaml.Errors](t, parse, map[string]strictyamltest.Case{
		"accepted": {In: "ok"},
		// The known keys differ from the message's: they are not compared.
		"known keys not compared": {In: "x: 1", Want: `1:1: unknown key "x"; known keys here: a, b`},
	})
}
