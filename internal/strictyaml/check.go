package strictyaml

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// Nulls says where a null value (null, ~ or nothing after the colon) is
// accepted without a check.
type Nulls int

const (
	// NullNowhere checks a null like any other value: a struct wants a
	// mapping, a string a string ("want a string, got nothing"); a type
	// with its own UnmarshalYAML decides for itself.
	NullNowhere Nulls = iota
	// NullForPointers accepts a null where the type is a pointer (the value
	// is optional and stays nil), and checks it elsewhere.
	NullForPointers
	// NullAnywhere accepts a null for every type, leaving it to the
	// format's own validation to say whether the value was required.
	NullAnywhere
)

// DefaultMaxDepth bounds how deeply a Checker follows nested values when
// Checker.MaxDepth is 0.
const DefaultMaxDepth = 64

// Messages words the errors that the formats word differently. A nil
// field takes the default shown.
type Messages struct {
	// UnknownKey words the error for a key the type lacks; known lists the
	// keys it has, in declaration order. Default: UnknownField.
	UnknownKey func(key string, known []string) string
	// DuplicateKey words the error for a key given a second time in one
	// mapping. Default: "duplicate key (first at line 3)".
	DuplicateKey func(firstLine int) string
	// NotMapping words the error for a value that should be a mapping of
	// the known keys; got is Describe's name for what it is. Default:
	// "want a mapping of keys, got a list".
	NotMapping func(known []string, got string) string
}

// Checker checks a YAML node tree against the Go type it will be decoded
// into. The zero Checker follows aliases, checks nulls like other values
// and words errors as Messages' defaults. A Checker holds no state; one
// value can serve any number of goroutines.
type Checker struct {
	Nulls Nulls
	// RefuseAliases, when not empty, is the error for an alias (*name):
	// the value is refused instead of being checked where the anchor is.
	RefuseAliases string
	// RefuseAnchors refuses anchors (&name) too, with the same message.
	RefuseAnchors bool
	// UnknownAtParent reports an unknown key at the path of the mapping
	// that holds it ("base") rather than at its own ("base.dirr").
	UnknownAtParent bool
	// MaxDepth bounds nesting (DefaultMaxDepth when 0); deeper values are
	// an error.
	MaxDepth int
	Messages Messages
}

// Check walks n, the value at key path path ("" for the document root),
// against type t. It returns every unknown or duplicate key and every
// value of the wrong kind, in the order met (document order, but for
// aliases), and the node each key path's value was read from, for the
// positions of later messages. When errs is empty, n.Decode into a t
// cannot fail.
//
// Types with their own UnmarshalYAML are handed the node and their error
// reported at its path (an *Error they return keeps its position and has
// its Key appended to the path); types with UnmarshalText must be a single
// scalar that the method accepts.
func (c *Checker) Check(n *yaml.Node, t reflect.Type, path string) (errs Errors, nodes map[string]*yaml.Node) {
	w := &walk{Checker: c, nodes: map[string]*yaml.Node{}}
	w.max = c.MaxDepth
	if w.max <= 0 {
		w.max = DefaultMaxDepth
	}
	w.check(n, t, path, 1, false)
	return w.errs, w.nodes
}

type walk struct {
	*Checker
	max   int
	errs  Errors
	nodes map[string]*yaml.Node
	// expanded counts the values checked a second time through an alias;
	// past maxExpanded the walk stops (aliases of aliases grow
	// exponentially: the "billion laughs").
	expanded int
}

const maxExpanded = 1 << 16

func (w *walk) add(n *yaml.Node, key, format string, args ...any) {
	e := At(n, format, args...)
	e.Key = key
	w.errs = append(w.errs, e)
}

