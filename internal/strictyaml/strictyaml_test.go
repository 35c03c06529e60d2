package strictyaml_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Doc is a format with every kind of value the Checker knows.
type Doc struct {
	Name   string            `yaml:"name"`
	Count  int               `yaml:"count,omitempty"`
	Small  uint8             `yaml:"small,omitempty"`
	Ratio  float64           `yaml:"ratio,omitempty"`
	On     *bool             `yaml:"on,omitempty"`
	Tags   []string          `yaml:"tags,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty"`
	Disk   *Disk             `yaml:"disk,omitempty"`
	Disks  []Disk            `yaml:"disks,omitempty"`
	Speed  Speed             `yaml:"speed,omitempty"`
	Mode   *Mode             `yaml:"mode,omitempty"`
	Base   `yaml:",inline"`
	Plain  string // no tag: "plain", as yaml.v3 decodes it
	Skip   string `yaml:"-"`
	hidden string //nolint:unused // unexported: never a key
}

// Base is inlined into Doc.
type Base struct {
	Dir string `yaml:"dir,omitempty"`
}

type Disk struct {
	Model string `yaml:"model"`
	SizeG int64  `yaml:"sizeGB"`
}

// Speed reads itself (yaml.Unmarshaler) and reports an *Error with a key.
type Speed struct{ Gbps int }

func (s *Speed) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value != "gbps" {
				e := strictyaml.At(n.Content[i], "only gbps here")
				e.Key = n.Content[i].Value
				return e
			}
		}
		return nil
	}
	v, err := strconv.Atoi(strings.TrimSuffix(n.Value, "G"))
	if err != nil {
		return fmt.Errorf("%q is not a speed; write e.g. 100G", n.Value)
	}
	s.Gbps = v
	return nil
}

// Mode reads itself from text (encoding.TextUnmarshaler).
type Mode uint32

func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil {
		return fmt.Errorf("%q is not an octal mode", b)
	}
	*m = Mode(v)
	return nil
}

func check(t *testing.T, c strictyaml.Checker, src string) (strictyaml.Errors, map[string]*yaml.Node) {
	t.Helper()
	doc, err := strictyaml.ReadDocument([]byte(src))
	if err != nil {
		t.Fatalf("ReadDocument(%q) = %v", src, err)
	}
	return c.Check(doc.Root, reflect.TypeFor[Doc](), "")
}

