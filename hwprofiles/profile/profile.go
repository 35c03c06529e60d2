// Package profile is the hardware profile format: what a partner system must
// contain for Rackstrap to accept it (CPUs, memory, drives, NICs, GPUs,
// firmware minimums) and which burn-in checks it gets.
//
// Profiles are YAML, read strictly: an unknown key, a duplicate key or a
// value of the wrong kind is an *Error naming file, line, column and key. The
// JSON Schema in hwprofiles/schema describes the same format for editors.
//
// A profile may name a base profile with `extends:`; Resolve applies the
// inheritance (see Inherit for the exact rules). Bundled partner profiles are
// compiled in; see Bundled.
package profile

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// Profile is one hardware profile.
type Profile struct {
	// Name identifies the profile: lower case letters, digits and dashes.
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Extends names the base profile whose expectations this one inherits.
	Extends  string        `yaml:"extends,omitempty" json:"extends,omitempty"`
	Match    Match         `yaml:"match,omitempty" json:"match,omitzero"`
	CPU      *CPUSpec      `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	Memory   *MemorySpec   `yaml:"memory,omitempty" json:"memory,omitempty"`
	Disks    []DiskSpec    `yaml:"disks,omitempty" json:"disks,omitempty"`
	NICs     []NICSpec     `yaml:"nics,omitempty" json:"nics,omitempty"`
	GPUs     *GPUSpec      `yaml:"gpus,omitempty" json:"gpus,omitempty"`
	Firmware *FirmwareSpec `yaml:"firmware,omitempty" json:"firmware,omitempty"`
	BurnIn   []BurnInCheck `yaml:"burnin,omitempty" json:"burnin,omitempty"`

	// File is where the profile was read from ("bundled:dgx-h100.yaml" for
	// bundled ones); not part of the format.
	File string `yaml:"-" json:"-"`
}

// Match says which systems a profile is for; every set field must match the
// inventory's system (vendor, model, SKU).
type Match struct {
	Vendor Patterns `yaml:"vendor,omitempty" json:"vendor,omitempty"`
	Model  Patterns `yaml:"model,omitempty" json:"model,omitempty"`
	SKU    Patterns `yaml:"sku,omitempty" json:"sku,omitempty"`
}

// CPUSpec constrains the processors. Cores and threads are per socket.
type CPUSpec struct {
	Model   Patterns  `yaml:"model,omitempty" json:"model,omitempty"`
	Sockets *IntRange `yaml:"sockets,omitempty" json:"sockets,omitempty"`
	Cores   *IntRange `yaml:"cores,omitempty" json:"cores,omitempty"`
	Threads *IntRange `yaml:"threads,omitempty" json:"threads,omitempty"`
}

// MemorySpec constrains the installed memory.
type MemorySpec struct {
	Total *ByteRange `yaml:"total,omitempty" json:"total,omitempty"`
	DIMMs *DIMMSpec  `yaml:"dimms,omitempty" json:"dimms,omitempty"`
}

// DIMMSpec constrains the DIMM population.
type DIMMSpec struct {
	Count    *IntRange  `yaml:"count,omitempty" json:"count,omitempty"`
	Size     *ByteRange `yaml:"size,omitempty" json:"size,omitempty"`
	SpeedMTs *IntRange  `yaml:"speedMTs,omitempty" json:"speedMTs,omitempty"`
	Type     Patterns   `yaml:"type,omitempty" json:"type,omitempty"`
	// Slots lists slot locators that must be populated (normalised: case,
	// spaces and punctuation ignored).
	Slots []string `yaml:"slots,omitempty" json:"slots,omitempty"`
}

// DiskSpec is one group of drives: the drives of the inventory that match
// Model and Type, counted and checked.
type DiskSpec struct {
	Name     string        `yaml:"name" json:"name"` // role: "os", "data"
	Model    Patterns      `yaml:"model,omitempty" json:"model,omitempty"`
	Type     Patterns      `yaml:"type,omitempty" json:"type,omitempty"` // nvme, ssd, hdd, virtual
	Count    *IntRange     `yaml:"count,omitempty" json:"count,omitempty"`
	Size     *ByteRange    `yaml:"size,omitempty" json:"size,omitempty"`
	Firmware *VersionRange `yaml:"firmware,omitempty" json:"firmware,omitempty"`
}

// NICSpec is one group of network ports, selected by Model (and Driver).
type NICSpec struct {
	Name      string        `yaml:"name" json:"name"` // role: "compute", "storage", "management"
	Model     Patterns      `yaml:"model,omitempty" json:"model,omitempty"`
	Driver    Patterns      `yaml:"driver,omitempty" json:"driver,omitempty"`
	Count     *IntRange     `yaml:"count,omitempty" json:"count,omitempty"`
	SpeedGbps *IntRange     `yaml:"speedGbps,omitempty" json:"speedGbps,omitempty"`
	Firmware  *VersionRange `yaml:"firmware,omitempty" json:"firmware,omitempty"`
}

// GPUSpec constrains the accelerators.
type GPUSpec struct {
	Model     Patterns   `yaml:"model,omitempty" json:"model,omitempty"`
	Count     *IntRange  `yaml:"count,omitempty" json:"count,omitempty"`
	Memory    *ByteRange `yaml:"memory,omitempty" json:"memory,omitempty"`
	PCIeGen   *IntRange  `yaml:"pcieGen,omitempty" json:"pcieGen,omitempty"`
	PCIeWidth *IntRange  `yaml:"pcieWidth,omitempty" json:"pcieWidth,omitempty"`
	// NVLinks is the number of NVLink links that must be up on each GPU.
	NVLinks *IntRange `yaml:"nvlinks,omitempty" json:"nvlinks,omitempty"`
	// ECC: "enabled" or "disabled"; empty means not checked.
	ECC    string        `yaml:"ecc,omitempty" json:"ecc,omitempty"`
	VBIOS  *VersionRange `yaml:"vbios,omitempty" json:"vbios,omitempty"`
	Driver *VersionRange `yaml:"driver,omitempty" json:"driver,omitempty"`
}

// FirmwareSpec sets firmware minimums.
type FirmwareSpec struct {
	BIOS       *VersionRange   `yaml:"bios,omitempty" json:"bios,omitempty"`
	BMC        *VersionRange   `yaml:"bmc,omitempty" json:"bmc,omitempty"`
	Components []ComponentSpec `yaml:"components,omitempty" json:"components,omitempty"`
}

// ComponentSpec constrains entries of the firmware inventory whose ID
// matches; Required makes a missing component an error.
type ComponentSpec struct {
	ID       Patterns     `yaml:"id" json:"id"`
	Version  VersionRange `yaml:"version" json:"version"`
	Required bool         `yaml:"required,omitempty" json:"required,omitempty"`
}

// BurnInCheck is one burn-in step the node runs before Ready.
type BurnInCheck struct {
	// Name is the check: one of BurnInChecks.
	Name     string            `yaml:"name" json:"name"`
	Duration Duration          `yaml:"duration,omitempty" json:"duration,omitzero"`
	Args     map[string]string `yaml:"args,omitempty" json:"args,omitempty"`
}

// BurnInChecks are the burn-in checks the agent knows how to run.
var BurnInChecks = []string{"dcgm-diag", "gpu-burn", "nccl-allreduce", "nvbandwidth", "memtester", "stress-ng", "fio", "smart", "nic-link", "ib-loopback"}

// Duration is a time.Duration written as "10m", "1h30m".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeErr(n, "want a duration such as 10m or 1h30m")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return nodeErr(n, "%q is not a positive duration; write e.g. 10m or 1h30m", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)

// Parse reads one profile strictly. name is the file name used in errors.
// The result is not yet resolved: Extends is only checked for form.
func Parse(name string, data []byte) (*Profile, error) {
	doc, err := strictyaml.ReadDocument(data)
	switch {
	case errors.Is(err, strictyaml.ErrEmpty):
		return nil, Errors{{File: name, Line: 1, Column: 1, Msg: "empty profile; a profile needs at least a name"}}
	case err != nil:
		line, msg := strictyaml.Locate(err)
		return nil, Errors{{File: name, Line: max(line, 1), Column: 1, Msg: "invalid YAML: " + msg}}
	case doc.Next != nil:
		return nil, Errors{{File: name, Line: doc.Next.Line, Column: doc.Next.Column, Msg: "more than one YAML document; put one profile per file"}}
	}
	root := doc.Root
	c := &checker{}
	c.check(root, reflectProfile, "")
	if len(c.errs) == 0 {
		var p Profile
		if err := root.Decode(&p); err != nil {
			c.errs = append(c.errs, &Error{Line: root.Line, Column: root.Column, Msg: err.Error()})
		} else {
			c.errs = append(c.errs, p.lint(root)...)
			if len(c.errs) == 0 {
				p.File = name
				return &p, nil
			}
		}
	}
	for _, e := range c.errs {
		e.File = name
	}
	return nil, c.errs
}

// Load reads and parses one profile file.
func Load(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	return Parse(path, data)
}

// lint checks what the types alone cannot: required keys, names, enums.
func (p *Profile) lint(root *yaml.Node) Errors {
	var errs Errors
	at := func(path string) (int, int) {
		n := find(root, path)
		if n == nil {
			return root.Line, root.Column
		}
		return n.Line, n.Column
	}
	add := func(path, format string, args ...any) {
		l, c := at(path)
		errs = append(errs, &Error{Line: l, Column: c, Key: path, Msg: fmt.Sprintf(format, args...)})
	}
	if p.Name == "" {
		add("name", "missing: every profile needs a name")
	} else if !nameRE.MatchString(p.Name) {
		add("name", "%q is not a valid name; use lower-case letters, digits and dashes", p.Name)
	}
	if p.Extends != "" && !nameRE.MatchString(p.Extends) {
		add("extends", "%q is not a valid profile name", p.Extends)
	}
	if p.Extends == p.Name && p.Name != "" {
		add("extends", "a profile cannot extend itself")
	}
	names := map[string]bool{}
	for i, d := range p.Disks {
		key := fmt.Sprintf("disks[%d]", i)
		if d.Name == "" {
			add(key, "missing name: each drive group needs a name (its role, e.g. os or data)")
		} else if names["disk:"+d.Name] {
			add(key+".name", "duplicate drive group %q", d.Name)
		}
		names["disk:"+d.Name] = true
		for j, t := range d.Type {
			switch inventory.DiskType(t) {
			case inventory.DiskNVMe, inventory.DiskSSD, inventory.DiskHDD, inventory.DiskVirtual:
			default:
				add(fmt.Sprintf("%s.type[%d]", key, j), "unknown drive type %q; one of nvme, ssd, hdd, virtual", t)
			}
		}
	}
	for i, n := range p.NICs {
		key := fmt.Sprintf("nics[%d]", i)
		if n.Name == "" {
			add(key, "missing name: each NIC group needs a name (its role, e.g. compute or management)")
		} else if names["nic:"+n.Name] {
			add(key+".name", "duplicate NIC group %q", n.Name)
		}
		names["nic:"+n.Name] = true
	}
	if p.GPUs != nil {
		switch p.GPUs.ECC {
		case "", string(inventory.ECCEnabled), string(inventory.ECCDisabled):
		default:
			add("gpus.ecc", "%q is not an ECC mode; use enabled or disabled", p.GPUs.ECC)
		}
	}
	if p.Firmware != nil {
		for i, c := range p.Firmware.Components {
			if len(c.ID) == 0 {
				add(fmt.Sprintf("firmware.components[%d]", i), "missing id")
			}
		}
	}
	for i, b := range p.BurnIn {
		key := fmt.Sprintf("burnin[%d]", i)
		if !contains(BurnInChecks, b.Name) {
			add(key+".name", "unknown burn-in check %q; one of %s", b.Name, strings.Join(BurnInChecks, ", "))
		} else if names["burnin:"+b.Name] {
			add(key+".name", "duplicate burn-in check %q", b.Name)
		}
		names["burnin:"+b.Name] = true
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// find returns the value node at a dotted path like "disks[1].name".
func find(n *yaml.Node, path string) *yaml.Node {
	for _, part := range strings.Split(path, ".") {
		idx := -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			fmt.Sscanf(part[i:], "[%d]", &idx)
			part = part[:i]
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = n.Content[i+1]
			}
		}
		n = next
		if idx >= 0 && n != nil && n.Kind == yaml.SequenceNode && idx < len(n.Content) {
			n = n.Content[idx]
		}
	}
	return n
}
