// Package burnin runs the agent's "burn-in" task: quick checks of this
// machine, each reported as {"name","pass","message"}.
//
// The controller names checks after the tools a profile asks for
// (hwprofiles/profile.BurnInChecks). The agent runs quick stand-ins where
// it has one and says so in the message; a check it cannot run fails (a
// check that was asked for and not run must not pass):
//
//	memory, memtester             write and verify two patterns over MemoryMiB of RAM
//	disk, fio                     read the first DiskMiB of each disk
//	nic-link                      at least one physical NIC has link
//	gpu-*, dcgm-diag,             NVML health: the driver answers, every GPU reads
//	nccl-allreduce, nvbandwidth   (name, UUID), no NVLink down; "no NVIDIA driver" fails
//	anything else                 fails: not supported by this agent
package burnin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpu"
)

// Payload is a "burn-in" task's payload.
type Payload struct {
	Checks []string `json:"checks"`
}

// Check is one check's verdict.
type Check struct {
	Name    string `json:"name"`
	Pass    bool   `json:"pass"`
	Message string `json:"message"`
}

// Result is what the agent reports.
type Result struct {
	Checks []Check `json:"checks"`
}

// Failed lists the failed checks' names.
func (r Result) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c.Name)
		}
	}
	return out
}

// Summary is the task's message.
func (r Result) Summary() string {
	failed := r.Failed()
	s := fmt.Sprintf("%d of %d checks passed", len(r.Checks)-len(failed), len(r.Checks))
	if len(failed) > 0 {
		var parts []string
		for _, c := range r.Checks {
			if !c.Pass {
				parts = append(parts, c.Name+": "+c.Message)
			}
		}
		s += "; failed: " + strings.Join(parts, "; ")
	}
	return s
}

// Config says what the checks look at.
type Config struct {
	// SysRoot is where /sys and /proc are read (a fixture tree in tests).
	SysRoot string
	// Disks are the devices (or files) the disk check reads; nil: every
	// whole disk in SysRoot's /sys/block, as /dev/NAME.
	Disks []string
	// MemoryMiB is how much RAM the memory check writes and verifies
	// (default 256); DiskMiB how much of each disk the disk check reads
	// (default 64).
	MemoryMiB, DiskMiB int
	// ProbeGPUs reads the GPUs (gpu.Probe; a stub in tests).
	ProbeGPUs func() gpu.Result
	// ListDisks lists the whole disks' /dev paths when Disks is nil.
	ListDisks func(root string) ([]string, error)
}

// Run runs the named checks in order.
func Run(ctx context.Context, names []string, cfg Config) Result {
	if cfg.MemoryMiB <= 0 {
		cfg.MemoryMiB = 256
	}
	if cfg.DiskMiB <= 0 {
		cfg.DiskMiB = 64
	}
	if cfg.SysRoot == "" {
		cfg.SysRoot = "/"
	}
	var gpus *gpu.Result // probed once, when a GPU check asks
	res := Result{Checks: []Check{}}
	for _, name := range names {
		if ctx.Err() != nil {
			res.Checks = append(res.Checks, Check{Name: name, Message: "not run: " + ctx.Err().Error()})
			continue
		}
		var c Check
		switch {
		case name == "memory" || name == "memtester":
			c = memory(cfg.MemoryMiB)
		case name == "disk" || name == "fio":
			c = disks(ctx, cfg)
		case name == "nic-link":
			c = nicLink(cfg.SysRoot)
		case isGPUCheck(name):
			if gpus == nil {
				probe := cfg.ProbeGPUs
				if probe == nil {
					probe = gpu.Probe
				}
				g := probe()
				gpus = &g
			}
			c = gpuHealth(*gpus)
		default:
			c = Check{Message: "not supported by this agent (it runs memory, memtester, disk, fio, nic-link, gpu-*, dcgm-diag, nccl-allreduce, nvbandwidth)"}
		}
		c.Name = name
		if c.Pass && name != "memory" && name != "disk" && name != "nic-link" {
			c.Message += fmt.Sprintf(" (quick stand-in: %s itself was not run)", name)
		}
		res.Checks = append(res.Checks, c)
	}
	return res
}

func isGPUCheck(name string) bool {
	switch name {
	case "dcgm-diag", "nccl-allreduce", "nvbandwidth":
		return true
	}
	return strings.HasPrefix(name, "gpu-")
}

// NeedsGPUs says whether any of the checks reads the GPUs.
func NeedsGPUs(names []string) bool {
	for _, n := range names {
		if isGPUCheck(n) {
			return true
		}
	}
	return false
}

