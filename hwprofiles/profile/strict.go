package profile

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a profile file, with its position.
type Error struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Key    string `json:"key,omitempty"` // dotted path: "gpus.pcie.width", "nics[1].model"
	Msg    string `json:"message"`
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in order of position.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

func nodeErr(n *yaml.Node, format string, args ...any) *Error {
	return &Error{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// checker walks a YAML node tree alongside the Go type it will decode into,
// collecting every unknown key, duplicate key and wrongly typed value with
// its position, so that node.Decode afterwards cannot fail.
type checker struct{ errs Errors }

func (c *checker) add(e *Error, path string) {
	e.Key = path
	c.errs = append(c.errs, e)
}

var reflectProfile = reflect.TypeFor[Profile]()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		v := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := v.UnmarshalYAML(n); err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				pe = nodeErr(n, "%v", err)
			}
			if pe.Key == "" {
				pe.Key = path
			} else {
				pe.Key = join(path, pe.Key)
			}
			c.errs = append(c.errs, pe)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.check(n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.add(nodeErr(n, "want a mapping of keys, got %s", describe(n)), path)
			return
		}
		fields := map[string]reflect.Type{}
		var known []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			known = append(known, name)
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				c.add(nodeErr(k, "duplicate key (first at line %d)", line), key)
				continue
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				c.add(nodeErr(k, "unknown field %q%s; known fields: %s", k.Value, suggest(k.Value, known), strings.Join(known, ", ")), key)
				continue
			}
			c.check(v, ft, key)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(nodeErr(n, "want a list, got %s", describe(n)), path)
			return
		}
		for i, e := range n.Content {
			c.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.add(nodeErr(n, "want a mapping, got %s", describe(n)), path)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			c.add(nodeErr(n, "want a string, got %s", describe(n)), path)
		}
	case reflect.Int, reflect.Int64:
		if n.Kind != yaml.ScalarNode {
			c.add(nodeErr(n, "want a number, got %s", describe(n)), path)
		} else if _, err := strconv.Atoi(n.Value); err != nil {
			c.add(nodeErr(n, "%q is not a whole number", n.Value), path)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			c.add(nodeErr(n, "want true or false, got %s", describe(n)), path)
		}
	default:
		c.add(nodeErr(n, "internal: no strict check for %s", t), path)
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// suggest returns ` (did you mean "x"?)` for a near-miss key.
func suggest(key string, known []string) string {
	best, bestD, bestP := "", 3, 0
	for _, k := range known {
		d := distance(strings.ToLower(key), strings.ToLower(k))
		p := commonPrefix(strings.ToLower(key), strings.ToLower(k))
		if d < bestD || (d == bestD && best != "" && p > bestP) {
			best, bestD, bestP = k, d, p
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// distance is the Levenshtein distance, capped work for long keys.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
