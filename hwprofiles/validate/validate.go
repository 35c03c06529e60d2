// Package validate checks a machine's merged inventory against its hardware
// profile and returns findings a technician can act on: which rule, which
// component and where (slot, PCI address, DIMM slot), what was expected,
// what was found, how bad it is, and what to do.
//
// Any finding of severity error makes the verdict Quarantine; warnings and
// info pass. Validation is a pure function of its inputs: the same inventory
// and profile always give the same findings in the same order.
package validate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
)

// Severity is how bad a finding is.
type Severity string

const (
	// Error: the node must not reach the cluster; it is quarantined.
	Error Severity = "error"
	// Warning: worth a look; the node passes.
	Warning Severity = "warning"
	// Info: recorded for the report.
	Info Severity = "info"
)

// Verdict is the outcome of a validation.
type Verdict string

const (
	Pass       Verdict = "pass"
	Quarantine Verdict = "quarantine"
)

// Finding is one problem (or note) about one component.
type Finding struct {
	// Rule identifies the check: "gpu.pcie-width", "memory.dimm-missing".
	// Rules lists them all.
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	// Component is the kind of part: system, cpu, memory, disk, nic, gpu,
	// bios, bmc, firmware, inventory.
	Component string `json:"component"`
	// Location says where the part is: "SXM5 (0000:9d:00.0)", "DIMM
	// CPU1_DIMM_B1", "nic ibp40s0 (0000:40:00.0)". Empty for whole-system
	// findings.
	Location string `json:"location,omitempty"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	// Message is the finding in one sentence.
	Message string `json:"message"`
	// Hint tells the technician what to do.
	Hint string `json:"hint,omitempty"`
}

func (f Finding) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", f.Severity, f.Rule)
	if f.Location != "" {
		fmt.Fprintf(&b, " at %s", f.Location)
	}
	fmt.Fprintf(&b, ": %s", f.Message)
	if f.Hint != "" {
		fmt.Fprintf(&b, " (%s)", f.Hint)
	}
	return b.String()
}

// Result is a validation's outcome.
type Result struct {
	Profile  string    `json:"profile"`
	Verdict  Verdict   `json:"verdict"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	Findings []Finding `json:"findings"`
}

// Rules are the rule ids this package emits, with what each checks.
var Rules = map[string]string{
	"system.match":                "the system's vendor, model and SKU match the profile",
	"cpu.sockets":                 "number of processor sockets",
	"cpu.model":                   "processor model",
	"cpu.cores":                   "cores per socket",
	"cpu.threads":                 "threads per socket",
	"memory.total":                "installed memory",
	"memory.dimm-count":           "number of populated DIMMs",
	"memory.dimm-missing":         "a DIMM slot that should be populated is empty",
	"memory.dimm-size":            "size of each DIMM",
	"memory.dimm-speed":           "configured speed of each DIMM",
	"memory.dimm-type":            "type of each DIMM",
	"disk.count":                  "number of drives in a drive group",
	"disk.size":                   "a drive of the group's model and type with the wrong size",
	"disk.firmware":               "drive firmware version",
	"nic.count":                   "number of ports in a NIC group",
	"nic.speed":                   "negotiated link speed of each port",
	"nic.firmware":                "NIC firmware version",
	"gpu.driver":                  "the GPU driver answered in-band (NVML)",
	"gpu.driver-version":          "GPU driver version",
	"gpu.count":                   "number of GPUs",
	"gpu.model":                   "GPU model",
	"gpu.memory":                  "GPU memory",
	"gpu.pcie-gen":                "PCIe generation the GPU's link can train to",
	"gpu.pcie-width":              "PCIe link width of each GPU",
	"gpu.nvlink":                  "NVLink links up on each GPU",
	"gpu.ecc":                     "ECC mode of each GPU",
	"gpu.vbios":                   "GPU VBIOS version",
	"bios.version":                "system BIOS version",
	"bmc.version":                 "BMC firmware version",
	"firmware.component":          "version of a firmware inventory component",
	"firmware.component-missing":  "a required firmware component is absent from the inventory",
	"inventory.conflict":          "the in-band and out-of-band inventories disagree on a fact",
	"inventory.identity-mismatch": "the host and its BMC report different serial numbers or UUIDs",
	"inventory.seen-out-of-band":  "a part the BMC reports but the host does not see",
	"inventory.unreported":        "an expected fact was not reported, so it could not be checked",
}

