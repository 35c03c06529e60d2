package firmware

import (
	"fmt"
	"path/filepath"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/version"
)

// State is a component's standing against its baseline.
type State string

const (
	Compliant State = "compliant" // the required version, or at least the minimum
	Behind    State = "behind"    // older than required
	Ahead     State = "ahead"     // newer than the exact version required
	Unknown   State = "unknown"   // no comparable version, or not in the inventory
)

// Status is one component's standing.
type Status struct {
	Component string `json:"component"` // the component's id, or the rule's selector when no component matched
	Name      string `json:"name,omitempty"`
	Current   string `json:"current,omitempty"`
	Required  string `json:"required"` // "1.5.0" or ">= 26.36.1010"
	State     State  `json:"state"`
	// Package is the package file that brings a component that is behind
	// to the baseline ("" when the baseline names none).
	Package string `json:"package,omitempty"`
	Note    string `json:"note,omitempty"`
	// Rule is the index of the governing rule in Baseline.Components.
	Rule int `json:"rule"`
}

// Compliance compares components with a baseline: one Status per
// component the baseline governs, in inventory order, then one Unknown
// Status per rule that matched no component. Components no rule governs are
// left out.
func Compliance(b *Baseline, components []inventory.FirmwareComponent) []Status {
	var out []Status
	used := make([]bool, len(b.Components))
	for _, c := range components {
		i := b.ruleIndex(c)
		if i < 0 {
			continue
		}
		used[i] = true
		out = append(out, standing(b.Components[i], i, c))
	}
	for i, r := range b.Components {
		if !used[i] {
			out = append(out, Status{Component: r.Selector(), Required: r.Required(), State: Unknown, Rule: i,
				Note: "the BMC lists no component matching " + r.Selector()})
		}
	}
	return out
}

func (b *Baseline) ruleIndex(c inventory.FirmwareComponent) int {
	for i, r := range b.Components {
		if r.Matches(c) {
			return i
		}
	}
	return -1
}

func standing(r Rule, i int, c inventory.FirmwareComponent) Status {
	s := Status{Component: c.ID, Name: c.Name, Current: c.Version, Required: r.Required(), Rule: i}
	switch {
	case c.Version == "":
		s.State, s.Note = Unknown, "the BMC reports no version"
		return s
	case !version.Valid(c.Version):
		s.State, s.Note = Unknown, fmt.Sprintf("version %q cannot be compared", c.Version)
		return s
	case r.Minimum != "":
		s.State = Compliant
		if !version.AtLeast(c.Version, r.Minimum) {
			s.State = Behind
		}
	default:
		switch version.Compare(c.Version, r.Version) {
		case -1:
			s.State = Behind
		case 0:
			s.State = Compliant
		default:
			s.State, s.Note = Ahead, "newer than the baseline; not downgraded"
		}
	}
	if s.State == Behind {
		switch p := r.Package; {
		case p == nil:
			s.Note = "the baseline names no package for it"
		case version.Compare(c.Version, p.Version) >= 0:
			// Only possible with a minimum: the package would not raise it.
			s.Note = fmt.Sprintf("the baseline's package installs %s, not newer than the running one", p.Version)
		default:
			s.Package = filepath.Base(p.File)
		}
	}
	return s
}

// Summary counts states.
func Summary(ss []Status) map[State]int {
	m := map[State]int{}
	for _, s := range ss {
		m[s.State]++
	}
	return m
}
