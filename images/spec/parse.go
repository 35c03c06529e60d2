package spec

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
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
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: file, Msg: "spec is empty; start from 'rackstrap image lint --example'"}}
		}
		return nil, Errors{yamlError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{File: file, Pos: Pos{extra.Line, extra.Column}, Msg: "more than one YAML document; an image spec is one document"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	w := &walker{file: file, pos: map[string]Pos{}, depth: 0}
	w.check(root, reflect.TypeOf(Spec{}), "")
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	var s Spec
	if err := root.Decode(&s); err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	s.File = file
	s.pos = w.pos
	return &s, nil
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ...") into an *Error.
func yamlError(file string, err error) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	e := &Error{File: file, Msg: msg}
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		e.Pos = Pos{Line: line, Col: 1}
		e.Msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		e.Msg = strings.TrimPrefix(te.Errors[0], "yaml: ")
		if n, _ := fmt.Sscanf(e.Msg, "line %d:", &line); n == 1 {
			e.Pos = Pos{Line: line, Col: 1}
			e.Msg = strings.TrimSpace(e.Msg[strings.Index(e.Msg, ":")+1:])
		}
	}
	if e.Pos.Line == 0 {
		e.Pos = Pos{}
	}
	return e
}

// walker checks a YAML node tree against a Go type before decoding, so every
// unknown key and wrong type is reported with its position, not only the first.
type walker struct {
	file  string
	errs  Errors
	pos   map[string]Pos
	depth int
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

func (w *walker) errorf(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Pos: Pos{n.Line, n.Column}, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (w *walker) check(n *yaml.Node, t reflect.Type, path string) {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > 64 {
		w.errorf(n, path, "nesting is too deep")
		return
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		// Aliases can expand exponentially; a spec is short enough without them.
		w.errorf(n, path, "YAML anchors and aliases (&, *) are not supported in image specs; write the value out")
		return
	}
	if path != "" {
		w.pos[path] = Pos{n.Line, n.Column}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent value: the validator decides whether it was required
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			w.errorf(n, path, "want a single value, got %s", kindName(n))
			return
		}
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := v.UnmarshalText([]byte(n.Value)); err != nil {
			w.errorf(n, path, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.errorf(n, path, "want a mapping of keys (%s), got %s", strings.Join(knownKeys(t), ", "), kindName(n))
			return
		}
		fields := structFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			sub := join(path, key)
			if k.Kind != yaml.ScalarNode {
				w.errorf(k, path, "keys must be plain words")
				continue
			}
			ft, ok := fields[key]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", key)
				if s := closest(key, knownKeys(t)); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				} else {
					msg += fmt.Sprintf("; known keys here: %s", strings.Join(knownKeys(t), ", "))
				}
				w.errs = append(w.errs, &Error{File: w.file, Pos: Pos{k.Line, k.Column}, Path: path, Msg: msg})
				continue
			}
			if line, dup := seen[key]; dup {
				w.errorf(k, sub, "key given twice (first on line %d); keep one", line)
				continue
			}
			seen[key] = k.Line
			w.pos[sub] = Pos{v.Line, v.Column}
			w.check(v, ft, sub)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.errorf(n, path, "want a list, got %s", kindName(n))
			return
		}
		for i, c := range n.Content {
			w.check(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.errorf(n, path, "want a string, got %s", kindName(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.errorf(n, path, "want true or false, got %s", kindName(n))
		}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			w.errorf(n, path, "want a whole number, got %s", kindName(n))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structFields maps YAML keys to field types, flattening ",inline" fields.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			for k, v := range structFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func knownKeys(t reflect.Type) []string {
	var ks []string
	for k := range structFields(t) {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// closest returns the known key nearest to key when it is a likely typo.
func closest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		// kernelVersion vs kernel_version, sshKeys vs ssh_authorized_keys
		norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
		for _, k := range known {
			if strings.ReplaceAll(k, "_", "") == strings.ReplaceAll(norm, "_", "") {
				return k
			}
		}
	}
	return best
}

func editDistance(a, b string) int {
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
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// PosOf returns where the value at a key path was written, if it was.
func (s *Spec) PosOf(path string) (Pos, bool) {
	p, ok := s.pos[path]
	return p, ok
}

func (s *Spec) errAt(path, format string, args ...any) *Error {
	e := &Error{File: s.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	// fall back to the nearest written parent
	for p := path; p != ""; {
		if pos, ok := s.pos[p]; ok {
			e.Pos = pos
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return e
}
