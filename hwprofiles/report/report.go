// Package report builds the rack acceptance report: for one rack, which
// nodes were expected, found, missing or unexpected, each node's validation
// result and findings, drift between nodes of the same profile, and firmware
// compliance where known. The report is signed with ed25519 (the same keys
// as images) so it can be handed over as an acceptance record, and renders
// as JSON (machines), JUnit XML (CI dashboards), CSV (spreadsheets) and one
// self-contained HTML page (people; it opens on an air-gapped laptop).
package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

// Manifest is what a rack should contain: its expected slots.
type Manifest struct {
	Rack string `json:"rack"`
	// Units is the rack height in U (42 when zero), for the elevation.
	Units int            `json:"units,omitempty"`
	Slots []ExpectedSlot `json:"slots"`
}

// ExpectedSlot is one expected node. A found node matches it by name, or
// by serial when the name is empty.
type ExpectedSlot struct {
	Slot    int    `json:"slot"`             // lowest rack unit the node occupies
	Height  int    `json:"height,omitempty"` // in U; 1 when zero
	Name    string `json:"name,omitempty"`
	Serial  string `json:"serial,omitempty"`
	Profile string `json:"profile,omitempty"`
}

// NodeInput is what the report knows about one found node: a file of the
// `rackstrap report --from DIR` directory, or a node from the controller.
type NodeInput struct {
	Name    string `json:"name"`
	Rack    string `json:"rack,omitempty"`
	Slot    int    `json:"slot,omitempty"`
	Height  int    `json:"height,omitempty"`
	Profile string `json:"profile,omitempty"`
	// State is the node's lifecycle state, when known ("Ready").
	State string `json:"state,omitempty"`
	// Inventory is the merged inventory; InBand/OutOfBand are merged into
	// it by Complete when it is absent.
	Inventory *inventory.Inventory `json:"inventory,omitempty"`
	InBand    *inventory.Inventory `json:"inBand,omitempty"`
	OutOfBand *inventory.Inventory `json:"outOfBand,omitempty"`
	// Validation is the node's last validation; Complete runs one when it
	// is absent and the profile is known.
	Validation *validate.Result `json:"validation,omitempty"`
	// Firmware is the firmware compliance of the node, when known (from
	// the firmware baseline check).
	Firmware []FirmwareStatus `json:"firmware,omitempty"`
}

// FirmwareStatus is one component's compliance with the firmware baseline.
type FirmwareStatus struct {
	Component string `json:"component"`
	Installed string `json:"installed"`
	Baseline  string `json:"baseline"`
	Compliant bool   `json:"compliant"`
}

// Complete fills in the merged inventory and the validation when they are
// missing, using the catalog to resolve the node's profile.
func (n *NodeInput) Complete(cat *profile.Catalog) error {
	if n.Inventory == nil && (n.InBand != nil || n.OutOfBand != nil) {
		n.Inventory = inventory.Merge(n.InBand, n.OutOfBand)
	}
	if n.Validation != nil || n.Profile == "" || n.Inventory == nil {
		return nil
	}
	p, err := cat.Get(n.Profile)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	res := validate.Validate(n.Inventory, p)
	n.Validation = &res
	return nil
}

// Status is a node's line in the report.
type Status string

const (
	StatusPass         Status = "pass"
	StatusQuarantine   Status = "quarantine"
	StatusNotValidated Status = "not-validated"
	StatusMissing      Status = "missing"
)

// Report is one rack's acceptance report.
type Report struct {
	Rack        string    `json:"rack"`
	Units       int       `json:"units"`
	GeneratedAt time.Time `json:"generatedAt"`
	Generator   string    `json:"generator"`
	Accepted    bool      `json:"accepted"` // every expected node found and passed, nothing unexpected
	Summary     Summary   `json:"summary"`
	Nodes       []Node    `json:"nodes"`
	Drift       []Drift   `json:"drift"`
	Signature   *Sig      `json:"signature,omitempty"`
}