var (
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (w *walk) check(n *yaml.Node, t reflect.Type, path string, depth int, aliased bool) {
	if aliased {
		if w.expanded++; w.expanded == maxExpanded {
			w.add(n, path, "aliases expand the document to more than %d values; write it out without aliases", maxExpanded)
		}
		if w.expanded >= maxExpanded {
			return
		}
	}
	if depth > w.max {
		w.add(n, path, "nested more than %d levels deep; simplify the file", w.max)
		return
	}
	if w.RefuseAliases != "" && (n.Kind == yaml.AliasNode || (w.RefuseAnchors && n.Anchor != "")) {
		w.add(n, path, "%s", w.RefuseAliases)
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.add(n, path, "alias *%s points to nothing; define the anchor first", n.Value)
			return
		}
		// An anchor never sits on an alias, so one step reaches the value.
		n, aliased = n.Alias, true
	}
	w.nodes[path] = n
	if isNull(n) && (w.Nulls == NullAnywhere || (w.Nulls == NullForPointers && t.Kind() == reflect.Pointer)) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) {
		w.unmarshal(n, t, path)
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "want a single value, got %s", Describe(n))
			return
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			w.add(n, path, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		w.mapping(n, t, path, depth, aliased)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "want a mapping, got %s", Describe(n))
			return
		}
		w.entries(n, path, func(_, v *yaml.Node, key string) {
			w.check(v, t.Elem(), key, depth+1, aliased)
		})
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "want a list, got %s", Describe(n))
			return
		}
		for i, item := range n.Content {
			w.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1, aliased)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			w.add(n, path, "want a string, got %s", Describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.add(n, path, "want true or false, got %s", Describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			w.add(n, path, "want a whole number, got %s", Describe(n))
		} else if n.Decode(reflect.New(t).Interface()) != nil {
			w.add(n, path, "want a whole number from %s, got %s", intRange(t), Describe(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(reflect.New(t).Interface()) != nil {
			w.add(n, path, "want a number, got %s", Describe(n))
		}
	default:
		w.add(n, path, "internal: no strict check for %s; report this as a bug", t)
	}
}

// mapping checks a mapping against struct type t.
func (w *walk) mapping(n *yaml.Node, t reflect.Type, path string, depth int, aliased bool) {
	fields := Fields(t)
	known := make([]string, len(fields))
	types := make(map[string]reflect.Type, len(fields))
	for i, f := range fields {
		known[i] = f.Name
		types[f.Name] = f.Type
	}
	if n.Kind != yaml.MappingNode {
		if m := w.Messages.NotMapping; m != nil {
			w.add(n, path, "%s", m(known, Describe(n)))
		} else {
			w.add(n, path, "want a mapping of keys, got %s", Describe(n))
		}
		return
	}
	w.entries(n, path, func(k, v *yaml.Node, key string) {
		ft, ok := types[k.Value]
		if !ok {
			msg := UnknownField
			if w.Messages.UnknownKey != nil {
				msg = w.Messages.UnknownKey
			}
			at := key
			if w.UnknownAtParent {
				at = path
			}
			w.add(k, at, "%s", msg(k.Value, known))
			return
		}
		w.check(v, ft, key, depth+1, aliased)
	})
}

// entries calls each for every key of mapping n given once, with the
// key's path; keys that are not scalars and keys given again are errors.
func (w *walk) entries(n *yaml.Node, path string, each func(k, v *yaml.Node, key string)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.add(k, path, "keys must be plain words")
			continue
		}
		key := Join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			if m := w.Messages.DuplicateKey; m != nil {
				w.add(k, key, "%s", m(first))
			} else {
				w.add(k, key, "duplicate key (first at line %d)", first)
			}
			continue
		}
		seen[k.Value] = k.Line
		each(k, v, key)
	}
}

// unmarshal hands n to the type's own UnmarshalYAML.
func (w *walk) unmarshal(n *yaml.Node, t reflect.Type, path string) {
	err := reflect.New(t).Interface().(yaml.Unmarshaler).UnmarshalYAML(n)
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		e = At(n, "%v", err)
	}
	if e.Key == "" {
		e.Key = path
	} else {
		e.Key = Join(path, e.Key)
	}
	w.errs = append(w.errs, e)
}

// intRange names the values an integer type holds: "0 to 255".
func intRange(t reflect.Type) string {
	bits := t.Bits()
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
		return fmt.Sprintf("0 to %d", uint64(1)<<bits-1)
	}
	return fmt.Sprintf("%d to %d", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
}
