package collect

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// collectMemory sets the installed total: the sum of the SMBIOS DIMMs when
// known, else the memory blocks the kernel has online (the physical size,
// with the firmware's holes), else /proc/meminfo's MemTotal (less the
// kernel's own reservations).
func collectMemory(r *reader, inv *inventory.Inventory) ([]string, error) {
	var sum uint64
	for _, d := range inv.Memory.DIMMs {
		if !d.Empty {
			sum += d.SizeBytes
		}
	}
	if sum > 0 {
		inv.Memory.TotalBytes = sum
		return nil, nil
	}
	if b := memoryBlocksBytes(r); b > 0 {
		inv.Memory.TotalBytes = b
		return nil, nil
	}
	data, err := os.ReadFile(r.path("/proc/meminfo"))
	if err != nil {
		return nil, errors.New("no DIMMs, no /sys/devices/system/memory and no /proc/meminfo: memory not reported")
	}
	kb := memTotalKiB(data)
	if kb == 0 {
		return nil, errors.New("/proc/meminfo has no MemTotal: memory not reported")
	}
	inv.Memory.TotalBytes = kb * 1024
	return []string{"total is /proc/meminfo MemTotal (usable memory, a little under the installed size)"}, nil
}

// memoryBlocksBytes is block_size_bytes times the online memory blocks, or 0.
func memoryBlocksBytes(r *reader) uint64 {
	bs, err := strconv.ParseUint(r.str("/sys/devices/system/memory/block_size_bytes"), 16, 64)
	if err != nil || bs == 0 {
		return 0
	}
	entries, err := os.ReadDir(r.path("/sys/devices/system/memory"))
	if err != nil {
		return 0
	}
	var n uint64
	for _, e := range entries {
		if _, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "memory")); err != nil || !strings.HasPrefix(e.Name(), "memory") {
			continue
		}
		if s := r.str("/sys/devices/system/memory/" + e.Name() + "/online"); s == "1" || s == "" && r.str("/sys/devices/system/memory/"+e.Name()+"/state") == "online" {
			n++
		}
	}
	return n * bs
}

// memTotalKiB reads MemTotal from /proc/meminfo.
func memTotalKiB(data []byte) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "MemTotal" {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return n
	}
	return 0
}
