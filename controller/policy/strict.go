package policy

import (
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Error is one problem in a policy file, with its position.
type Error = strictyaml.Error

// Errors is every problem found in one file.
type Errors = strictyaml.Errors

// strict is how policies are checked: no aliases, a null stands for an
// absent value, and an unknown key is reported at the enclosing key with a
// suggestion or the list of known keys.
var strict = strictyaml.Checker{
	Nulls:           strictyaml.NullAnywhere,
	RefuseAliases:   "YAML aliases are not allowed in a policy; write the value out",
	UnknownAtParent: true,
	MaxDepth:        32,
	Messages:        strictyaml.Messages{UnknownKey: strictyaml.UnknownKey},
}

// checker collects unknown keys (with a suggestion), duplicate keys and
// values of the wrong type, then the semantic problems, each with its
// position.
type checker struct{ errs Errors }

func (c *checker) add(n *yaml.Node, key, format string, args ...any) {
	e := strictyaml.At(n, format, args...)
	e.Key = key
	c.errs = append(c.errs, e)
}

// check walks n, at key path path and depth levels below the document.
func (c *checker) check(n *yaml.Node, t reflect.Type, path string, depth int) {
	s := strict
	s.MaxDepth -= depth
	errs, _ := s.Check(n, t, path)
	c.errs = append(c.errs, errs...)
}
