package profile

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/hwprofiles/version"
)

// Patterns is a "one of" list of case-insensitive glob patterns (`*` any
// run of characters, `?` one character; nothing else is special, so
// "MT2910 Family [ConnectX-7]" matches itself). YAML: a string or a list of
// strings.
type Patterns []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (p *Patterns) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "" {
			return nodeErr(n, "empty pattern; leave the key out to match anything")
		}
		*p = Patterns{n.Value}
		return nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return nodeErr(n, "empty list of patterns; leave the key out to match anything")
		}
		out := make(Patterns, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || c.Value == "" {
				return nodeErr(c, "want a non-empty string pattern")
			}
			out = append(out, c.Value)
		}
		*p = out
		return nil
	}
	return nodeErr(n, "want a pattern or a list of patterns")
}

// Match reports whether s matches one of the patterns. An empty Patterns
// matches anything.
func (p Patterns) Match(s string) bool {
	if len(p) == 0 {
		return true
	}
	s = strings.ToLower(strings.TrimSpace(s))
	for _, pat := range p {
		if glob(strings.ToLower(pat), s) {
			return true
		}
	}
	return false
}

func (p Patterns) String() string {
	if len(p) == 1 {
		return p[0]
	}
	return "one of " + strings.Join(p, ", ")
}

// glob matches s against pattern with `*` and `?` (iterative, linear
// backtracking: no exponential blow-up on hostile patterns).
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// bound is the shared shape of the numeric constraints: an exact value, a
// range (min and/or max) or a "one of" list.
type bound struct {
	Min, Max *float64
	OneOf    []float64
}

func (b bound) ok(v float64) bool {
	if len(b.OneOf) > 0 {
		for _, o := range b.OneOf {
			if v == o {
				return true
			}
		}
		return false
	}
	if b.Min != nil && v < *b.Min {
		return false
	}
	if b.Max != nil && v > *b.Max {
		return false
	}
	return true
}

func (b bound) format(f func(float64) string) string {
	switch {
	case len(b.OneOf) > 0:
		parts := make([]string, len(b.OneOf))
		for i, o := range b.OneOf {
			parts[i] = f(o)
		}
		if len(parts) == 1 {
			return parts[0]
		}
		return "one of " + strings.Join(parts, ", ")
	case b.Min != nil && b.Max != nil && *b.Min == *b.Max:
		return f(*b.Min)
	case b.Min != nil && b.Max != nil:
		return f(*b.Min) + " to " + f(*b.Max)
	case b.Min != nil:
		return "at least " + f(*b.Min)
	case b.Max != nil:
		return "at most " + f(*b.Max)
	}
	return "any"
}

// decodeRange reads the shared YAML shape of constraints: a scalar (exact),
// or a mapping with min and/or max, or with oneOf. val reads one value;
// greater orders two.
func decodeRange[T any](n *yaml.Node, val func(*yaml.Node) (T, error), greater func(a, b T) bool, inverted string) (min, max *T, oneOf []T, err error) {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := val(n)
		if err != nil {
			return nil, nil, nil, err
		}
		return &v, &v, nil, nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			switch k.Value {
			case "min", "max":
				v, err := val(c)
				if err != nil {
					return nil, nil, nil, err
				}
				if k.Value == "min" {
					min = &v
				} else {
					max = &v
				}
			case "oneOf":
				if c.Kind != yaml.SequenceNode || len(c.Content) == 0 {
					return nil, nil, nil, nodeErr(c, "oneOf wants a non-empty list")
				}
				for _, e := range c.Content {
					v, err := val(e)
					if err != nil {
						return nil, nil, nil, err
					}
					oneOf = append(oneOf, v)
				}
			default:
				return nil, nil, nil, nodeErr(k, "unknown field %q; known: min, max, oneOf", k.Value)
			}
		}
		switch {
		case len(oneOf) > 0 && (min != nil || max != nil):
			return nil, nil, nil, nodeErr(n, "use either oneOf or min/max, not both")
		case len(oneOf) == 0 && min == nil && max == nil:
			return nil, nil, nil, nodeErr(n, "want min, max or oneOf")
		case min != nil && max != nil && greater(*min, *max):
			return nil, nil, nil, nodeErr(n, "%s", inverted)
		}
		return min, max, oneOf, nil
	}
	return nil, nil, nil, nodeErr(n, "want a value, or a mapping with min/max or oneOf")
}