func TestCheck(t *testing.T) {
	t.Parallel()
	policyLike := strictyaml.Checker{
		Nulls:           strictyaml.NullAnywhere,
		RefuseAliases:   "no aliases here",
		UnknownAtParent: true,
		Messages:        strictyaml.Messages{UnknownKey: strictyaml.UnknownKey},
	}
	specLike := strictyaml.Checker{
		Nulls:         strictyaml.NullAnywhere,
		RefuseAliases: "no anchors or aliases",
		RefuseAnchors: true,
		Messages: strictyaml.Messages{
			DuplicateKey: func(first int) string { return fmt.Sprintf("given twice (line %d)", first) },
			NotMapping:   func(known []string, got string) string { return fmt.Sprintf("want %d keys, got %s", len(known), got) },
		},
	}
	tests := map[string]struct {
		c    strictyaml.Checker
		src  string
		want []string
	}{
		"good": {
			src: "name: a\ncount: 3\nsmall: 255\nratio: 1.5\non: true\ntags: [x, y]\nlabels: {a: b}\n" +
				"disk: {model: m, sizeGB: 10}\ndisks: [{model: m, sizeGB: 1}]\nspeed: 100G\nmode: '0644'\ndir: /x\nplain: p\n",
		},
		"unknown field with suggestion": {
			src:  "nmae: a\n",
			want: []string{`1:1: nmae: unknown field "nmae" (did you mean "name"?); known fields: name, count, small, ratio, on, tags, labels, disk, disks, speed, mode, dir, plain`},
		},
		"unknown nested key at parent": {
			c:    policyLike,
			src:  "disk: {model: m, sizeGB: 1, modle: x}\nzzz: 1\n",
			want: []string{`1:29: disk: unknown key "modle"; did you mean "model"?`, `2:1: unknown key "zzz"; known keys: name, count, small, ratio, on, tags, labels, disk, disks, speed, mode, dir, plain`},
		},
		"skipped and unexported fields are unknown": {
			src:  "skip: x\nhidden: y\n",
			want: []string{`1:1: skip: unknown field "skip"`, `2:1: hidden: unknown field "hidden"`},
		},
		"duplicate keys": {
			src:  "name: a\nlabels: {a: b, a: c}\nname: b\n",
			want: []string{`2:16: labels.a: duplicate key (first at line 2)`, `3:1: name: duplicate key (first at line 1)`},
		},
		"duplicate key worded by the format": {
			c:    specLike,
			src:  "name: a\nname: b\n",
			want: []string{`2:1: name: given twice (line 1)`},
		},
		"keys that are not words": {
			src:  "? [a]\n: x\nlabels: {? {b: c} : d}\n",
			want: []string{`1:3: keys must be plain words`, `3:12: labels: keys must be plain words`},
		},
		"wrong kinds": {
			src: "name: [a]\ncount: many\nsmall: 256\nratio: fast\non: 'yes'\ntags: x\nlabels: [a]\ndisk: 3\ndisks: {}\n",
			want: []string{
				`1:7: name: want a string, got a list`,
				`2:8: count: want a whole number, got "many"`,
				`3:8: small: want a whole number from 0 to 255, got "256"`,
				`4:8: ratio: want a number, got "fast"`,
				`5:5: on: want true or false, got "yes"`,
				`6:7: tags: want a list, got "x"`,
				`7:9: labels: want a mapping, got a list`,
				`8:7: disk: want a mapping of keys, got "3"`,
				`9:8: disks: want a list, got a mapping`,
			},
		},
		"int out of range": {
			src:  "count: 99999999999999999999\ndisks: [{model: m, sizeGB: -9223372036854775809}]\n",
			want: []string{`1:8: count: want a whole number, got "99999999999999999999"`, `2:28: disks[0].sizeGB: want a whole number, got "-9223372036854775809"`},
		},
		"not a mapping worded by the format": {
			c:    specLike,
			src:  "disk: [a]\n",
			want: []string{`1:7: disk: want 2 keys, got a list`},
		},
		"own unmarshalers": {
			src:  "speed: fast\nmode: '0999'\n---\n",
			want: []string{`1:8: speed: "fast" is not a speed; write e.g. 100G`, `2:7: mode: "0999" is not an octal mode`},
		},
		"unmarshaler error keeps its key": {
			src:  "speed: {gbps: 1, mbps: 2}\n",
			want: []string{`1:18: speed.mbps: only gbps here`},
		},
		"text unmarshaler wants a scalar": {
			src:  "mode: [1]\n",
			want: []string{`1:7: mode: want a single value, got a list`},
		},
		"null checked nowhere": {
			src:  "name: ~\ndisk: null\ntags:\n",
			want: []string{`1:7: name: want a string, got nothing`, `2:7: disk: want a mapping of keys, got nothing`, `3:6: tags: want a list, got nothing`},
		},
		"null for pointers": {
			c:    strictyaml.Checker{Nulls: strictyaml.NullForPointers},
			src:  "name: ~\ndisk: null\non:\n",
			want: []string{`1:7: name: want a string, got nothing`},
		},
		"null anywhere": {
			c:   strictyaml.Checker{Nulls: strictyaml.NullAnywhere},
			src: "name: ~\ndisk: null\ntags:\ncount: ~\n",
		},
		"aliases followed": {
			src:  "name: &n a\ndir: *n\ndisk: &d {model: m, sizeGB: x}\ndisks: [*d, *d]\n",
			want: []string{`3:29: disk.sizeGB: want a whole number, got "x"`, `3:29: disks[0].sizeGB: want a whole number, got "x"`, `3:29: disks[1].sizeGB: want a whole number, got "x"`},
		},
		"aliases refused": {
			c:    policyLike,
			src:  "name: &n a\ndir: *n\n",
			want: []string{`2:6: dir: no aliases here`},
		},
		"anchors refused too": {
			c:    specLike,
			src:  "name: &n a\n",
			want: []string{`1:7: name: no anchors or aliases`},
		},
		"not a mapping at the root": {
			src:  "- a\n",
			want: []string{`1:1: want a mapping of keys, got a list`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			errs, _ := check(t, tc.c, tc.src)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			// Long messages are compared by prefix: each want is the start of its error.
			for i := range got {
				if i < len(tc.want) && strings.HasPrefix(got[i], tc.want[i]) {
					got[i] = tc.want[i]
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Check(%q) errors (-want +got):\n%s", tc.src, diff)
			}
			if len(errs) == 0 {
				var d Doc
				doc, _ := strictyaml.ReadDocument([]byte(tc.src))
				if err := doc.Root.Decode(&d); err != nil {
					t.Errorf("Check(%q) passed but Decode = %v", tc.src, err)
				}
			}
		})
	}
}

func TestCheckDepth(t *testing.T) {
	t.Parallel()
	type tree struct {
		Kids []tree `yaml:"kids"`
	}
	src := "kids:" + strings.Repeat(" [{kids:", 30) + " []" + strings.Repeat("}]", 30) + "\n"
	doc, err := strictyaml.ReadDocument([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if errs, _ := (&strictyaml.Checker{}).Check(doc.Root, reflect.TypeFor[tree](), ""); len(errs) != 0 {
		t.Errorf("Check(61 levels, default bound) = %v, want no error", errs)
	}
	errs, _ := (&strictyaml.Checker{MaxDepth: 10}).Check(doc.Root, reflect.TypeFor[tree](), "")
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "nested more than 10 levels deep") {
		t.Errorf("Check(61 levels, MaxDepth 10) = %v, want one 'nested more than 10 levels' error", errs)
	}
}

func TestCheckUnsupportedKind(t *testing.T) {
	t.Parallel()
	type odd struct {
		C complex128 `yaml:"c"`
	}
	doc, _ := strictyaml.ReadDocument([]byte("c: 1\n"))
	errs, _ := (&strictyaml.Checker{}).Check(doc.Root, reflect.TypeFor[odd](), "")
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "1:4: c: internal: no strict check for complex128") {
		t.Errorf("Check(complex128) = %v, want an internal error naming the type", errs)
	}
}

func TestCheckNodes(t *testing.T) {
	t.Parallel()
	_, nodes := check(t, strictyaml.Checker{}, "name: a\ndisks:\n  - model: m\n    sizeGB: 2\n")
	got := map[string][2]int{}
	for k, n := range nodes {
		got[k] = [2]int{n.Line, n.Column}
	}
	want := map[string][2]int{"": {1, 1}, "name": {1, 7}, "disks": {3, 3}, "disks[0]": {3, 5}, "disks[0].model": {3, 12}, "disks[0].sizeGB": {4, 13}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Check nodes (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	es := strictyaml.Errors{
		{File: "f.yaml", Line: 2, Column: 3, Key: "a.b", Msg: "bad"},
		{Line: 4, Column: 1, Msg: "worse"},
	}
	if got, want := es.Error(), "f.yaml:2:3: a.b: bad\n4:1: worse"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
	var e *strictyaml.Error
	if err := fmt.Errorf("load: %w", es); !errors.As(err, &e) || e.Msg != "bad" {
		t.Errorf("errors.As(Errors, *Error) = %v, want the first error", e)
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	known := []string{"name", "description", "pcieGen", "pcieWidth", "source_date_epoch", "disk", "iso"}
	for key, want := range map[string]string{
		"nmae":                   "name",
		"NAME":                   "name",
		"pcie_width":             "pcieWidth",
		"sourceDateEpoch":        "source_date_epoch",
		"s-o-u-r-c-e":            "",
		"s_ource_date_e_p_o_ch":  "source_date_epoch", // only the separators differ
		"frobnicate":             "",
		"descriptoin":            "description",
		strings.Repeat("x", 100): "",
	} {
		if got := strictyaml.Suggest(key, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", key, got, want)
		}
	}
	if got, want := strictyaml.UnknownKey("xyz", []string{"a", "b"}), `unknown key "xyz"; known keys: a, b`; got != want {
		t.Errorf("UnknownKey = %q, want %q", got, want)
	}
}

func TestFields(t *testing.T) {
	t.Parallel()
	var got []string
	for _, f := range strictyaml.Fields(reflect.TypeFor[Doc]()) {
		got = append(got, f.Name+" "+f.Type.String())
	}
	want := []string{"name string", "count int", "small uint8", "ratio float64", "on *bool", "tags []string",
		"labels map[string]string", "disk *strictyaml_test.Disk", "disks []strictyaml_test.Disk",
		"speed strictyaml_test.Speed", "mode *strictyaml_test.Mode", "dir string", "plain string"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Fields(Doc) (-want +got):\n%s", diff)
	}
}

func TestReadDocument(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		src           string
		err           string // "" when it reads
		rootKind      yaml.Kind
		next, nextErr bool
		line          int // Locate's line for err
		msg           string
	}{
		"one":             {src: "a: 1\n", rootKind: yaml.MappingNode},
		"explicit start":  {src: "---\na: 1\n...\n", rootKind: yaml.MappingNode},
		"empty":           {src: "", err: "no YAML document"},
		"comments only":   {src: "# nothing\n", err: "no YAML document"},
		"two":             {src: "a: 1\n---\nb: 2\n", rootKind: yaml.MappingNode, next: true},
		"bad second":      {src: "a: 1\n---\nb: [\n", rootKind: yaml.MappingNode, nextErr: true},
		"syntax error":    {src: "a: 1\nb: [\n", err: "yaml: line 2: did not find expected node content", line: 2, msg: "did not find expected node content"},
		"no line":         {src: "a: *x\n", err: "yaml: unknown anchor 'x' referenced", msg: "unknown anchor 'x' referenced"},
		"just a document": {src: "---\n", rootKind: yaml.ScalarNode},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc, err := strictyaml.ReadDocument([]byte(tc.src))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("ReadDocument(%q) = %v, want error %q", tc.src, err, tc.err)
				}
				if errors.Is(err, strictyaml.ErrEmpty) {
					return
				}
				line, msg := strictyaml.Locate(err)
				if line != tc.line || msg != tc.msg {
					t.Errorf("Locate(%v) = %d, %q, want %d, %q", err, line, msg, tc.line, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadDocument(%q) = %v", tc.src, err)
			}
			if doc.Root.Kind != tc.rootKind || (doc.Next != nil) != tc.next || (doc.NextErr != nil) != tc.nextErr {
				t.Errorf("ReadDocument(%q) = root kind %v, next %v, next error %v; want %v, %v, %v",
					tc.src, doc.Root.Kind, doc.Next != nil, doc.NextErr, tc.rootKind, tc.next, tc.nextErr)
			}
		})
	}
}

func TestLocateDecodeError(t *testing.T) {
	t.Parallel()
	doc, err := strictyaml.ReadDocument([]byte("a: 1\nb: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		B int `yaml:"b"`
	}
	err = doc.Root.Decode(&v)
	line, msg := strictyaml.Locate(err)
	if line != 2 || !strings.HasPrefix(msg, "cannot unmarshal !!seq into int") {
		t.Errorf("Locate(%v) = %d, %q, want line 2 and the first problem", err, line, msg)
	}
}

func TestCheckAliasBomb(t *testing.T) {
	t.Parallel()
	type tree struct {
		Kids []tree `yaml:"kids"`
	}
	// Each level holds ten aliases of the level below: 10^9 values when
	// expanded, a few hundred bytes written.
	var b strings.Builder
	b.WriteString("l0: &l0 {kids: []}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d {kids: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	b.WriteString("kids: [*l9]\n")
	doc, err := strictyaml.ReadDocument([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	errs, _ := (&strictyaml.Checker{}).Check(doc.Root.Content[len(doc.Root.Content)-1], reflect.TypeFor[[]tree](), "kids")
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "aliases expand the document to more than") {
		t.Errorf("Check(alias bomb) = %d errors (%.200v), want one 'aliases expand' error", len(errs), errs)
	}
}

func TestNearest(t *testing.T) {
	t.Parallel()
	m := map[string]int{"": 1, "a": 2, "a.b[2]": 3}
	for path, want := range map[string]int{"a.b[2].c": 3, "a.b[2]": 3, "a.b[1]": 2, "a.x.y": 2, "z": 1, "": 1} {
		if got, ok := strictyaml.Nearest(m, path); !ok || got != want {
			t.Errorf("Nearest(%q) = %d, %v, want %d", path, got, ok, want)
		}
	}
	if got, ok := strictyaml.Nearest(map[string]int{"a": 2}, "b.c"); ok {
		t.Errorf("Nearest without a root = %d, true, want none", got)
	}
}
