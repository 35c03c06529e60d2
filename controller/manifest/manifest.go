// Package manifest reads rack manifests: the racks a site expects, with each
// slot's machine (serial, BMC address, MACs, profile). `rackstrap apply`
// turns a manifest into node records; discovery matches found BMCs to it.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Manifest is a parsed rack manifest.
type Manifest struct {
	Racks []Rack `yaml:"racks"`
}

// Rack is one rack: defaults for its nodes, and its slots.
type Rack struct {
	Name    string `yaml:"name"`
	Profile string `yaml:"profile"`
	Desired string `yaml:"desired"`
	// HandOff is the cluster the rack's nodes are handed to: slurm or
	// kubernetes (empty: the controller's default).
	HandOff string `yaml:"handoff"`
	Nodes   []Node `yaml:"nodes"`
}

// Node is one expected machine.
type Node struct {
	Slot    int      `yaml:"slot"`
	Name    string   `yaml:"name"`
	Serial  string   `yaml:"serial"`
	BMC     string   `yaml:"bmc"`
	BMCMAC  string   `yaml:"bmcMAC"`
	MACs    []string `yaml:"macs"`
	Profile string   `yaml:"profile"`
	Desired string   `yaml:"desired"`
	HandOff string   `yaml:"handoff"` // overrides the rack's
}

// Hand-off targets: the clusters a node can be handed to.
const (
	TargetSlurm      = "slurm"
	TargetKubernetes = "kubernetes"
)

// Targets lists the hand-off targets.
var Targets = []string{TargetSlurm, TargetKubernetes}

func checkTarget(t string) error {
	if t == "" || t == TargetSlurm || t == TargetKubernetes {
		return nil
	}
	return fmt.Errorf("unknown handoff target %q: use slurm or kubernetes", t)
}

// strict is how manifests are checked: no aliases, a null is an absent
// value, an unknown key is named at the enclosing key with a suggestion.
var strict = strictyaml.Checker{
	Nulls:           strictyaml.NullAnywhere,
	RefuseAliases:   "YAML aliases are not allowed in a rack manifest; write the value out",
	UnknownAtParent: true,
	MaxDepth:        16,
	Messages:        strictyaml.Messages{UnknownKey: strictyaml.UnknownKey},
}