// decodeBound reads a numeric constraint.
func decodeBound(n *yaml.Node, parse func(string) (float64, error)) (bound, error) {
	val := func(c *yaml.Node) (float64, error) {
		if c.Kind != yaml.ScalarNode {
			return 0, nodeErr(c, "want a value")
		}
		v, err := parse(c.Value)
		if err != nil {
			return 0, nodeErr(c, "%s", err)
		}
		return v, nil
	}
	min, max, oneOf, err := decodeRange(n, val, func(a, b float64) bool { return a > b }, "min is greater than max")
	return bound{Min: min, Max: max, OneOf: oneOf}, err
}

// IntRange constrains a count or a plain number: `8`, `{min: 2}`,
// `{min: 48, max: 64}`, `{oneOf: [48, 56]}`.
type IntRange struct{ b bound }

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *IntRange) UnmarshalYAML(n *yaml.Node) error {
	b, err := decodeBound(n, parseInt)
	r.b = b
	return err
}

// OK reports whether v satisfies the constraint.
func (r IntRange) OK(v int) bool { return r.b.ok(float64(v)) }

// Exact returns the value when the constraint is one exact number.
func (r IntRange) Exact() (int, bool) {
	if r.b.Min != nil && r.b.Max != nil && *r.b.Min == *r.b.Max {
		return int(*r.b.Min), true
	}
	if len(r.b.OneOf) == 1 {
		return int(r.b.OneOf[0]), true
	}
	return 0, false
}

// Min returns the lower bound, if any.
func (r IntRange) Min() (int, bool) {
	if r.b.Min != nil {
		return int(*r.b.Min), true
	}
	return 0, false
}

func (r IntRange) String() string {
	return r.b.format(func(v float64) string { return strconv.FormatInt(int64(v), 10) })
}

func parseInt(s string) (float64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a non-negative whole number", s)
	}
	return float64(v), nil
}

// ByteRange constrains a size: `80GB`, `{min: 1.92TB}`, `{oneOf: [1TiB, 2TiB]}`.
// Units: B, kB/KB, MB, GB, TB, PB (powers of 1000) and KiB, MiB, GiB, TiB,
// PiB (powers of 1024); a bare number is bytes.
type ByteRange struct{ b bound }

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *ByteRange) UnmarshalYAML(n *yaml.Node) error {
	b, err := decodeBound(n, ParseSize)
	r.b = b
	return err
}

// OK reports whether v (bytes) satisfies the constraint.
func (r ByteRange) OK(v uint64) bool { return r.b.ok(float64(v)) }

func (r ByteRange) String() string {
	return r.b.format(func(v float64) string { return FormatSize(uint64(v)) })
}

