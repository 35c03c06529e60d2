package firmware

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/version"
	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Baseline is the firmware a profile or fleet must run: a YAML file such as
//
//	name: dgx-h100-2026q4
//	components:
//	  - id: BMC                      # the component's id (a pattern: "NIC*")
//	    version: 1.5.0               # exactly this version ...
//	    package:
//	      file: bmc-1.5.0.bin        # relative to the baseline file
//	      sha256: 9f86d08188...
//	      signature: bmc-1.5.0.bin.sig
//	      reset: bmc                 # none (default), bmc or host
//	  - name: "ConnectX-6*"          # or the component's name, a pattern
//	    minimum: 26.36.1010          # ... or at least this one
//	    package: {file: cx6-26.40.1000.bin, sha256: 2c26b46b68..., version: 26.40.1000}
//	  - id: CPLD
//	    version: F1.0A               # no package: reported, never updated
//
// A component is governed by the first rule that matches it, so specific
// rules go before general ones. Versions compare with hwprofiles/version.
type Baseline struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	Components  []Rule `yaml:"components" json:"components"`
	// File is where Load read the baseline ("" after Parse).
	File string `yaml:"-" json:"file,omitempty"`
}

// Rule is one component's requirement.
type Rule struct {
	// ID and Name select components: a component id, or a name, as a
	// case-insensitive pattern (path.Match syntax: "NIC*", "GPU[0-7]"). A
	// rule with both needs both to match.
	ID   string `yaml:"id,omitempty" json:"id,omitempty"`
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Version is the exact version required (older is behind, newer is
	// ahead); Minimum accepts it or anything newer. One of the two.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	Minimum string `yaml:"minimum,omitempty" json:"minimum,omitempty"`
	// Package brings a component that is behind to the baseline; without
	// one, the component is reported and not updated.
	Package *Package `yaml:"package,omitempty" json:"package,omitempty"`
	// Line is the rule's line in the baseline file.
	Line int `yaml:"-" json:"line,omitempty"`
}

// Reset is what a component needs after its update task before it runs the
// new firmware.
type Reset string

const (
	ResetNone Reset = "none" // the component switches by itself (or the BMC resets itself)
	ResetBMC  Reset = "bmc"  // restart the BMC (Manager.Reset GracefulRestart)
	ResetHost Reset = "host" // restart the host (ComputerSystem.Reset ForceRestart), when it is on
)

// Package is a firmware package in the local artifact store.
type Package struct {
	// File is the package's path (Load makes it relative to the baseline
	// file's directory).
	File   string `yaml:"file" json:"file"`
	SHA256 string `yaml:"sha256" json:"sha256"`
	// Signature is a detached signature file (SignPackage) by a trusted
	// key; optional only where the Client allows unsigned packages.
	Signature string `yaml:"signature,omitempty" json:"signature,omitempty"`
	// Version is the version the package installs (default: the rule's
	// Version; required with Minimum).
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	Reset   Reset  `yaml:"reset,omitempty" json:"reset,omitempty"`
}

// Required is the rule's requirement as people write it: "1.5.0" or
// ">= 26.36.1010".
func (r Rule) Required() string {
	if r.Minimum != "" {
		return ">= " + r.Minimum
	}
	return r.Version
}

// Selector names what the rule selects: "id BMC", "name ConnectX-6*".
func (r Rule) Selector() string {
	switch {
	case r.ID != "" && r.Name != "":
		return "id " + r.ID + " name " + r.Name
	case r.ID != "":
		return "id " + r.ID
	}
	return "name " + r.Name
}

// Matches says whether the rule governs the component.
func (r Rule) Matches(c inventory.FirmwareComponent) bool {
	if r.ID == "" && r.Name == "" {
		return false
	}
	return (r.ID == "" || match(r.ID, c.ID)) && (r.Name == "" || match(r.Name, c.Name))
}

func match(pattern, s string) bool {
	pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == s
	}
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// Rule returns the rule governing a component: the first that matches.
func (b *Baseline) Rule(c inventory.FirmwareComponent) (Rule, bool) {
	for _, r := range b.Components {
		if r.Matches(c) {
			return r, true
		}
	}
	return Rule{}, false
}

// ParseError is one problem in a baseline file, with its position; Key is
// the dotted path of the value: "components[1].package.sha256".
type ParseError = strictyaml.Error

// ParseErrors is every problem found in one baseline, in file order.
type ParseErrors = strictyaml.Errors

// MaxBaselineSize caps a baseline file.
const MaxBaselineSize = 1 << 20

// Load reads and parses a baseline file. Package and signature paths are
// taken relative to the file's directory.
func Load(file string) (*Baseline, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBaselineSize+1))
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", file, err)
	}
	if len(data) > MaxBaselineSize {
		return nil, fmt.Errorf("baseline %s: larger than %d bytes", file, MaxBaselineSize)
	}
	b, err := Parse(data)
	if err != nil {
		var pes ParseErrors
		if errors.As(err, &pes) {
			for _, pe := range pes {
				pe.File = file
			}
			return nil, pes
		}
		return nil, fmt.Errorf("baseline %s: %w", file, err)
	}
	b.File = file
	dir := filepath.Dir(file)
	for i := range b.Components {
		if p := b.Components[i].Package; p != nil {
			p.File = relTo(dir, p.File)
			if p.Signature != "" {
				p.Signature = relTo(dir, p.Signature)
			}
		}
	}
	return b, nil
}