// memory writes two patterns (each word's own address mixed with a
// constant, then its complement) over mib MiB and reads them back.
func memory(mib int) Check {
	start := time.Now()
	words := mib << 20 / 8
	buf := make([]uint64, words)
	base := uint64(uintptr(unsafe.Pointer(&buf[0])))
	for pass, pat := range []uint64{0x5555_aaaa_3333_cccc, ^uint64(0x5555_aaaa_3333_cccc)} {
		for i := range buf {
			buf[i] = (base + uint64(i)*8) ^ pat
		}
		bad, first := 0, -1
		for i, v := range buf {
			if v != (base+uint64(i)*8)^pat {
				if first < 0 {
					first = i
				}
				bad++
			}
		}
		if bad > 0 {
			return Check{Message: fmt.Sprintf("%d of %d words read back wrong in pattern %d (first at byte %d of %d MiB): faulty memory", bad, words, pass+1, first*8, mib)}
		}
	}
	return Check{Pass: true, Message: fmt.Sprintf("wrote and verified 2 patterns over %d MiB in %v", mib, time.Since(start).Round(time.Millisecond))}
}

// disks reads the start of every disk.
func disks(ctx context.Context, cfg Config) Check {
	paths := cfg.Disks
	if paths == nil {
		if cfg.ListDisks == nil {
			return Check{Message: "no disk list: pass --disk"}
		}
		var err error
		if paths, err = cfg.ListDisks(cfg.SysRoot); err != nil {
			return Check{Message: err.Error()}
		}
	}
	if len(paths) == 0 {
		return Check{Message: "no disks found"}
	}
	var msgs []string
	pass := true
	buf := make([]byte, 8<<20)
	for _, p := range paths {
		start := time.Now()
		n, err := readStart(ctx, p, int64(cfg.DiskMiB)<<20, buf)
		if err != nil {
			pass = false
			msgs = append(msgs, fmt.Sprintf("%s: read failed after %d bytes: %v", p, n, err))
			continue
		}
		el := time.Since(start)
		msgs = append(msgs, fmt.Sprintf("%s: read %.1f MiB in %v (%.0f MiB/s)", p, float64(n)/(1<<20), el.Round(time.Millisecond), float64(n)/(1<<20)/max(el.Seconds(), 1e-3)))
	}
	return Check{Pass: pass, Message: strings.Join(msgs, "; ")}
}

func readStart(ctx context.Context, path string, limit int64, buf []byte) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var off int64
	for off < limit {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), limit-off)], off)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			if off == 0 {
				return 0, errors.New("empty")
			}
			return off, nil // a disk smaller than the limit
		}
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// nicLink passes when at least one physical NIC (one with a device in
// /sys/class/net) has carrier.
func nicLink(root string) Check {
	dir := filepath.Join(root, "sys/class/net")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Check{Message: fmt.Sprintf("list NICs: %v", err)}
	}
	var up, down []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "device")); err != nil {
			continue // loopback, bridges, VLANs, tunnels
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name(), "carrier"))
		if strings.TrimSpace(string(b)) == "1" {
			up = append(up, e.Name())
		} else {
			down = append(down, e.Name())
		}
	}
	sort.Strings(up)
	sort.Strings(down)
	switch {
	case len(up) == 0 && len(down) == 0:
		return Check{Message: "no physical NICs found"}
	case len(up) == 0:
		return Check{Message: "no NIC has link: " + strings.Join(down, ", ") + " down"}
	}
	msg := "link up: " + strings.Join(up, ", ")
	if len(down) > 0 {
		msg += "; no link: " + strings.Join(down, ", ")
	}
	return Check{Pass: true, Message: msg}
}

// gpuHealth is the NVML quick health check.
func gpuHealth(g gpu.Result) Check {
	if g.Unavailable != "" {
		return Check{Message: g.Unavailable}
	}
	if len(g.GPUs) == 0 {
		return Check{Message: "NVML answered but sees no GPUs"}
	}
	var bad []string
	names := map[string]int{}
	for _, d := range g.GPUs {
		switch {
		case d.UUID == "" && d.Name == "":
			bad = append(bad, fmt.Sprintf("gpu %d does not answer (fallen off the bus?)", d.Index))
			continue
		case d.NVLinkTotal > 0 && d.NVLinkUp < d.NVLinkTotal:
			bad = append(bad, fmt.Sprintf("gpu %d (%s): NVLink %d of %d up", d.Index, d.PCIAddress, d.NVLinkUp, d.NVLinkTotal))
		}
		names[d.Name]++
	}
	if len(bad) > 0 {
		return Check{Message: strings.Join(bad, "; ")}
	}
	var kinds []string
	for n, c := range names {
		kinds = append(kinds, fmt.Sprintf("%d× %s", c, n))
	}
	sort.Strings(kinds)
	return Check{Pass: true, Message: fmt.Sprintf("NVML health: %d GPUs answer (%s), driver %s", len(g.GPUs), strings.Join(kinds, ", "), g.DriverVersion)}
}
