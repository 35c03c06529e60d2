package profile

import (
	"embed"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Inherit returns child with base's expectations filled in; neither argument
// is modified. The rules, section by section:
//
//   - name, extends and file are the child's; description is the child's if
//     set, else the base's.
//   - match.vendor, match.model, match.sku: each the child's if set.
//   - cpu, memory (total; dimms.count, size, speedMTs, type, slots) and gpus:
//     field by field, the child's if set, else the base's.
//   - disks and nics: lists of named groups. A child group with the name of
//     a base group replaces it whole (in the base's position); other child
//     groups follow the base's groups.
//   - firmware.bios and firmware.bmc: the child's if set. firmware.components:
//     a child component with the same id patterns replaces the base's; others
//     are appended.
//   - burnin: by check name, like disks and nics.
//
// There is no way to delete an inherited expectation: a profile that needs
// fewer expectations than its base should extend a smaller base.
func Inherit(base, child *Profile) *Profile {
	out := *child
	if out.Description == "" {
		out.Description = base.Description
	}
	out.Match = Match{
		Vendor: or(child.Match.Vendor, base.Match.Vendor),
		Model:  or(child.Match.Model, base.Match.Model),
		SKU:    or(child.Match.SKU, base.Match.SKU),
	}
	if base.CPU != nil || child.CPU != nil {
		b, c := deref(base.CPU), deref(child.CPU)
		out.CPU = &CPUSpec{
			Model:   or(c.Model, b.Model),
			Sockets: orPtr(c.Sockets, b.Sockets),
			Cores:   orPtr(c.Cores, b.Cores),
			Threads: orPtr(c.Threads, b.Threads),
		}
	}
	if base.Memory != nil || child.Memory != nil {
		b, c := deref(base.Memory), deref(child.Memory)
		out.Memory = &MemorySpec{Total: orPtr(c.Total, b.Total)}
		if b.DIMMs != nil || c.DIMMs != nil {
			bd, cd := deref(b.DIMMs), deref(c.DIMMs)
			out.Memory.DIMMs = &DIMMSpec{
				Count:    orPtr(cd.Count, bd.Count),
				Size:     orPtr(cd.Size, bd.Size),
				SpeedMTs: orPtr(cd.SpeedMTs, bd.SpeedMTs),
				Type:     or(cd.Type, bd.Type),
				Slots:    or(cd.Slots, bd.Slots),
			}
		}
	}
	out.Disks = mergeNamed(base.Disks, child.Disks, func(d DiskSpec) string { return d.Name })
	out.NICs = mergeNamed(base.NICs, child.NICs, func(n NICSpec) string { return n.Name })
	if base.GPUs != nil || child.GPUs != nil {
		b, c := deref(base.GPUs), deref(child.GPUs)
		out.GPUs = &GPUSpec{
			Model:     or(c.Model, b.Model),
			Count:     orPtr(c.Count, b.Count),
			Memory:    orPtr(c.Memory, b.Memory),
			PCIeGen:   orPtr(c.PCIeGen, b.PCIeGen),
			PCIeWidth: orPtr(c.PCIeWidth, b.PCIeWidth),
			NVLinks:   orPtr(c.NVLinks, b.NVLinks),
			ECC:       or(c.ECC, b.ECC),
			VBIOS:     orPtr(c.VBIOS, b.VBIOS),
			Driver:    orPtr(c.Driver, b.Driver),
		}
	}
	if base.Firmware != nil || child.Firmware != nil {
		b, c := deref(base.Firmware), deref(child.Firmware)
		out.Firmware = &FirmwareSpec{
			BIOS:       orPtr(c.BIOS, b.BIOS),
			BMC:        orPtr(c.BMC, b.BMC),
			Components: mergeNamed(b.Components, c.Components, func(s ComponentSpec) string { return strings.Join(s.ID, "\x00") }),
		}
	}
	out.BurnIn = mergeNamed(base.BurnIn, child.BurnIn, func(b BurnInCheck) string { return b.Name })
	return &out
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func or[S ~[]string | ~string](child, base S) S {
	if len(child) > 0 {
		return child
	}
	return base
}

func orPtr[T any](child, base *T) *T {
	if child != nil {
		return child
	}
	return base
}

func mergeNamed[T any](base, child []T, name func(T) string) []T {
	if len(base) == 0 && len(child) == 0 {
		return nil
	}
	out := append([]T(nil), base...)
	for _, c := range child {
		replaced := false
		for i := range out {
			if name(out[i]) == name(c) {
				out[i], replaced = c, true
				break
			}
		}
		if !replaced {
			out = append(out, c)
		}
	}
	return out
}

// ErrNotFound is returned for a profile name the catalog does not hold.
var ErrNotFound = errors.New("profile not found")

// Catalog holds profiles by name and resolves their inheritance.
type Catalog struct {
	byName map[string]*Profile
}

// NewCatalog builds a catalog; a name given twice is an error.
func NewCatalog(ps ...*Profile) (*Catalog, error) {
	c := &Catalog{byName: map[string]*Profile{}}
	for _, p := range ps {
		if err := c.Add(p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Add adds one parsed profile.
func (c *Catalog) Add(p *Profile) error {
	if old, ok := c.byName[p.Name]; ok {
		return fmt.Errorf("profile %q in %s is already defined in %s; rename one of them", p.Name, p.File, old.File)
	}
	c.byName[p.Name] = p
	return nil
}

// Names lists the profile names, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.byName))
	for n := range c.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Raw returns a profile as written, without inheritance applied.
func (c *Catalog) Raw(name string) (*Profile, error) {
	p, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q; known profiles: %s", ErrNotFound, name, strings.Join(c.Names(), ", "))
	}
	return p, nil
}

// Get returns a profile with its `extends:` chain applied.
func (c *Catalog) Get(name string) (*Profile, error) {
	p, err := c.Raw(name)
	if err != nil {
		return nil, err
	}
	return c.Resolve(p)
}

// Resolve applies p's `extends:` chain from this catalog. p need not be in
// the catalog (a file being linted).
func (c *Catalog) Resolve(p *Profile) (*Profile, error) {
	chain := []*Profile{p}
	seen := map[string]bool{p.Name: true}
	for cur := p; cur.Extends != ""; {
		base, ok := c.byName[cur.Extends]
		if !ok {
			return nil, fmt.Errorf("profile %q extends %q: %w; known profiles: %s", cur.Name, cur.Extends, ErrNotFound, strings.Join(c.Names(), ", "))
		}
		if seen[base.Name] {
			return nil, fmt.Errorf("profile %q: extends cycle through %q", p.Name, base.Name)
		}
		seen[base.Name] = true
		chain = append(chain, base)
		cur = base
	}
	out := chain[len(chain)-1]
	for i := len(chain) - 2; i >= 0; i-- {
		out = Inherit(out, chain[i])
	}
	return out, nil
}

// Matches reports whether the profile's match section fits the system. A
// profile with an empty match section (an abstract base) matches nothing.
func (p *Profile) Matches(sys inventory.System) bool {
	m := p.Match
	if len(m.Vendor) == 0 && len(m.Model) == 0 && len(m.SKU) == 0 {
		return false
	}
	return m.Vendor.Match(sys.Vendor) && m.Model.Match(sys.Model) && (len(m.SKU) == 0 || m.SKU.Match(sys.SKU))
}

// Match returns the resolved profiles whose match section fits the system,
// the most specific first (most match fields set, then name).
func (c *Catalog) Match(sys inventory.System) ([]*Profile, error) {
	var out []*Profile
	for _, name := range c.Names() {
		p, err := c.Get(name)
		if err != nil {
			return nil, err
		}
		if p.Matches(sys) {
			out = append(out, p)
		}
	}
	spec := func(p *Profile) int {
		return btoi(len(p.Match.Vendor) > 0) + btoi(len(p.Match.Model) > 0) + btoi(len(p.Match.SKU) > 0)
	}
	sort.SliceStable(out, func(i, j int) bool { return spec(out[i]) > spec(out[j]) })
	return out, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

//go:embed bundled/*.yaml
var bundledFS embed.FS

// Bundled returns the partner profiles compiled into Rackstrap.
func Bundled() (*Catalog, error) {
	entries, err := bundledFS.ReadDir("bundled")
	if err != nil {
		return nil, fmt.Errorf("bundled profiles: %w", err)
	}
	c := &Catalog{byName: map[string]*Profile{}}
	for _, e := range entries {
		data, err := bundledFS.ReadFile(path.Join("bundled", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("bundled profiles: %w", err)
		}
		p, err := Parse("bundled:"+e.Name(), data)
		if err != nil {
			return nil, fmt.Errorf("bundled profiles: %w", err)
		}
		if err := c.Add(p); err != nil {
			return nil, fmt.Errorf("bundled profiles: %w", err)
		}
	}
	for _, n := range c.Names() {
		if _, err := c.Get(n); err != nil {
			return nil, fmt.Errorf("bundled profiles: %w", err)
		}
	}
	return c, nil
}

// BundledSource returns the YAML text of a bundled profile as shipped
// (comments citing the specs included).
func BundledSource(name string) ([]byte, error) {
	c, err := Bundled()
	if err != nil {
		return nil, err
	}
	p, err := c.Raw(name)
	if err != nil {
		return nil, err
	}
	return bundledFS.ReadFile(path.Join("bundled", strings.TrimPrefix(p.File, "bundled:")))
}

// LoadFiles parses profile files into the catalog (site profiles beside
// the bundled ones). Every file's errors are reported, joined.
func (c *Catalog) LoadFiles(paths ...string) error {
	var errs []error
	for _, f := range paths {
		p, err := Load(f)
		if err == nil {
			err = c.Add(p)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
