package slurm

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Node is what Rackstrap tells Slurm about a machine: the facts it verified.
type Node struct {
	Name string // Slurm NodeName (the node's short host name)
	Addr string // NodeAddr: IP address or resolvable host name

	CPUs           int // logical CPUs (Sockets × CoresPerSocket × ThreadsPerCore)
	Sockets        int // 0: not given to Slurm
	CoresPerSocket int
	ThreadsPerCore int
	RealMemoryMiB  int

	// GPUModel is the Gres type ("h100"); a marketing name ("NVIDIA H100
	// 80GB HBM3") is normalised with GresType. Empty with GPUCount > 0
	// gives an untyped "gpu:N".
	GPUModel string
	GPUCount int
	// GPUDevices are the device files of the GPUs (/dev/nvidia0, …), for
	// gres.conf; empty when unknown (gres.conf then gets Count=).
	GPUDevices []string
	// GPUCores are the cores each device is close to, parallel to
	// GPUDevices, in Slurm's range form ("0-55"); empty when unknown.
	GPUCores []string

	// Features are the node's Slurm features: profile, GPU model, rack,
	// firmware baseline ("dgx-h100", "h100", "rack-r1", "fw-2024.3").
	Features []string
}

// MemoryReservePercent is the part of the installed memory FromInventory
// leaves out of RealMemory. slurmd reports MemTotal, which is below the
// installed total by the kernel's own reservations (struct page alone is
// 1.6%), and slurmctld drains a node whose slurmd reports less than its
// RealMemory ("Low RealMemory").
const MemoryReservePercent = 3

// FromInventory builds the Node of a machine from its verified inventory
// (in-band or merged): CPU topology, memory, GPUs. features are added as
// they are, followed by the GPU's Gres type when it is not among them.
func FromInventory(name, addr string, inv *inventory.Inventory, features []string) (Node, error) {
	fail := func(format string, a ...any) (Node, error) {
		return Node{}, &Error{Op: "node from inventory", Node: name, Kind: ErrInvalid, Err: fmt.Errorf(format, a...),
			Remedy: "check the node's inventory (rackstrap node show); Slurm needs whole, uniform CPU sockets and a memory size"}
	}
	if inv == nil {
		return fail("no inventory")
	}
	n := Node{Name: name, Addr: addr}
	if len(inv.CPUs) == 0 {
		return fail("inventory lists no CPUs")
	}
	cores, threads := inv.CPUs[0].Cores, inv.CPUs[0].Threads
	for _, c := range inv.CPUs {
		if c.Cores != cores || c.Threads != threads {
			return fail("sockets differ (%s: %d cores/%d threads, %s: %d cores/%d threads); Slurm describes a node with uniform sockets",
				inv.CPUs[0].Socket, cores, threads, c.Socket, c.Cores, c.Threads)
		}
	}
	if cores <= 0 {
		return fail("inventory reports no core count for %s", inv.CPUs[0].Socket)
	}
	if threads == 0 {
		threads = cores
	}
	if threads%cores != 0 {
		return fail("%d threads on %d cores per socket is not a whole number of threads per core", threads, cores)
	}
	n.Sockets, n.CoresPerSocket, n.ThreadsPerCore = len(inv.CPUs), cores, threads/cores
	n.CPUs = n.Sockets * n.CoresPerSocket * n.ThreadsPerCore

	mib := inv.Memory.InstalledBytes() >> 20
	n.RealMemoryMiB = int(mib * (100 - MemoryReservePercent) / 100)
	if n.RealMemoryMiB <= 0 {
		return fail("inventory reports no memory")
	}

	if len(inv.GPUs) > 0 {
		types := map[string]bool{}
		for _, g := range inv.GPUs {
			t, err := GresType(g.Name)
			if err != nil {
				return fail("GPU %d: %v", g.Index, err)
			}
			types[t] = true
			n.GPUModel = t
		}
		if len(types) > 1 {
			return fail("mixed GPU models %v; one node carries one Gres type", slices.Sorted(maps.Keys(types)))
		}
		n.GPUCount = len(inv.GPUs)
		// NVML indices are the /dev/nvidiaN minor numbers on the usual
		// systems; the BMC's list positions are not.
		if inv.Source != inventory.OutOfBand && strings.Contains(strings.ToLower(inv.GPUs[0].Name), "nvidia") {
			idx := make([]int, 0, len(inv.GPUs))
			for _, g := range inv.GPUs {
				if slices.Contains(idx, g.Index) {
					return fail("two GPUs with index %d", g.Index)
				}
				idx = append(idx, g.Index)
			}
			slices.Sort(idx)
			for _, i := range idx {
				n.GPUDevices = append(n.GPUDevices, "/dev/nvidia"+strconv.Itoa(i))
			}
		}
	}
	n.Features = append(n.Features, features...)
	if n.GPUModel != "" && !slices.Contains(n.Features, n.GPUModel) {
		n.Features = append(n.Features, n.GPUModel)
	}
	if err := n.validate(); err != nil {
		return Node{}, err
	}
	return n, nil
}