// Validate checks inv (normally inventory.Merge of the in-band and
// out-of-band inventories) against a resolved profile.
func Validate(inv *inventory.Inventory, p *profile.Profile) Result {
	v := &validator{inv: inv}
	v.system(p)
	if p.CPU != nil {
		v.cpu(p.CPU)
	}
	if p.Memory != nil {
		v.memory(p.Memory)
	}
	v.disks(p.Disks)
	v.nics(p.NICs)
	if p.GPUs != nil {
		v.gpus(p.GPUs)
	}
	if p.Firmware != nil {
		v.firmware(p.Firmware)
	}
	v.conflicts()
	res := Result{Profile: p.Name, Verdict: Pass, Findings: v.findings}
	if res.Findings == nil {
		res.Findings = []Finding{}
	}
	for _, f := range res.Findings {
		switch f.Severity {
		case Error:
			res.Errors++
			res.Verdict = Quarantine
		case Warning:
			res.Warnings++
		}
	}
	return res
}

type validator struct {
	inv      *inventory.Inventory
	findings []Finding
}

func (v *validator) add(f Finding) { v.findings = append(v.findings, f) }

func (v *validator) unreported(component, location, what, expected string) {
	v.add(Finding{Rule: "inventory.unreported", Severity: Warning, Component: component, Location: location,
		Expected: expected, Actual: "not reported",
		Message: what + " was not reported, so it could not be checked",
		Hint:    "check that the agent and the BMC inventory ran completely; re-run inspection"})
}

func (v *validator) system(p *profile.Profile) {
	m := p.Match
	if len(m.Vendor) == 0 && len(m.Model) == 0 && len(m.SKU) == 0 {
		return
	}
	s := v.inv.System
	if p.Matches(s) {
		return
	}
	var exp []string
	for _, part := range []struct {
		name string
		pat  profile.Patterns
	}{{"vendor", m.Vendor}, {"model", m.Model}, {"SKU", m.SKU}} {
		if len(part.pat) > 0 {
			exp = append(exp, part.name+" "+part.pat.String())
		}
	}
	v.add(Finding{Rule: "system.match", Severity: Error, Component: "system",
		Expected: strings.Join(exp, "; "), Actual: strings.TrimSpace(fmt.Sprintf("vendor %q, model %q, SKU %q", s.Vendor, s.Model, s.SKU)),
		Message: fmt.Sprintf("this system is not a %s", p.Name),
		Hint:    "check the node's profile assignment in the rack manifest, or the system's SMBIOS/FRU data"})
}

func (v *validator) cpu(c *profile.CPUSpec) {
	cpus := v.inv.CPUs
	if len(cpus) == 0 {
		v.unreported("cpu", "", "the processor inventory", "processors")
		return
	}
	if c.Sockets != nil && !c.Sockets.OK(len(cpus)) {
		v.add(Finding{Rule: "cpu.sockets", Severity: Error, Component: "cpu",
			Expected: c.Sockets.String(), Actual: strconv.Itoa(len(cpus)),
			Message: fmt.Sprintf("%d processor sockets populated, expected %s", len(cpus), c.Sockets),
			Hint:    "check that every CPU socket is populated and the processor is seated; a CPU that failed POST is not reported"})
	}
	for _, cpu := range cpus {
		loc := cpu.Socket
		if len(c.Model) > 0 && !c.Model.Match(cpu.Model) {
			v.add(Finding{Rule: "cpu.model", Severity: Error, Component: "cpu", Location: loc,
				Expected: c.Model.String(), Actual: cpu.Model,
				Message: fmt.Sprintf("processor %q is not the expected model", cpu.Model),
				Hint:    "the system was built with a different CPU SKU than the profile; check the order with the vendor"})
		}
		if c.Cores != nil {
			if cpu.Cores == 0 {
				v.unreported("cpu", loc, "the core count", c.Cores.String())
			} else if !c.Cores.OK(cpu.Cores) {
				v.add(Finding{Rule: "cpu.cores", Severity: Error, Component: "cpu", Location: loc,
					Expected: c.Cores.String(), Actual: strconv.Itoa(cpu.Cores),
					Message: fmt.Sprintf("%d cores, expected %s", cpu.Cores, c.Cores),
					Hint:    "check BIOS settings that disable cores (active core count), or the CPU SKU"})
			}
		}
		if c.Threads != nil {
			if cpu.Threads == 0 {
				v.unreported("cpu", loc, "the thread count", c.Threads.String())
			} else if !c.Threads.OK(cpu.Threads) {
				v.add(Finding{Rule: "cpu.threads", Severity: Error, Component: "cpu", Location: loc,
					Expected: c.Threads.String(), Actual: strconv.Itoa(cpu.Threads),
					Message: fmt.Sprintf("%d threads, expected %s", cpu.Threads, c.Threads),
					Hint:    "check the Hyper-Threading/SMT setting in the BIOS"})
			}
		}
	}
}