func relTo(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Parse decodes a baseline strictly: unknown or duplicate keys, wrong types
// and inconsistent rules are errors (ParseErrors) naming line, column and
// key.
func Parse(data []byte) (*Baseline, error) {
	doc, err := strictyaml.ReadDocument(data)
	if errors.Is(err, strictyaml.ErrEmpty) {
		return nil, ParseErrors{{Line: 1, Column: 1, Msg: "the baseline is empty; it needs a name and components"}}
	}
	if err != nil {
		return nil, yamlError(err)
	}
	if doc.NextErr != nil {
		return nil, yamlError(doc.NextErr)
	}
	if doc.Next != nil {
		return nil, ParseErrors{{Line: doc.Next.Line, Column: 1, Msg: "more than one YAML document; a baseline is one document"}}
	}
	root := doc.Root
	errs, pos := strict.Check(root, reflect.TypeFor[Baseline](), "")
	if len(errs) > 0 {
		return nil, errs
	}
	var b Baseline
	if err := root.Decode(&b); err != nil {
		return nil, ParseErrors{{Line: root.Line, Column: root.Column, Msg: err.Error()}}
	}
	for i := range b.Components {
		if n := pos[fmt.Sprintf("components[%d]", i)]; n != nil {
			b.Components[i].Line = n.Line
		}
	}
	if errs := b.validate(pos); len(errs) > 0 {
		return nil, errs
	}
	return &b, nil
}

// strict is how baselines are checked: aliases are followed, a null leaves
// an optional (pointer) value out, and an unknown key is reported at its
// own path with the known fields.
var strict = strictyaml.Checker{
	Nulls: strictyaml.NullForPointers,
	Messages: strictyaml.Messages{
		UnknownKey: func(key string, known []string) string {
			return fmt.Sprintf("unknown field %q; known fields: %s", key, strings.Join(known, ", "))
		},
	},
}

// yamlError turns a YAML syntax error ("yaml: line 3: ...") into a
// ParseError with the line.
func yamlError(err error) error {
	line, msg := strictyaml.Locate(err)
	return ParseErrors{{Line: max(line, 1), Column: 1, Msg: msg}}
}

// validate checks what the structure cannot: required fields, versions,
// digests, patterns and consistency between a rule and its package.
func (b *Baseline) validate(pos map[string]*yaml.Node) ParseErrors {
	var errs ParseErrors
	add := func(key, format string, args ...any) {
		e := &ParseError{Line: 1, Column: 1, Key: key, Msg: fmt.Sprintf(format, args...)}
		if n, ok := strictyaml.Nearest(pos, key); ok {
			e.Line, e.Column = n.Line, n.Column
		}
		errs = append(errs, e)
	}
	if strings.TrimSpace(b.Name) == "" {
		add("name", "a baseline needs a name")
	}
	if len(b.Components) == 0 {
		add("components", "a baseline needs at least one component rule")
	}
	selectors := map[string]int{}
	for i, r := range b.Components {
		k := fmt.Sprintf("components[%d]", i)
		if r.ID == "" && r.Name == "" {
			add(k, "give id or name: which components the rule is for")
		}
		for _, f := range []struct{ key, pat string }{{"id", r.ID}, {"name", r.Name}} {
			if _, err := path.Match(strings.ToLower(f.pat), ""); err != nil {
				add(k+"."+f.key, "bad pattern %q: %v", f.pat, err)
			}
		}
		sel := strings.ToLower(r.ID) + "\x00" + strings.ToLower(r.Name)
		if first, dup := selectors[sel]; dup && (r.ID != "" || r.Name != "") {
			add(k, "selects the same components as the rule at line %d; the first rule wins, so this one never applies", first)
		} else {
			selectors[sel] = r.Line
		}
		switch {
		case r.Version == "" && r.Minimum == "":
			add(k, "give version (exactly) or minimum (at least)")
		case r.Version != "" && r.Minimum != "":
			add(k+".minimum", "give version or minimum, not both")
		case r.Version != "" && !version.Valid(r.Version):
			add(k+".version", "%q is not a comparable version", r.Version)
		case r.Minimum != "" && !version.Valid(r.Minimum):
			add(k+".minimum", "%q is not a comparable version", r.Minimum)
		}
		p := r.Package
		if p == nil {
			continue
		}
		pk := k + ".package"
		if strings.TrimSpace(p.File) == "" {
			add(pk, "a package needs a file")
		}
		if !validSHA256(p.SHA256) {
			add(pk+".sha256", "want the package's sha256 as 64 hex digits (sha256sum FILE), got %q", p.SHA256)
		}
		switch p.Reset {
		case "", ResetNone, ResetBMC, ResetHost:
		default:
			add(pk+".reset", "unknown reset %q; use none, bmc or host", p.Reset)
		}
		switch {
		case p.Version != "" && !version.Valid(p.Version):
			add(pk+".version", "%q is not a comparable version", p.Version)
		case r.Minimum != "" && p.Version == "":
			add(pk+".version", "a rule with minimum needs the version its package installs")
		case r.Minimum != "" && version.Valid(r.Minimum) && !version.AtLeast(p.Version, r.Minimum):
			add(pk+".version", "the package installs %s, below the minimum %s", p.Version, r.Minimum)
		case r.Version != "" && p.Version != "" && version.Compare(p.Version, r.Version) != 0:
			add(pk+".version", "the package installs %s, not the required %s", p.Version, r.Version)
		}
		if p.Version == "" {
			b.Components[i].Package.Version = r.Version
		}
		if p.Reset == "" {
			b.Components[i].Package.Reset = ResetNone
		}
		b.Components[i].Package.SHA256 = strings.ToLower(p.SHA256)
	}
	return errs
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
