package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Pos is a place in a spec file.
type Pos struct {
	Line, Col int
}

// Error is one problem in a spec, at a place, with the remedy when there is one.
type Error struct {
	File string
	Pos  Pos
	// Path is the key path, e.g. outputs.disk.size or users[1].name.
	Path string
	Msg  string
	// Warning marks a lint finding that does not stop a build.
	Warning bool
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Pos.Line, e.Pos.Col)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Warning {
		b.WriteString("warning: ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one spec, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Pos.Line != es[j].Pos.Line {
			return es[i].Pos.Line < es[j].Pos.Line
		}
		return es[i].Pos.Col < es[j].Pos.Col
	})
	return es
}

// MaxSpecSize bounds what Parse reads, so a hostile file cannot exhaust memory.
const MaxSpecSize = 1 << 20

// Load reads and validates the spec at path. Relative host paths in it are
// resolved against the file's directory.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image spec: %w", err)
	}
	s, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("image spec: %w", err)
	}
	s.Dir = abs
	return s, nil
}

// Parse decodes and validates a spec. file names it in messages only; Dir is
// left empty (relative paths resolve against the working directory).
// Unknown keys, wrong types and invalid values are errors (type Errors) that
// name file, line, column and key.
func Parse(data []byte, file string) (*Spec, error) {
	s, errs := decode(data, file)
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	if errs := s.validate(); len(errs) > 0 {
		return nil, errs.sorted()
	}
	return s, nil
}

func decode(data []byte, file string) (*Spec, Errors) {
	if len(data) > MaxSpecSize {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("spec is %d bytes, more than the %d allowed; an image spec is a short YAML file", len(data), MaxSpecSize)}}
	}
	doc, err := strictyaml.ReadDocument(data)
	if errors.Is(err, strictyaml.ErrEmpty) {
		return nil, Errors{{File: file, Msg: "spec is empty; start from 'rackstrap image lint --example'"}}
	}
	if err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	if extra := doc.Next; extra != nil {
		return nil, Errors{{File: file, Pos: Pos{extra.Line, extra.Column}, Msg: "more than one YAML document; an image spec is one document"}}
	}
	errs, nodes := strict.Check(doc.Root, reflect.TypeFor[Spec](), "")
	if len(errs) > 0 {
		out := make(Errors, len(errs))
		for i, e := range errs {
			out[i] = &Error{File: file, Pos: Pos{e.Line, e.Column}, Path: e.Key, Msg: e.Msg}
		}
		return nil, out
	}
	var s Spec
	if err := doc.Root.Decode(&s); err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	s.File = file
	s.pos = make(map[string]Pos, len(nodes))
	for path, n := range nodes {
		if path != "" {
			s.pos[path] = Pos{n.Line, n.Column}
		}
	}
	return &s, nil
}

// strict is how specs are checked: no anchors or aliases (they can expand
// exponentially, and a spec is short enough without them), a null stands
// for an absent value (the validator decides whether it was required), and
// an unknown key is reported at the enclosing key with a suggestion or the
// keys known there.
var strict = strictyaml.Checker{
	Nulls:           strictyaml.NullAnywhere,
	RefuseAliases:   "YAML anchors and aliases (&, *) are not supported in image specs; write the value out",
	RefuseAnchors:   true,
	UnknownAtParent: true,
	Messages: strictyaml.Messages{
		UnknownKey: func(key string, known []string) string {
			known = sorted(known)
			if s := strictyaml.Suggest(key, known); s != "" {
				return fmt.Sprintf("unknown key %q; did you mean %q?", key, s)
			}
			return fmt.Sprintf("unknown key %q; known keys here: %s", key, strings.Join(known, ", "))
		},
		DuplicateKey: func(first int) string {
			return fmt.Sprintf("key given twice (first on line %d); keep one", first)
		},
		NotMapping: func(known []string, got string) string {
			return fmt.Sprintf("want a mapping of keys (%s), got %s", strings.Join(sorted(known), ", "), got)
		},
	},
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ...") into an *Error.
func yamlError(file string, err error) *Error {
	e := &Error{File: file}
	line, msg := strictyaml.Locate(err)
	e.Msg = msg
	if line > 0 {
		e.Pos = Pos{Line: line, Col: 1}
	}
	return e
}

// structFields maps YAML keys to field types, flattening ",inline" fields.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for _, f := range strictyaml.Fields(t) {
		out[f.Name] = f.Type
	}
	return out
}

// knownKeys lists the YAML keys of struct type t, sorted.
func knownKeys(t reflect.Type) []string {
	var ks []string
	for _, f := range strictyaml.Fields(t) {
		ks = append(ks, f.Name)
	}
	return sorted(ks)
}

func sorted(keys []string) []string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return keys
}

// PosOf returns where the value at a key path was written, if it was.
func (s *Spec) PosOf(path string) (Pos, bool) {
	p, ok := s.pos[path]
	return p, ok
}

func (s *Spec) errAt(path, format string, args ...any) *Error {
	e := &Error{File: s.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	// a value left out is placed where its nearest written parent is
	if pos, ok := strictyaml.Nearest(s.pos, path); ok {
		e.Pos = pos
	}
	return e
}