func (v *validator) memory(m *profile.MemorySpec) {
	mem := v.inv.Memory
	if m.Total != nil {
		total := mem.InstalledBytes()
		switch {
		case total == 0:
			v.unreported("memory", "", "the installed memory", m.Total.String())
		case !m.Total.OK(total):
			v.add(Finding{Rule: "memory.total", Severity: Error, Component: "memory",
				Expected: m.Total.String(), Actual: profile.FormatSize(total),
				Message: fmt.Sprintf("%s of memory installed, expected %s", profile.FormatSize(total), m.Total),
				Hint:    "check the DIMM findings for missing or wrong-size DIMMs"})
		}
	}
	d := m.DIMMs
	if d == nil {
		return
	}
	if len(mem.DIMMs) == 0 {
		v.unreported("memory", "", "the DIMM population", "DIMMs")
		return
	}
	populated := mem.PopulatedDIMMs()
	short := false
	if d.Count != nil && !d.Count.OK(len(populated)) {
		short = true
		exp := d.Count.String()
		hint := "check which slots are empty against the vendor's population guide and reseat or replace the DIMMs"
		if want, ok := d.Count.Min(); ok && len(populated) < want {
			hint = "one or more DIMMs are missing or not detected: reseat or replace them (see the empty slots)"
		}
		v.add(Finding{Rule: "memory.dimm-count", Severity: Error, Component: "memory",
			Expected: exp, Actual: strconv.Itoa(len(populated)),
			Message: fmt.Sprintf("%d DIMMs populated, expected %s", len(populated), exp), Hint: hint})
	}
	required := map[string]bool{}
	for _, s := range d.Slots {
		required[slotKey(s)] = true
	}
	seen := map[string]bool{}
	for _, dimm := range mem.DIMMs {
		k := slotKey(dimm.Slot)
		seen[k] = true
		loc := "DIMM " + dimm.Slot
		if dimm.Empty {
			if required[k] || (short && len(d.Slots) == 0) {
				v.add(Finding{Rule: "memory.dimm-missing", Severity: Error, Component: "memory", Location: loc,
					Expected: "populated", Actual: "empty",
					Message: fmt.Sprintf("DIMM slot %s is empty", dimm.Slot),
					Hint:    fmt.Sprintf("install or reseat the DIMM in slot %s", dimm.Slot)})
			}
			continue
		}
		if d.Size != nil && dimm.SizeBytes != 0 && !d.Size.OK(dimm.SizeBytes) {
			v.add(Finding{Rule: "memory.dimm-size", Severity: Error, Component: "memory", Location: loc,
				Expected: d.Size.String(), Actual: profile.FormatSize(dimm.SizeBytes),
				Message: fmt.Sprintf("DIMM in slot %s is %s, expected %s", dimm.Slot, profile.FormatSize(dimm.SizeBytes), d.Size),
				Hint:    fmt.Sprintf("replace the DIMM in slot %s with a %s module (part as the others)", dimm.Slot, d.Size)})
		}
		if d.SpeedMTs != nil && dimm.SpeedMTs != 0 && !d.SpeedMTs.OK(dimm.SpeedMTs) {
			v.add(Finding{Rule: "memory.dimm-speed", Severity: Warning, Component: "memory", Location: loc,
				Expected: d.SpeedMTs.String() + " MT/s", Actual: strconv.Itoa(dimm.SpeedMTs) + " MT/s",
				Message: fmt.Sprintf("DIMM in slot %s runs at %d MT/s, expected %s MT/s", dimm.Slot, dimm.SpeedMTs, d.SpeedMTs),
				Hint:    "check the BIOS memory frequency setting and that all DIMMs are the same part"})
		}
		if len(d.Type) > 0 && dimm.Type != "" && !d.Type.Match(dimm.Type) {
			v.add(Finding{Rule: "memory.dimm-type", Severity: Error, Component: "memory", Location: loc,
				Expected: d.Type.String(), Actual: dimm.Type,
				Message: fmt.Sprintf("DIMM in slot %s is %s, expected %s", dimm.Slot, dimm.Type, d.Type),
				Hint:    fmt.Sprintf("replace the DIMM in slot %s", dimm.Slot)})
		}
	}
	for _, s := range d.Slots {
		if !seen[slotKey(s)] {
			v.add(Finding{Rule: "memory.dimm-missing", Severity: Error, Component: "memory", Location: "DIMM " + s,
				Expected: "populated", Actual: "not reported",
				Message: fmt.Sprintf("DIMM slot %s is not reported", s),
				Hint:    fmt.Sprintf("install or reseat the DIMM in slot %s", s)})
		}
	}
}