// Summary counts the rack's nodes and findings.
type Summary struct {
	Expected     int `json:"expected"`
	Found        int `json:"found"`
	Missing      int `json:"missing"`
	Unexpected   int `json:"unexpected"`
	Passed       int `json:"passed"`
	Quarantined  int `json:"quarantined"`
	NotValidated int `json:"notValidated"`
	Errors       int `json:"errors"`
	Warnings     int `json:"warnings"`
	Infos        int `json:"infos"`
	// FirmwareNonCompliant counts nodes with a known non-compliant component.
	FirmwareNonCompliant int `json:"firmwareNonCompliant"`
}

// Node is one expected or found node.
type Node struct {
	Name       string             `json:"name"`
	Slot       int                `json:"slot,omitempty"`
	Height     int                `json:"height"`
	Serial     string             `json:"serial,omitempty"`
	Profile    string             `json:"profile,omitempty"`
	State      string             `json:"state,omitempty"`
	Status     Status             `json:"status"`
	Expected   bool               `json:"expected"`
	Unexpected bool               `json:"unexpected"`
	System     string             `json:"system,omitempty"` // "NVIDIA DGXH100"
	BIOS       string             `json:"bios,omitempty"`
	BMC        string             `json:"bmc,omitempty"`
	GPUs       int                `json:"gpus"`
	Errors     int                `json:"errors"`
	Warnings   int                `json:"warnings"`
	Findings   []validate.Finding `json:"findings"`
	Firmware   []FirmwareStatus   `json:"firmware,omitempty"`
}

// Drift is a fact on which nodes of one profile disagree.
type Drift struct {
	Profile  string         `json:"profile"`
	Field    string         `json:"field"` // "bios.version"
	Majority string         `json:"majority"`
	Agree    int            `json:"agree"` // nodes with the majority value
	Total    int            `json:"total"` // nodes that reported the field
	Outliers []DriftOutlier `json:"outliers"`
}

// DriftOutlier is a node whose value differs from its siblings'.
type DriftOutlier struct {
	Node  string `json:"node"`
	Value string `json:"value"`
}

// Sig is the report's ed25519 signature over its canonical JSON (the
// report with Signature unset, as json.Marshal writes it).
type Sig struct {
	Algorithm string `json:"algorithm"` // "ed25519"
	KeyID     string `json:"keyId,omitempty"`
	Value     string `json:"value"` // base64 (standard, padded)
}

// Build assembles the report of one rack. manifest may be nil: then every
// found node counts as expected. nodes should be Complete.
func Build(manifest *Manifest, rack string, nodes []NodeInput, now time.Time) *Report {
	r := &Report{Rack: rack, Units: 42, GeneratedAt: now.UTC(), Generator: "rackstrap report", Nodes: []Node{}, Drift: []Drift{}}
	var slots []ExpectedSlot
	if manifest != nil {
		if manifest.Rack != "" {
			r.Rack = manifest.Rack
		}
		if manifest.Units > 0 {
			r.Units = manifest.Units
		}
		slots = manifest.Slots
	}
	used := make([]bool, len(nodes))
	find := func(s ExpectedSlot) int {
		for i, n := range nodes {
			if used[i] {
				continue
			}
			if (s.Name != "" && n.Name == s.Name) || (s.Name == "" && s.Serial != "" && n.Inventory != nil && strings.EqualFold(n.Inventory.System.Serial, s.Serial)) {
				return i
			}
		}
		return -1
	}
	for _, s := range slots {
		i := find(s)
		if i < 0 {
			name := s.Name
			if name == "" {
				name = "serial " + s.Serial
			}
			r.Nodes = append(r.Nodes, Node{Name: name, Slot: s.Slot, Height: max(s.Height, 1), Serial: s.Serial, Profile: s.Profile,
				Status: StatusMissing, Expected: true, Findings: []validate.Finding{}})
			continue
		}
		used[i] = true
		n := nodeOf(nodes[i])
		n.Expected = true
		if n.Slot == 0 {
			n.Slot = s.Slot
		}
		if s.Height > 0 {
			n.Height = s.Height
		}
		if n.Profile == "" {
			n.Profile = s.Profile
		}
		r.Nodes = append(r.Nodes, n)
	}
	for i, in := range nodes {
		if used[i] {
			continue
		}
		n := nodeOf(in)
		n.Expected = manifest == nil
		n.Unexpected = manifest != nil
		r.Nodes = append(r.Nodes, n)
	}
	sort.SliceStable(r.Nodes, func(i, j int) bool {
		a, b := r.Nodes[i], r.Nodes[j]
		if a.Slot != b.Slot {
			return a.Slot > b.Slot // top of the rack first, as it stands
		}
		return a.Name < b.Name
	})
	s := &r.Summary
	for _, n := range r.Nodes {
		if n.Expected {
			s.Expected++
		}
		if n.Unexpected {
			s.Unexpected++
		}
		switch n.Status {
		case StatusMissing:
			s.Missing++
			continue
		case StatusPass:
			s.Passed++
		case StatusQuarantine:
			s.Quarantined++
		case StatusNotValidated:
			s.NotValidated++
		}
		s.Found++
		for _, f := range n.Findings {
			switch f.Severity {
			case validate.Error:
				s.Errors++
			case validate.Warning:
				s.Warnings++
			default:
				s.Infos++
			}
		}
		for _, fw := range n.Firmware {
			if !fw.Compliant {
				s.FirmwareNonCompliant++
				break
			}
		}
	}
	r.Drift = drift(nodes)
	r.Accepted = s.Missing == 0 && s.Unexpected == 0 && s.Quarantined == 0 && s.NotValidated == 0 && s.Found > 0
	return r
}