// vendorWords are dropped from a GPU's marketing name before its model.
var vendorWords = map[string]bool{"nvidia": true, "amd": true, "tesla": true, "geforce": true, "quadro": true, "instinct": true}

// GresType normalises a GPU's name to its Slurm Gres type: the model,
// lower case, without vendor, memory or form factor. "NVIDIA H100 80GB
// HBM3" → "h100", "NVIDIA A100-SXM4-80GB" → "a100", "NVIDIA GeForce RTX
// 4090" → "rtx4090", "AMD Instinct MI300X" → "mi300x"; "h100" stays "h100".
// Variants of one model (H100 SXM, PCIe, NVL) share a type; tell them
// apart with features where a site needs to.
func GresType(model string) (string, error) {
	var words []string
	for _, w := range strings.Fields(strings.ToLower(model)) {
		if !vendorWords[w] {
			words = append(words, w)
		}
	}
	if len(words) == 0 {
		return "", fmt.Errorf("GPU name %q names no model", model)
	}
	w := words[0]
	if (w == "rtx" || w == "gtx") && len(words) > 1 {
		w += words[1]
	}
	w, _, _ = strings.Cut(w, "-")
	t := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return -1
	}, w)
	if t == "" || t[0] == '_' {
		return "", fmt.Errorf("GPU name %q gives no usable Gres type", model)
	}
	return t, nil
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$`)
	featureRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	deviceRE  = regexp.MustCompile(`^/dev/[A-Za-z0-9_./-]+$`)
	coresRE   = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)
)

// validName checks a NodeName. scontrol joins its arguments into one
// slurm.conf-style line, so every value must be free of spaces, '=', ','
// and hostlist brackets.
func validName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("node name %q: use letters, digits, '.', '_' and '-' (at most 64, not starting with a symbol)", name)
	}
	return nil
}

func validFeature(f string) error {
	if !featureRE.MatchString(f) {
		return fmt.Errorf("feature %q: use letters, digits, '.', '_' and '-' (e.g. rack-r1, not rack=r1)", f)
	}
	return nil
}

// validate checks what Register sends to scontrol.
func (n Node) validate() error {
	var errs []error
	if err := validName(n.Name); err != nil {
		errs = append(errs, err)
	}
	if _, err := netip.ParseAddr(n.Addr); err != nil && !hostRE.MatchString(n.Addr) {
		errs = append(errs, fmt.Errorf("address %q is neither an IP address nor a host name", n.Addr))
	}
	if n.CPUs <= 0 {
		errs = append(errs, fmt.Errorf("CPUs %d: must be positive", n.CPUs))
	}
	topo := []int{n.Sockets, n.CoresPerSocket, n.ThreadsPerCore}
	switch {
	case n.Sockets == 0 && n.CoresPerSocket == 0 && n.ThreadsPerCore == 0:
	case slices.ContainsFunc(topo, func(v int) bool { return v <= 0 }):
		errs = append(errs, fmt.Errorf("sockets %d, cores per socket %d, threads per core %d: give all three or none", n.Sockets, n.CoresPerSocket, n.ThreadsPerCore))
	case n.Sockets*n.CoresPerSocket*n.ThreadsPerCore != n.CPUs:
		errs = append(errs, fmt.Errorf("CPUs %d is not sockets %d × cores %d × threads %d", n.CPUs, n.Sockets, n.CoresPerSocket, n.ThreadsPerCore))
	}
	if n.RealMemoryMiB <= 0 {
		errs = append(errs, fmt.Errorf("real memory %d MiB: must be positive", n.RealMemoryMiB))
	}
	if n.GPUCount < 0 {
		errs = append(errs, fmt.Errorf("GPU count %d is negative", n.GPUCount))
	}
	if n.GPUModel != "" {
		if _, err := GresType(n.GPUModel); err != nil {
			errs = append(errs, err)
		}
	}
	if n.GPUCount == 0 && (n.GPUModel != "" || len(n.GPUDevices) > 0) {
		errs = append(errs, fmt.Errorf("GPU model %q or devices given with a GPU count of 0", n.GPUModel))
	}
	if len(n.GPUDevices) > 0 && len(n.GPUDevices) != n.GPUCount {
		errs = append(errs, fmt.Errorf("%d GPU devices for %d GPUs", len(n.GPUDevices), n.GPUCount))
	}
	for _, d := range n.GPUDevices {
		if !deviceRE.MatchString(d) {
			errs = append(errs, fmt.Errorf("GPU device %q: want a path under /dev", d))
		}
	}
	if len(n.GPUCores) > 0 && len(n.GPUCores) != len(n.GPUDevices) {
		errs = append(errs, fmt.Errorf("%d GPU core ranges for %d GPU devices", len(n.GPUCores), len(n.GPUDevices)))
	}
	for _, c := range n.GPUCores {
		if c != "" && !coresRE.MatchString(c) {
			errs = append(errs, fmt.Errorf("GPU cores %q: want Slurm's range form, e.g. 0-55", c))
		}
	}
	for _, f := range n.Features {
		if err := validFeature(f); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &Error{Op: "validate", Node: n.Name, Kind: ErrInvalid, Err: err,
			Remedy: "fix the node's facts or features before handing it off"}
	}
	return nil
}

// gres is the node's Gres string: "gpu:h100:8", "gpu:8", or "".
func (n Node) gres() string {
	if n.GPUCount <= 0 {
		return ""
	}
	if n.GPUModel == "" {
		return "gpu:" + strconv.Itoa(n.GPUCount)
	}
	t, err := GresType(n.GPUModel)
	if err != nil {
		return ""
	}
	return "gpu:" + t + ":" + strconv.Itoa(n.GPUCount)
}

// GresConf renders the node's gres.conf lines (for the node's slurmd; the
// controller needs none for a dynamic node): one line per GPU with its
// device file and, where known, its cores; Count= when the device files are
// unknown; "" for a node without GPUs.
func GresConf(n Node) string {
	if n.GPUCount <= 0 {
		return ""
	}
	var b strings.Builder
	typ := ""
	if n.GPUModel != "" {
		t, err := GresType(n.GPUModel)
		if err != nil {
			return fmt.Sprintf("# %s: no gres.conf: %v\n", n.Name, err)
		}
		typ = " Type=" + t
	}
	fmt.Fprintf(&b, "# %s: %d GPU(s), Gres=%s (rendered by rackstrap)\n", n.Name, n.GPUCount, n.gres())
	if len(n.GPUDevices) == 0 {
		fmt.Fprintf(&b, "NodeName=%s Name=gpu%s Count=%d\n", n.Name, typ, n.GPUCount)
		return b.String()
	}
	for i, d := range n.GPUDevices {
		fmt.Fprintf(&b, "NodeName=%s Name=gpu%s File=%s", n.Name, typ, d)
		if i < len(n.GPUCores) && n.GPUCores[i] != "" {
			fmt.Fprintf(&b, " Cores=%s", n.GPUCores[i])
		}
		b.WriteByte('\n')
	}
	return b.String()
}
