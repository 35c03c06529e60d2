package policy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a policy file, with its position.
type Error struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Key    string `json:"key,omitempty"`
	Msg    string `json:"message"`
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ":")
	}
	fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// checker walks a YAML node tree beside the Go type it decodes into and
// collects unknown keys (with a suggestion), duplicate keys and values of
// the wrong type, each with its position.
type checker struct{ errs Errors }

func (c *checker) add(n *yaml.Node, key, format string, args ...any) {
	c.errs = append(c.errs, &Error{Line: n.Line, Column: n.Column, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string, depth int) {
	if depth > 32 {
		c.add(n, path, "nested too deeply")
		return
	}
	if n.Kind == yaml.AliasNode {
		c.add(n, path, "YAML aliases are not allowed in a policy; write the value out")
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.check(n, t.Elem(), path, depth+1)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.add(n, path, "want a mapping of keys, got %s", describe(n))
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
				c.add(k, key, "duplicate key (first at line %d)", line)
				continue
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", k.Value)
				if s := suggest(k.Value, known); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				} else {
					msg += "; known keys: " + strings.Join(known, ", ")
				}
				c.add(k, "", "%s", msg)
				if path != "" {
					c.errs[len(c.errs)-1].Key = path
				}
				continue
			}
			c.check(v, ft, key, depth+1)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.add(n, path, "want a mapping, got %s", describe(n))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if line, dup := seen[k.Value]; dup {
				c.add(k, join(path, k.Value), "duplicate key (first at line %d)", line)
				continue
			}
			seen[k.Value] = k.Line
			c.check(v, t.Elem(), join(path, k.Value), depth+1)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(n, path, "want a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			c.add(n, path, "want a string, got %s", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			c.add(n, path, "want true or false, got %s", describe(n))
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			c.add(n, path, "want a number, got %s", describe(n))
		} else if _, err := strconv.Atoi(n.Value); err != nil {
			c.add(n, path, "want a whole number, got %q", n.Value)
		}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// suggest returns the known key closest to s, if it is close enough.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
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