func nodeOf(in NodeInput) Node {
	n := Node{Name: in.Name, Slot: in.Slot, Height: max(in.Height, 1), Profile: in.Profile, State: in.State,
		Status: StatusNotValidated, Findings: []validate.Finding{}, Firmware: in.Firmware}
	if inv := in.Inventory; inv != nil {
		n.Serial = inv.System.Serial
		n.System = strings.TrimSpace(inv.System.Vendor + " " + inv.System.Model)
		n.BIOS = inv.BIOS.Version
		n.BMC = inv.BMC.FirmwareVersion
		n.GPUs = len(inv.GPUs)
	}
	if v := in.Validation; v != nil {
		n.Findings = append(n.Findings, v.Findings...)
		n.Errors, n.Warnings = v.Errors, v.Warnings
		if v.Profile != "" {
			n.Profile = v.Profile
		}
		n.Status = StatusPass
		if v.Verdict == validate.Quarantine {
			n.Status = StatusQuarantine
		}
	}
	return n
}

// driftFields are the facts compared between nodes of one profile.
var driftFields = []struct {
	name string
	get  func(*inventory.Inventory) string
}{
	{"bios.version", func(i *inventory.Inventory) string { return i.BIOS.Version }},
	{"bmc.firmwareVersion", func(i *inventory.Inventory) string { return i.BMC.FirmwareVersion }},
	{"cpus.model", func(i *inventory.Inventory) string {
		return distinct(i.CPUs, func(c inventory.CPU) string { return c.Model })
	}},
	{"memory.totalBytes", func(i *inventory.Inventory) string {
		if b := i.Memory.InstalledBytes(); b > 0 {
			return profile.FormatSize(b)
		}
		return ""
	}},
	{"gpus.vbios", func(i *inventory.Inventory) string {
		return distinct(i.GPUs, func(g inventory.GPU) string { return g.VBIOS })
	}},
	{"gpus.driverVersion", func(i *inventory.Inventory) string {
		return distinct(i.GPUs, func(g inventory.GPU) string { return g.DriverVersion })
	}},
	{"nics.firmware", func(i *inventory.Inventory) string {
		return distinct(i.NICs, func(n inventory.NIC) string {
			if n.Firmware == "" {
				return ""
			}
			return n.Model + " " + n.Firmware
		})
	}},
	{"disks.firmware", func(i *inventory.Inventory) string {
		return distinct(i.Disks, func(d inventory.BlockDevice) string {
			if d.Firmware == "" {
				return ""
			}
			return d.Model + " " + d.Firmware
		})
	}},
}