var units = []struct {
	name string
	mult float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
	{"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"B", 1},
}

// ParseSize reads a size with an optional unit ("80GB", "1.92 TB", "512MiB").
func ParseSize(s string) (float64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range units {
		if suffix := strings.ToLower(u.name); strings.HasSuffix(t, suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*mult > math.MaxUint64/2 {
		return 0, fmt.Errorf("%q is not a size; write e.g. 80GB, 1.92TB or 512GiB", s)
	}
	return math.Round(v * mult), nil
}

// FormatSize prints bytes with the largest binary unit that keeps at most
// one decimal, or a decimal unit when that is exact ("80 GiB", "1.92 TB").
func FormatSize(v uint64) string {
	if v == 0 {
		return "0 B"
	}
	f := float64(v)
	for _, u := range []struct {
		name string
		mult float64
	}{{"PB", 1e15}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}} {
		if f >= u.mult && math.Mod(f, u.mult/100) == 0 {
			return strconv.FormatFloat(f/u.mult, 'f', -1, 64) + " " + u.name
		}
	}
	for _, u := range []struct {
		name string
		mult float64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if f >= u.mult {
			return strconv.FormatFloat(math.Round(f/u.mult*10)/10, 'f', -1, 64) + " " + u.name
		}
	}
	return strconv.FormatUint(v, 10) + " B"
}

// VersionRange constrains a firmware or driver version, compared with
// version.Compare: `"2.19.0"` (exact), `{min: "2.19.0"}`,
// `{min: "1.2", max: "1.9"}`, `{oneOf: ["A05", "A07"]}`.
type VersionRange struct {
	Min, Max string
	OneOf    []string
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *VersionRange) UnmarshalYAML(n *yaml.Node) error {
	val := func(c *yaml.Node) (string, error) {
		if c.Kind != yaml.ScalarNode || !version.Valid(c.Value) {
			return "", nodeErr(c, "want a version string such as \"2.19.0\"")
		}
		return c.Value, nil
	}
	min, max, oneOf, err := decodeRange(n, val, func(a, b string) bool { return version.Compare(a, b) > 0 }, "min is newer than max")
	*r = VersionRange{OneOf: oneOf}
	if min != nil {
		r.Min = *min
	}
	if max != nil {
		r.Max = *max
	}
	return err
}

// OK reports whether v satisfies the constraint.
func (r VersionRange) OK(v string) bool {
	if len(r.OneOf) > 0 {
		for _, o := range r.OneOf {
			if version.Compare(v, o) == 0 {
				return true
			}
		}
		return false
	}
	if r.Min != "" && version.Compare(v, r.Min) < 0 {
		return false
	}
	if r.Max != "" && version.Compare(v, r.Max) > 0 {
		return false
	}
	return true
}

func (r VersionRange) String() string {
	switch {
	case len(r.OneOf) == 1:
		return r.OneOf[0]
	case len(r.OneOf) > 0:
		return "one of " + strings.Join(r.OneOf, ", ")
	case r.Min != "" && r.Min == r.Max:
		return r.Min
	case r.Min != "" && r.Max != "":
		return r.Min + " to " + r.Max
	case r.Min != "":
		return "at least " + r.Min
	case r.Max != "":
		return "at most " + r.Max
	}
	return "any"
}

// MarshalYAML writes the constraints back in their YAML form (for
// `rackstrap profile show -o yaml`).
func (r IntRange) MarshalYAML() (any, error) {
	return r.b.marshal(func(v float64) any { return int64(v) }), nil
}

// MarshalYAML implements yaml.Marshaler.
func (r ByteRange) MarshalYAML() (any, error) {
	return r.b.marshal(func(v float64) any { return FormatSizeExact(uint64(v)) }), nil
}

// MarshalYAML implements yaml.Marshaler.
func (r VersionRange) MarshalYAML() (any, error) {
	switch {
	case len(r.OneOf) > 0:
		return map[string]any{"oneOf": r.OneOf}, nil
	case r.Min != "" && r.Min == r.Max:
		return r.Min, nil
	}
	m := map[string]any{}
	if r.Min != "" {
		m["min"] = r.Min
	}
	if r.Max != "" {
		m["max"] = r.Max
	}
	return m, nil
}

// MarshalJSON mirrors MarshalYAML, so JSON output uses the schema's form.
func (r IntRange) MarshalJSON() ([]byte, error) { return marshalJSON(r.MarshalYAML()) }

// MarshalJSON implements json.Marshaler.
func (r ByteRange) MarshalJSON() ([]byte, error) { return marshalJSON(r.MarshalYAML()) }

// MarshalJSON implements json.Marshaler.
func (r VersionRange) MarshalJSON() ([]byte, error) { return marshalJSON(r.MarshalYAML()) }

func (b bound) marshal(f func(float64) any) any {
	if len(b.OneOf) > 0 {
		vs := make([]any, len(b.OneOf))
		for i, o := range b.OneOf {
			vs[i] = f(o)
		}
		return map[string]any{"oneOf": vs}
	}
	if b.Min != nil && b.Max != nil && *b.Min == *b.Max {
		return f(*b.Min)
	}
	m := map[string]any{}
	if b.Min != nil {
		m["min"] = f(*b.Min)
	}
	if b.Max != nil {
		m["max"] = f(*b.Max)
	}
	return m
}

// FormatSizeExact prints bytes with the largest unit that divides it exactly
// ("80GB", "2TiB", "123B"), so that ParseSize reads it back unchanged.
func FormatSizeExact(v uint64) string {
	best, bestVal := "B", v
	for _, u := range units {
		m := uint64(u.mult)
		if m > 1 && v%m == 0 && v/m < bestVal {
			best, bestVal = u.name, v/m
		}
	}
	return strconv.FormatUint(bestVal, 10) + best
}

func marshalJSON(v any, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
