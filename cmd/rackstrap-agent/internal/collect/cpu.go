package collect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// collectCPUs groups /proc/cpuinfo's logical processors by physical package.
// Socket names and rated speeds come from SMBIOS type 4 when the smbios
// collector found it, the rated speed otherwise from cpufreq.
func collectCPUs(r *reader, inv *inventory.Inventory) ([]string, error) {
	data, err := os.ReadFile(r.path("/proc/cpuinfo"))
	if err != nil {
		return nil, fmt.Errorf("read /proc/cpuinfo: %w", err)
	}
	cpus, err := parseCPUInfo(data)
	if err != nil {
		return nil, err
	}
	var notes []string
	if len(r.procs) > 0 && len(r.procs) != len(cpus) {
		notes = append(notes, fmt.Sprintf("SMBIOS lists %d populated sockets, /proc/cpuinfo %d packages; socket names not reported", len(r.procs), len(cpus)))
	}
	maxMHz := int(r.int("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") / 1000)
	for i := range cpus {
		if len(r.procs) == len(cpus) {
			cpus[i].Socket = r.procs[i].socket
			cpus[i].SpeedMHz = r.procs[i].maxMHz
		}
		if cpus[i].SpeedMHz == 0 {
			cpus[i].SpeedMHz = maxMHz
		}
	}
	inv.CPUs = cpus
	return notes, nil
}

// parseCPUInfo turns /proc/cpuinfo into one CPU per "physical id" (one in
// all when the kernel reports none, as on some VMs and non-x86 hosts).
func parseCPUInfo(data []byte) ([]inventory.CPU, error) {
	type pkg struct {
		cpu      inventory.CPU
		coreIDs  map[string]bool
		cpuCores int
		threads  int
	}
	pkgs := map[int]*pkg{}
	var order []int
	flush := func(rec map[string]string) {
		if len(rec) == 0 {
			return
		}
		if _, ok := rec["processor"]; !ok {
			return // the trailing block some architectures print
		}
		id, err := strconv.Atoi(rec["physical id"])
		if err != nil {
			id = 0
		}
		p := pkgs[id]
		if p == nil {
			p = &pkg{coreIDs: map[string]bool{}}
			pkgs[id] = p
			order = append(order, id)
		}
		p.threads++
		if c, ok := rec["core id"]; ok {
			p.coreIDs[c] = true
		}
		if n, err := strconv.Atoi(rec["cpu cores"]); err == nil {
			p.cpuCores = n
		}
		first := func(keys ...string) string {
			for _, k := range keys {
				if v := rec[k]; v != "" {
					return v
				}
			}
			return ""
		}
		if p.cpu.Vendor == "" {
			p.cpu.Vendor = first("vendor_id", "CPU implementer", "vendor")
		}
		if p.cpu.Model == "" {
			p.cpu.Model = first("model name", "cpu model", "Processor", "cpu")
		}
	}
	rec := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush(rec)
			rec = map[string]string{}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		rec[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse /proc/cpuinfo: %w", err)
	}
	flush(rec)
	if len(pkgs) == 0 {
		return nil, errors.New("/proc/cpuinfo lists no processor")
	}
	sort.Ints(order)
	out := make([]inventory.CPU, 0, len(order))
	for _, id := range order {
		p := pkgs[id]
		p.cpu.Threads = p.threads
		switch {
		case p.cpuCores > 0:
			p.cpu.Cores = p.cpuCores
		case len(p.coreIDs) > 0:
			p.cpu.Cores = len(p.coreIDs)
		default:
			p.cpu.Cores = p.threads
		}
		out = append(out, p.cpu)
	}
	return out, nil
}
