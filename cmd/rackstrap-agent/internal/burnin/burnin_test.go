package burnin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpu"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

func nics(t *testing.T, carrier map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, c := range carrier {
		dir := filepath.Join(root, "sys/class/net", name)
		os.MkdirAll(dir, 0o755)
		if name != "lo" && name != "br0" {
			os.MkdirAll(filepath.Join(dir, "device"), 0o755)
		}
		os.WriteFile(filepath.Join(dir, "carrier"), []byte(c+"\n"), 0o644)
	}
	return root
}

func noGPUProbe(t *testing.T) func() gpu.Result {
	return func() gpu.Result {
		t.Error("GPUs probed for checks that do not need them")
		return gpu.Result{}
	}
}

func TestChecksThatPass(t *testing.T) {
	t.Parallel()
	disk := filepath.Join(t.TempDir(), "disk")
	os.WriteFile(disk, make([]byte, 3<<20), 0o644) // smaller than DiskMiB: read to its end
	cfg := Config{SysRoot: nics(t, map[string]string{"eno1": "1", "eno2": "0", "lo": "1", "br0": "1"}), Disks: []string{disk}, MemoryMiB: 4, DiskMiB: 8, ProbeGPUs: noGPUProbe(t)}
	res := Run(context.Background(), []string{"memory", "disk", "nic-link", "memtester"}, cfg)
	if len(res.Failed()) != 0 || len(res.Checks) != 4 {
		t.Fatalf("Run = %+v", res)
	}
	for i, want := range []string{"wrote and verified 2 patterns over 4 MiB", disk + ": read 3.0 MiB", "link up: eno1; no link: eno2", "quick stand-in: memtester itself was not run"} {
		if !strings.Contains(res.Checks[i].Message, want) {
			t.Errorf("check %s message %q, want %q", res.Checks[i].Name, res.Checks[i].Message, want)
		}
	}
	if res.Summary() != "4 of 4 checks passed" {
		t.Errorf("summary %q", res.Summary())
	}
	if NeedsGPUs([]string{"memory", "fio"}) || !NeedsGPUs([]string{"memory", "dcgm-diag"}) {
		t.Error("NeedsGPUs")
	}
}

func TestChecksThatFail(t *testing.T) {
	t.Parallel()
	probes := 0
	cfg := Config{
		SysRoot:   nics(t, map[string]string{"eno1": "0"}),
		Disks:     []string{filepath.Join(t.TempDir(), "no-such-disk")},
		MemoryMiB: 1,
		ProbeGPUs: func() gpu.Result { probes++; return gpu.Result{Unavailable: gpu.NoDriver} },
	}
	res := Run(context.Background(), []string{"gpu-burn", "disk", "nic-link", "smart", "dcgm-diag"}, cfg)
	if probes != 1 {
		t.Errorf("NVML probed %d times, want once for the two GPU checks", probes)
	}
	want := map[string]string{
		"gpu-burn":  gpu.NoDriver,
		"disk":      "no-such-disk: read failed after 0 bytes",
		"nic-link":  "no NIC has link: eno1 down",
		"smart":     "not supported by this agent",
		"dcgm-diag": gpu.NoDriver,
	}
	for _, c := range res.Checks {
		if c.Pass || !strings.Contains(c.Message, want[c.Name]) {
			t.Errorf("check %s = %+v, want failed with %q", c.Name, c, want[c.Name])
		}
	}
	if s := res.Summary(); !strings.HasPrefix(s, "0 of 5 checks passed; failed: gpu-burn: no NVIDIA driver") {
		t.Errorf("summary %q", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := Run(ctx, []string{"memory"}, cfg); res.Checks[0].Pass || !strings.Contains(res.Checks[0].Message, "not run") {
		t.Errorf("cancelled run = %+v", res)
	}
}

func TestGPUHealth(t *testing.T) {
	t.Parallel()
	h100 := func(i, up int) inventory.GPU {
		return inventory.GPU{Index: i, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-" + string(rune('a'+i)), PCIAddress: "0000:1b:00.0", NVLinkTotal: 18, NVLinkUp: up}
	}
	for name, tc := range map[string]struct {
		r    gpu.Result
		pass bool
		want string
	}{
		"healthy":       {gpu.Result{GPUs: []inventory.GPU{h100(0, 18), h100(1, 18)}, DriverVersion: "550.54.15"}, true, "NVML health: 2 GPUs answer (2× NVIDIA H100 80GB HBM3), driver 550.54.15 (quick stand-in: gpu-burn itself was not run)"},
		"nvlink down":   {gpu.Result{GPUs: []inventory.GPU{h100(0, 18), h100(1, 16)}}, false, "gpu 1 (0000:1b:00.0): NVLink 16 of 18 up"},
		"off the bus":   {gpu.Result{GPUs: []inventory.GPU{h100(0, 18), {Index: 1}}}, false, "gpu 1 does not answer"},
		"no gpus":       {gpu.Result{}, false, "sees no GPUs"},
		"driver absent": {gpu.Result{Unavailable: gpu.DriverNotUp}, false, "kernel module is not"},
		"without cgo":   {gpu.Result{Unavailable: gpu.BuiltWithout}, false, "built without NVML"},
	} {
		res := Run(context.Background(), []string{"gpu-burn"}, Config{ProbeGPUs: func() gpu.Result { return tc.r }})
		if c := res.Checks[0]; c.Pass != tc.pass || !strings.Contains(c.Message, tc.want) {
			t.Errorf("%s: %+v, want pass %v with %q", name, c, tc.pass, tc.want)
		}
	}
}