func (v *validator) disks(groups []profile.DiskSpec) {
	claimed := make([]bool, len(v.inv.Disks))
	fits := func(g profile.DiskSpec, d inventory.BlockDevice) bool {
		return g.Model.Match(d.Model) && (len(g.Type) == 0 || g.Type.Match(string(d.Type)))
	}
	// Each drive belongs to the first group whose model, type and size it
	// fits.
	members := make([][]int, len(groups))
	for gi, g := range groups {
		for i, d := range v.inv.Disks {
			if !claimed[i] && fits(g, d) && (g.Size == nil || g.Size.OK(d.SizeBytes)) {
				claimed[i] = true
				members[gi] = append(members[gi], i)
			}
		}
	}
	for gi, g := range groups {
		if g.Count != nil && !g.Count.OK(len(members[gi])) {
			what := describeSel(g.Model, g.Type)
			v.add(Finding{Rule: "disk.count", Severity: Error, Component: "disk", Location: "drive group " + g.Name,
				Expected: g.Count.String(), Actual: strconv.Itoa(len(members[gi])),
				Message: fmt.Sprintf("%d %s drives in group %s, expected %s", len(members[gi]), what, g.Name, g.Count),
				Hint:    "check that every drive is seated in its bay and detected by the controller; see other disk findings"})
			// Drives of the right kind that no group took because of
			// their size explain a short group: name them.
			if g.Size != nil {
				for i, d := range v.inv.Disks {
					if !claimed[i] && fits(g, d) {
						claimed[i] = true
						v.add(Finding{Rule: "disk.size", Severity: Error, Component: "disk", Location: diskLoc(d),
							Expected: g.Size.String(), Actual: profile.FormatSize(d.SizeBytes),
							Message: fmt.Sprintf("drive %s is %s, expected %s for group %s", d.Name, profile.FormatSize(d.SizeBytes), g.Size, g.Name),
							Hint:    fmt.Sprintf("replace the drive %s with the %s drive the profile expects", diskLoc(d), g.Size)})
					}
				}
			}
		}
		if g.Firmware != nil {
			for _, i := range members[gi] {
				d := v.inv.Disks[i]
				if d.Firmware == "" {
					v.unreported("disk", diskLoc(d), "the drive firmware version", g.Firmware.String())
				} else if !g.Firmware.OK(d.Firmware) {
					v.add(Finding{Rule: "disk.firmware", Severity: Error, Component: "disk", Location: diskLoc(d),
						Expected: g.Firmware.String(), Actual: d.Firmware,
						Message: fmt.Sprintf("drive %s firmware %s, expected %s", d.Name, d.Firmware, g.Firmware),
						Hint:    "update the drive firmware before hand-off"})
				}
			}
		}
	}
}

func diskLoc(d inventory.BlockDevice) string {
	loc := "disk " + d.Name
	if d.Slot != "" {
		loc = d.Slot + " (" + d.Name + ")"
	}
	if d.Serial != "" {
		loc += " serial " + d.Serial
	}
	return loc
}

func describeSel(model, typ profile.Patterns) string {
	var parts []string
	if len(typ) > 0 {
		parts = append(parts, strings.Join(typ, "/"))
	}
	if len(model) > 0 {
		parts = append(parts, model.String())
	}
	if len(parts) == 0 {
		return "matching"
	}
	return strings.Join(parts, " ")
}