// distinct joins the sorted distinct non-empty values of a list.
func distinct[T any](items []T, f func(T) string) string {
	set := map[string]bool{}
	for _, it := range items {
		if v := f(it); v != "" {
			set[v] = true
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// drift finds, per profile, the facts on which some nodes differ from the
// majority of their siblings.
func drift(nodes []NodeInput) []Drift {
	byProfile := map[string][]NodeInput{}
	for _, n := range nodes {
		p := n.Profile
		if n.Validation != nil && n.Validation.Profile != "" {
			p = n.Validation.Profile
		}
		if p != "" && n.Inventory != nil {
			byProfile[p] = append(byProfile[p], n)
		}
	}
	profiles := make([]string, 0, len(byProfile))
	for p := range byProfile {
		profiles = append(profiles, p)
	}
	sort.Strings(profiles)
	out := []Drift{}
	for _, p := range profiles {
		group := byProfile[p]
		if len(group) < 2 {
			continue
		}
		for _, f := range driftFields {
			counts := map[string]int{}
			values := map[string]string{}
			for _, n := range group {
				if v := f.get(n.Inventory); v != "" {
					counts[v]++
					values[n.Name] = v
				}
			}
			if len(counts) < 2 {
				continue
			}
			majority, best := "", -1
			for v, c := range counts {
				if c > best || (c == best && v < majority) {
					majority, best = v, c
				}
			}
			d := Drift{Profile: p, Field: f.name, Majority: majority, Agree: best, Total: len(values)}
			for _, n := range group {
				if v, ok := values[n.Name]; ok && v != majority {
					d.Outliers = append(d.Outliers, DriftOutlier{Node: n.Name, Value: v})
				}
			}
			sort.Slice(d.Outliers, func(i, j int) bool { return d.Outliers[i].Node < d.Outliers[j].Node })
			out = append(out, d)
		}
	}
	return out
}

// canonical is the signed form: the report without its signature.
func (r *Report) canonical() ([]byte, error) {
	c := *r
	c.Signature = nil
	return json.Marshal(&c)
}

// Sign signs the report with an ed25519 private key.
func (r *Report) Sign(key ed25519.PrivateKey, keyID string) error {
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("sign report: not an ed25519 private key")
	}
	msg, err := r.canonical()
	if err != nil {
		return fmt.Errorf("sign report: %w", err)
	}
	r.Signature = &Sig{Algorithm: "ed25519", KeyID: keyID, Value: base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))}
	return nil
}

// ErrBadSignature is returned by Verify for a missing or wrong signature.
var ErrBadSignature = errors.New("report signature does not verify")

// Verify checks the report's signature with an ed25519 public key.
func (r *Report) Verify(pub ed25519.PublicKey) error {
	if r.Signature == nil || r.Signature.Algorithm != "ed25519" {
		return fmt.Errorf("%w: the report is not signed with ed25519", ErrBadSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(r.Signature.Value)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	msg, err := r.canonical()
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: the report was changed after signing, or signed with another key", ErrBadSignature)
	}
	return nil
}

// LoadDir reads a directory of node files for `rackstrap report --from`:
// every *.json file is a NodeInput, except manifest.json, the rack's
// Manifest (optional). Files are read strictly (unknown keys are errors).
func LoadDir(dir string) (*Manifest, []NodeInput, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("load %s: no *.json node files; write one NodeInput JSON per node (and optionally manifest.json)", dir)
	}
	sort.Strings(paths)
	var manifest *Manifest
	var nodes []NodeInput
	var errs []error
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if filepath.Base(p) == "manifest.json" {
			manifest = &Manifest{}
			if err := strictJSON(data, manifest); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
			}
			continue
		}
		var n NodeInput
		if err := strictJSON(data, &n); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if n.Name == "" {
			n.Name = strings.TrimSuffix(filepath.Base(p), ".json")
		}
		nodes = append(nodes, n)
	}
	return manifest, nodes, errors.Join(errs...)
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
