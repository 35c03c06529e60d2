package profile

import (
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Error is one problem in a profile file, with its position; Key is the
// dotted path of the value: "gpus.pcie.width", "nics[1].model".
type Error = strictyaml.Error

// Errors is every problem found in one file, in order of position.
type Errors = strictyaml.Errors

func nodeErr(n *yaml.Node, format string, args ...any) *Error {
	return strictyaml.At(n, format, args...)
}

var reflectProfile = reflect.TypeFor[Profile]()

// strict is how profiles are checked: aliases are followed, a null is
// checked like any other value (the range types decide for themselves),
// and an unknown key is reported at its own path with the known fields.
var strict = strictyaml.Checker{}

// checker collects every unknown key, duplicate key and wrongly typed
// value with its position, so that node.Decode afterwards cannot fail.
type checker struct{ errs Errors }

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	errs, _ := strict.Check(n, t, path)
	c.errs = append(c.errs, errs...)
}
