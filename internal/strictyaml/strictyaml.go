// Package strictyaml reads YAML the strict way Rackstrap's file formats need
// (hardware profiles, image specs, firmware baselines, site policies).
//
// yaml.v3 ignores unknown keys and stops at the first value of the wrong
// kind. A Checker instead walks the parsed node tree beside the Go type it
// will be decoded into and reports every unknown key (with a "did you mean"
// suggestion), duplicate key and wrongly typed value at once, each as an
// *Error naming line, column and key path. A tree that passes decodes
// without error.
//
// The formats word some messages differently and their texts are pinned by
// golden tests, so a Checker's wording can be set per format (Messages);
// the walk, the field rules, the suggestions and the error type are shared.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a YAML file, at a position.
type Error struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	// Key is the dotted key path of the value: "gpus.pcie.width",
	// "nics[1].model"; empty for the whole document.
	Key string `json:"key,omitempty"`
	Msg string `json:"message"`
}

// Error reads "file:line:column: key: message", leaving out the file and
// the key when they are empty.
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

// Errors is every problem found in one file, one per line when printed.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// At returns an *Error at n's position, with no file and no key.
func At(n *yaml.Node, format string, args ...any) *Error {
	return &Error{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// Join appends a key to a dotted key path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Describe names what a node holds, for "want X, got Y" messages: "a
// mapping", "a list", "nothing" (null) or the quoted scalar.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// ErrEmpty is what ReadDocument returns for data without a YAML document
// (nothing, or only comments).
var ErrEmpty = errors.New("no YAML document")

// Document is the first YAML document of a file.
type Document struct {
	// Node is the document node as yaml.v3 parsed it.
	Node *yaml.Node
	// Root is the document's content (its top mapping, usually), or Node
	// when the document does not hold exactly one node.
	Root *yaml.Node
	// Next is the start of a second document when the data holds more than
	// one; NextErr is the syntax error met reading it, if any.
	Next    *yaml.Node
	NextErr error
}

// ReadDocument parses the first YAML document of data and looks for a
// second one. With no document it returns ErrEmpty; a syntax error is
// returned as yaml.v3 reported it (Locate splits out its line).
func ReadDocument(data []byte) (*Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrEmpty
		}
		return nil, err
	}
	d := &Document{Node: &doc, Root: &doc}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		d.Root = doc.Content[0]
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.Next = &next
	case !errors.Is(err, io.EOF):
		d.NextErr = err
	}
	return d, nil
}

// Locate splits a yaml.v3 error into the line it names (0 when none) and
// the message without its "yaml: " and "line N: " prefixes. For a decode
// error (*yaml.TypeError) it takes the first problem.
func Locate(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = strings.TrimPrefix(te.Errors[0], "yaml: ")
	}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ":"); ok {
			if l, err := strconv.Atoi(n); err == nil && l > 0 {
				return l, strings.TrimSpace(tail)
			}
		}
	}
	return 0, msg
}

// Nearest returns what m holds for key path path or, failing that, for the
// nearest path enclosing it ("a.b[2].c", then "a.b[2]", "a.b", "a", ""):
// a message about a value left out points at where it belongs. m is
// usually the nodes map of Check, or positions taken from it.
func Nearest[V any](m map[string]V, path string) (v V, ok bool) {
	for {
		if v, ok = m[path]; ok || path == "" {
			return v, ok
		}
		if i := strings.LastIndexAny(path, ".["); i >= 0 {
			path = path[:i]
		} else {
			path = ""
		}
	}
}

// Field is one key of a struct as YAML sees it.
type Field struct {
	Name string
	Type reflect.Type
}

// Fields lists the YAML keys of struct type t in declaration order, as
// yaml.v3 decodes them: the name from the `yaml` tag (the lower-cased field
// name without one), fields tagged "-" and unexported fields left out,
// ",inline" structs flattened in place.
func Fields(t reflect.Type) []Field {
	var out []Field
	seen := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, Field{Name: name, Type: f.Type})
			}
		}
	}
	walk(t)
	return out
}