func nicLoc(n inventory.NIC) string {
	loc := "nic " + n.Name
	if n.Name == "" {
		loc = "nic " + n.MAC
	}
	if n.Slot != "" {
		loc += " in " + n.Slot
	}
	if n.PCIAddress != "" {
		loc += " (" + n.PCIAddress + ")"
	}
	return loc
}

func (v *validator) nics(groups []profile.NICSpec) {
	claimed := make([]bool, len(v.inv.NICs))
	for _, g := range groups {
		var members []inventory.NIC
		for i, n := range v.inv.NICs {
			if !claimed[i] && g.Model.Match(n.Model) && g.Driver.Match(n.Driver) {
				claimed[i] = true
				members = append(members, n)
			}
		}
		if g.Count != nil && !g.Count.OK(len(members)) {
			v.add(Finding{Rule: "nic.count", Severity: Error, Component: "nic", Location: "NIC group " + g.Name,
				Expected: g.Count.String(), Actual: strconv.Itoa(len(members)),
				Message: fmt.Sprintf("%d %s ports in group %s, expected %s", len(members), describeSel(g.Model, g.Driver), g.Name, g.Count),
				Hint:    "check that every adapter is seated and enabled in the BIOS; a missing port often means a card is not detected"})
		}
		for _, n := range members {
			if g.SpeedGbps != nil {
				gbps := n.SpeedMbps / 1000
				switch {
				case n.SpeedMbps <= 0 || !n.LinkUp:
					v.add(Finding{Rule: "nic.speed", Severity: Warning, Component: "nic", Location: nicLoc(n),
						Expected: g.SpeedGbps.String() + " Gb/s", Actual: "link down",
						Message: fmt.Sprintf("port %s has no link", n.Name),
						Hint:    "check the cable and the switch port" + lldpHint(n)})
				case !g.SpeedGbps.OK(gbps):
					v.add(Finding{Rule: "nic.speed", Severity: Error, Component: "nic", Location: nicLoc(n),
						Expected: g.SpeedGbps.String() + " Gb/s", Actual: strconv.Itoa(gbps) + " Gb/s",
						Message: fmt.Sprintf("port %s linked at %d Gb/s, expected %s Gb/s", n.Name, gbps, g.SpeedGbps),
						Hint:    "replace the cable or transceiver, and check the switch port configuration" + lldpHint(n)})
				}
			}
			if g.Firmware != nil {
				if n.Firmware == "" {
					v.unreported("nic", nicLoc(n), "the NIC firmware version", g.Firmware.String())
				} else if !g.Firmware.OK(n.Firmware) {
					v.add(Finding{Rule: "nic.firmware", Severity: Error, Component: "nic", Location: nicLoc(n),
						Expected: g.Firmware.String(), Actual: n.Firmware,
						Message: fmt.Sprintf("port %s firmware %s, expected %s", n.Name, n.Firmware, g.Firmware),
						Hint:    fmt.Sprintf("update the adapter firmware to %s (mlxfwmanager or the vendor's update bundle)", g.Firmware)})
				}
			}
		}
	}
}

func lldpHint(n inventory.NIC) string {
	if n.LLDP == nil || (n.LLDP.SystemName == "" && n.LLDP.PortID == "") {
		return ""
	}
	return fmt.Sprintf(" (cabled to %s port %s)", n.LLDP.SystemName, n.LLDP.PortID)
}

func gpuLoc(g inventory.GPU) string {
	name := fmt.Sprintf("GPU %d", g.Index)
	if g.Slot != "" {
		name = g.Slot
	}
	if g.PCIAddress != "" {
		name += " (" + g.PCIAddress + ")"
	}
	return name
}

func gpuWhere(g inventory.GPU) string {
	if g.Slot != "" {
		return "in slot " + g.Slot
	}
	if g.PCIAddress != "" {
		return "at " + g.PCIAddress
	}
	return fmt.Sprintf("index %d", g.Index)
}