// Parse reads a manifest strictly: unknown keys, duplicate names or slots,
// bad MACs and bad outcomes are errors naming the file and line.
func Parse(name string, data []byte) (*Manifest, error) {
	// Unknown keys (with a "did you mean"), duplicate keys and wrongly typed
	// values first, every one with its line and column: a technician's typo
	// in a rack file should be named, not only refused.
	if doc, err := strictyaml.ReadDocument(data); err == nil {
		if errs, _ := strict.Check(doc.Root, reflect.TypeFor[Manifest](), ""); len(errs) > 0 {
			for _, e := range errs {
				e.File = name
			}
			return nil, errs
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the manifest is empty: list racks under 'racks:'", name)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var errs []error
			for _, e := range te.Errors {
				errs = append(errs, fmt.Errorf("%s:%s", name, readable(e)))
			}
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := m.check(name, &node); err != nil {
		return nil, err
	}
	return &m, nil
}

// readable turns "line 3: field colour not found in type manifest.Rack"
// into "3: unknown key \"colour\"".
func readable(e string) string {
	lineNo, rest, ok := strings.Cut(strings.TrimPrefix(e, "line "), ": ")
	if !ok {
		return " " + e
	}
	if field, _, ok := strings.Cut(strings.TrimPrefix(rest, "field "), " not found"); ok && strings.HasPrefix(rest, "field ") {
		return fmt.Sprintf("%s: unknown key %q (known: racks, name, profile, desired, handoff, nodes, slot, serial, bmc, bmcMAC, macs)", lineNo, field)
	}
	return lineNo + ": " + rest
}

// Load reads and parses a manifest file.
func Load(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return Parse(path, data)
}

// line finds the line of the i-th rack's (and j-th node's, when j >= 0)
// mapping in the document, for error messages.
func line(doc *yaml.Node, i, j int) int {
	if doc == nil || len(doc.Content) == 0 {
		return 0
	}
	root := doc.Content[0]
	racks := mapValue(root, "racks")
	if racks == nil || i >= len(racks.Content) {
		return root.Line
	}
	r := racks.Content[i]
	if j < 0 {
		return r.Line
	}
	nodes := mapValue(r, "nodes")
	if nodes == nil || j >= len(nodes.Content) {
		return r.Line
	}
	return nodes.Content[j].Line
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == key {
			return m.Content[k+1]
		}
	}
	return nil
}

func (m *Manifest) check(file string, doc *yaml.Node) error {
	var errs []error
	bad := func(i, j int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", file, line(doc, i, j), fmt.Sprintf(format, args...)))
	}
	if len(m.Racks) == 0 {
		bad(0, -1, "no racks: list them under 'racks:'")
	}
	names, racks := map[string]bool{}, map[string]bool{}
	for i, r := range m.Racks {
		if r.Name == "" {
			bad(i, -1, "rack %d has no name", i+1)
		} else if racks[r.Name] {
			bad(i, -1, "rack %q is listed twice", r.Name)
		}
		racks[r.Name] = true
		if r.Desired != "" {
			if _, err := model.ParseDesired(r.Desired); err != nil {
				bad(i, -1, "rack %s: %v", r.Name, err)
			}
		}
		if err := checkTarget(r.HandOff); err != nil {
			bad(i, -1, "rack %s: %v", r.Name, err)
		}
		slots := map[int]bool{}
		for j, n := range r.Nodes {
			if n.Slot <= 0 {
				bad(i, j, "rack %s node %d: slot must be a positive number", r.Name, j+1)
			} else if slots[n.Slot] {
				bad(i, j, "rack %s: slot %d is listed twice", r.Name, n.Slot)
			}
			slots[n.Slot] = true
			name := r.nodeName(n)
			if names[name] {
				bad(i, j, "node name %q is used twice", name)
			}
			names[name] = true
			for _, mac := range append(append([]string{}, n.MACs...), n.BMCMAC) {
				if mac == "" {
					continue
				}
				if _, err := model.NormalizeMAC(mac); err != nil {
					bad(i, j, "rack %s slot %d: %v", r.Name, n.Slot, err)
				}
			}
			if n.Desired != "" {
				if _, err := model.ParseDesired(n.Desired); err != nil {
					bad(i, j, "rack %s slot %d: %v", r.Name, n.Slot, err)
				}
			}
			if err := checkTarget(n.HandOff); err != nil {
				bad(i, j, "rack %s slot %d: %v", r.Name, n.Slot, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (r Rack) nodeName(n Node) string {
	if n.Name != "" {
		return n.Name
	}
	return fmt.Sprintf("%s-n%02d", r.Name, n.Slot)
}

// Nodes returns the node records the manifest describes, rack defaults
// applied, in manifest order.
func (m *Manifest) Nodes() []model.Node {
	var out []model.Node
	for _, r := range m.Racks {
		for _, n := range r.Nodes {
			macs := make([]string, 0, len(n.MACs))
			for _, mac := range n.MACs {
				norm, _ := model.NormalizeMAC(mac) // checked in Parse
				macs = append(macs, norm)
			}
			desired := model.Desired(firstOf(n.Desired, r.Desired, string(model.WantReady)))
			out = append(out, model.Node{
				Name:     r.nodeName(n),
				Identity: model.Identity{Serial: n.Serial, BMC: n.BMC, MACs: macs, Rack: r.Name, Slot: n.Slot},
				Profile:  firstOf(n.Profile, r.Profile),
				Desired:  desired,
			})
		}
	}
	return out
}

// HandOffTargets returns the hand-off target of every node that has one
// (its own, else its rack's), by node name.
func (m *Manifest) HandOffTargets() map[string]string {
	out := map[string]string{}
	for _, r := range m.Racks {
		for _, n := range r.Nodes {
			if t := firstOf(n.HandOff, r.HandOff); t != "" {
				out[r.nodeName(n)] = t
			}
		}
	}
	return out
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