func (v *validator) gpus(s *profile.GPUSpec) {
	gpus := v.inv.GPUs
	if v.inv.GPUDriverError != "" && len(gpus) == 0 {
		v.add(Finding{Rule: "gpu.driver", Severity: Error, Component: "gpu",
			Expected: "NVML available", Actual: v.inv.GPUDriverError,
			Message: "the GPUs could not be inventoried in-band: " + v.inv.GPUDriverError,
			Hint:    "boot an image with the NVIDIA driver (libnvidia-ml), then re-run inspection"})
	}
	if s.Count != nil && !s.Count.OK(len(gpus)) {
		hint := "check that every GPU is seated and powered; `lspci -d 10de:` lists the ones the host sees"
		if len(gpus) > 0 {
			hint += "; compare the reported slots with the expected layout"
		}
		v.add(Finding{Rule: "gpu.count", Severity: Error, Component: "gpu",
			Expected: s.Count.String(), Actual: strconv.Itoa(len(gpus)),
			Message: fmt.Sprintf("%d GPUs found, expected %s", len(gpus), s.Count), Hint: hint})
	}
	for _, g := range gpus {
		loc := gpuLoc(g)
		if len(s.Model) > 0 && g.Name != "" && !s.Model.Match(g.Name) {
			v.add(Finding{Rule: "gpu.model", Severity: Error, Component: "gpu", Location: loc,
				Expected: s.Model.String(), Actual: g.Name,
				Message: fmt.Sprintf("GPU %s is a %s", gpuWhere(g), g.Name),
				Hint:    "the GPU is not the model the profile expects; check the build with the vendor"})
		}
		if s.Memory != nil {
			if g.MemoryBytes == 0 {
				v.unreported("gpu", loc, "the GPU memory size", s.Memory.String())
			} else if !s.Memory.OK(g.MemoryBytes) {
				v.add(Finding{Rule: "gpu.memory", Severity: Error, Component: "gpu", Location: loc,
					Expected: s.Memory.String(), Actual: profile.FormatSize(g.MemoryBytes),
					Message: fmt.Sprintf("GPU %s has %s of memory, expected %s", gpuWhere(g), profile.FormatSize(g.MemoryBytes), s.Memory),
					Hint:    "a GPU reporting less memory may have retired pages or be a different SKU: run the DCGM memory diagnostic"})
			}
		}
		if s.PCIeGen != nil {
			// The current generation drops when an idle GPU saves power, so
			// the check uses the highest generation the link can train to
			// (NVML's max link generation for device and system) when known.
			gen, field := g.MaxPCIeGen, "maximum"
			if gen == 0 {
				gen, field = g.PCIeGen, "current"
			}
			switch {
			case gen == 0:
				v.unreported("gpu", loc, "the PCIe link generation", "Gen"+s.PCIeGen.String())
			case !s.PCIeGen.OK(gen):
				sev := Error
				if field == "current" {
					sev = Warning // may be idle power saving
				}
				v.add(Finding{Rule: "gpu.pcie-gen", Severity: sev, Component: "gpu", Location: loc,
					Expected: "Gen" + s.PCIeGen.String(), Actual: fmt.Sprintf("Gen%d (%s)", gen, field),
					Message: fmt.Sprintf("GPU %s links at PCIe Gen%d, expected Gen%s", gpuWhere(g), gen, s.PCIeGen),
					Hint:    fmt.Sprintf("reseat the GPU %s and check the BIOS PCIe link speed setting: link is Gen%d, expected Gen%s", gpuWhere(g), gen, s.PCIeGen)})
			}
		}
		if s.PCIeWidth != nil {
			switch {
			case g.PCIeWidth == 0:
				v.unreported("gpu", loc, "the PCIe link width", "x"+s.PCIeWidth.String())
			case !s.PCIeWidth.OK(g.PCIeWidth):
				v.add(Finding{Rule: "gpu.pcie-width", Severity: Error, Component: "gpu", Location: loc,
					Expected: "x" + s.PCIeWidth.String(), Actual: fmt.Sprintf("x%d", g.PCIeWidth),
					Message: fmt.Sprintf("GPU %s links at x%d, expected x%s", gpuWhere(g), g.PCIeWidth, s.PCIeWidth),
					Hint:    fmt.Sprintf("reseat GPU %s: link is x%d, expected x%s", gpuWhere(g), g.PCIeWidth, s.PCIeWidth)})
			}
		}
		if s.NVLinks != nil {
			switch {
			case g.NVLinkTotal == 0 && g.NVLinkUp == 0:
				v.unreported("gpu", loc, "the NVLink state", s.NVLinks.String()+" links up")
			case !s.NVLinks.OK(g.NVLinkUp):
				v.add(Finding{Rule: "gpu.nvlink", Severity: Error, Component: "gpu", Location: loc,
					Expected: s.NVLinks.String() + " links up", Actual: fmt.Sprintf("%d of %d up", g.NVLinkUp, g.NVLinkTotal),
					Message: fmt.Sprintf("GPU %s has %d NVLink links up, expected %s", gpuWhere(g), g.NVLinkUp, s.NVLinks),
					Hint:    fmt.Sprintf("reseat GPU %s on the baseboard and check the NVSwitch fabric manager; if links stay down, replace the GPU", gpuWhere(g))})
			}
		}
		if s.ECC != "" {
			want := inventory.ECCMode(s.ECC)
			switch {
			case g.ECC == "":
				v.unreported("gpu", loc, "the ECC mode", s.ECC)
			case g.ECC != want && g.ECCPending == want:
				v.add(Finding{Rule: "gpu.ecc", Severity: Warning, Component: "gpu", Location: loc,
					Expected: s.ECC, Actual: fmt.Sprintf("%s (%s after reset)", g.ECC, g.ECCPending),
					Message: fmt.Sprintf("GPU %s ECC is %s until the next GPU reset", gpuWhere(g), g.ECC),
					Hint:    "reset the GPU (nvidia-smi -r) or reboot the node to apply the pending ECC mode"})
			case g.ECC != want:
				v.add(Finding{Rule: "gpu.ecc", Severity: Error, Component: "gpu", Location: loc,
					Expected: s.ECC, Actual: string(g.ECC),
					Message: fmt.Sprintf("GPU %s ECC is %s, expected %s", gpuWhere(g), g.ECC, s.ECC),
					Hint:    fmt.Sprintf("set ECC with `nvidia-smi -i %d -e %d` and reset the GPU", g.Index, btoi(want == inventory.ECCEnabled))})
			}
		}
		if s.VBIOS != nil {
			if g.VBIOS == "" {
				v.unreported("gpu", loc, "the VBIOS version", s.VBIOS.String())
			} else if !s.VBIOS.OK(g.VBIOS) {
				v.add(Finding{Rule: "gpu.vbios", Severity: Error, Component: "gpu", Location: loc,
					Expected: s.VBIOS.String(), Actual: g.VBIOS,
					Message: fmt.Sprintf("GPU %s VBIOS %s, expected %s", gpuWhere(g), g.VBIOS, s.VBIOS),
					Hint:    "update the GPU firmware with the vendor's firmware bundle (HGX/DGX firmware update container)"})
			}
		}
		if s.Driver != nil && g.DriverVersion != "" && !s.Driver.OK(g.DriverVersion) {
			v.add(Finding{Rule: "gpu.driver-version", Severity: Error, Component: "gpu", Location: loc,
				Expected: s.Driver.String(), Actual: g.DriverVersion,
				Message: fmt.Sprintf("GPU driver %s, expected %s", g.DriverVersion, s.Driver),
				Hint:    "build the node's image with a supported NVIDIA driver branch"})
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (v *validator) firmware(f *profile.FirmwareSpec) {
	check := func(rule, component, name, have string, want *profile.VersionRange, hint string) {
		if want == nil {
			return
		}
		if have == "" {
			v.unreported(component, "", "the "+name+" version", want.String())
			return
		}
		if !want.OK(have) {
			v.add(Finding{Rule: rule, Severity: Error, Component: component,
				Expected: want.String(), Actual: have,
				Message: fmt.Sprintf("%s version %s, expected %s", name, have, want),
				Hint:    hint})
		}
	}
	check("bios.version", "bios", "BIOS", v.inv.BIOS.Version, f.BIOS, "update the system BIOS before hand-off (vendor firmware bundle or Redfish UpdateService)")
	check("bmc.version", "bmc", "BMC firmware", v.inv.BMC.FirmwareVersion, f.BMC, "update the BMC firmware before hand-off (vendor firmware bundle or Redfish UpdateService)")
	for _, c := range f.Components {
		found := false
		for _, fc := range v.inv.Firmware {
			if !c.ID.Match(fc.ID) {
				continue
			}
			found = true
			loc := fc.ID
			if fc.Name != "" {
				loc += " (" + fc.Name + ")"
			}
			if fc.Version == "" {
				v.unreported("firmware", loc, "the component's version", c.Version.String())
			} else if !c.Version.OK(fc.Version) {
				v.add(Finding{Rule: "firmware.component", Severity: Error, Component: "firmware", Location: loc,
					Expected: c.Version.String(), Actual: fc.Version,
					Message: fmt.Sprintf("firmware %s is %s, expected %s", fc.ID, fc.Version, c.Version),
					Hint:    "update this component with the vendor's firmware bundle"})
			}
		}
		if !found && c.Required {
			v.add(Finding{Rule: "firmware.component-missing", Severity: Error, Component: "firmware", Location: c.ID.String(),
				Expected: c.Version.String(), Actual: "absent",
				Message: fmt.Sprintf("no firmware component matching %s in the inventory", c.ID),
				Hint:    "check that the BMC's firmware inventory lists the component; the part may be missing"})
		}
	}
}

// conflicts turns the merge's disagreements into findings: a part only the
// BMC sees is a warning with its location, other disagreements are info.
func (v *validator) conflicts() {
	for _, c := range v.inv.Conflicts {
		if c.InBand == "(absent)" {
			component := strings.TrimSuffix(strings.Split(c.Field, ".")[0], "s")
			v.add(Finding{Rule: "inventory.seen-out-of-band", Severity: Warning, Component: component,
				Location: strings.TrimPrefix(c.OutOfBand, "reported "),
				Expected: "visible to the host", Actual: "reported by the BMC only",
				Message: fmt.Sprintf("the BMC reports a %s (%s) the host does not see", component, strings.TrimPrefix(c.OutOfBand, "reported ")),
				Hint:    "reseat the part and check its power; the host may not have enumerated it"})
			continue
		}
		if c.Field == "system.serial" || c.Field == "system.uuid" {
			v.add(Finding{Rule: "inventory.identity-mismatch", Severity: Error, Component: "system", Location: c.Field,
				Expected: c.OutOfBand + " (out-of-band)", Actual: c.InBand + " (in-band)",
				Message: fmt.Sprintf("the host and its BMC report different %s: the BMC may belong to another machine", strings.TrimPrefix(c.Field, "system.")),
				Hint:    "check which BMC this node was enrolled with (BMC cabling and address in the rack manifest); re-enrol the node if they are swapped"})
			continue
		}
		v.add(Finding{Rule: "inventory.conflict", Severity: Info, Component: "inventory", Location: c.Field,
			Expected: c.OutOfBand + " (out-of-band)", Actual: c.InBand + " (in-band)",
			Message: fmt.Sprintf("in-band and out-of-band disagree on %s; kept the %s value", c.Field, c.Kept),
			Hint:    "usually a stale BMC cache; if it persists, update the FRU data or the BMC firmware"})
	}
}

// slotKey normalises a slot locator: case, spaces and punctuation ignored.
func slotKey(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ErrNoProfile is returned by Pick when no profile matches a system.
var ErrNoProfile = errors.New("no profile matches the system")

// Pick returns the resolved profile name from the catalog, or, when name is
// empty, the most specific profile whose match section fits the system.
func Pick(cat *profile.Catalog, name string, sys inventory.System) (*profile.Profile, error) {
	if name != "" {
		return cat.Get(name)
	}
	ps, err := cat.Match(sys)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w: vendor %q, model %q, SKU %q; assign a profile to the node or add a site profile that matches it", ErrNoProfile, sys.Vendor, sys.Model, sys.SKU)
	}
	return ps[0], nil
}

// Node is the controller's entry point: it merges a node's in-band and
// out-of-band inventories (either may be nil), picks its profile (by name,
// or by matching when name is empty) and validates. It returns the merged
// inventory (to store) and the result (its findings go on the timeline).
func Node(cat *profile.Catalog, name string, inband, outofband *inventory.Inventory) (*inventory.Inventory, Result, error) {
	merged := inventory.Merge(inband, outofband)
	p, err := Pick(cat, name, merged.System)
	if err != nil {
		return merged, Result{}, fmt.Errorf("validate: %w", err)
	}
	return merged, Validate(merged, p), nil
}
