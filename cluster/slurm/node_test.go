package slurm

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestGresType(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"NVIDIA H100 80GB HBM3":   "h100",
		"NVIDIA H100 PCIe":        "h100",
		"NVIDIA H100 NVL":         "h100",
		"NVIDIA H200":             "h200",
		"NVIDIA B200":             "b200",
		"NVIDIA GH200 480GB":      "gh200",
		"NVIDIA A100-SXM4-80GB":   "a100",
		"NVIDIA A100 80GB PCIe":   "a100",
		"Tesla V100-SXM2-32GB":    "v100",
		"NVIDIA L40S":             "l40s",
		"NVIDIA GeForce RTX 4090": "rtx4090",
		"NVIDIA RTX A6000":        "rtxa6000",
		"AMD Instinct MI300X":     "mi300x",
		"h100":                    "h100",
		"  H100  ":                "h100",
	} {
		got, err := GresType(in)
		if err != nil || got != want {
			t.Errorf("GresType(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "NVIDIA", "NVIDIA ---", "NVIDIA _x"} {
		if got, err := GresType(in); err == nil {
			t.Errorf("GresType(%q) = %q, want an error", in, got)
		}
	}
}

func TestFromInventory(t *testing.T) {
	t.Parallel()
	dgx := fixtures.DGXH100("1650323000101")
	got, err := FromInventory("gpu001", "10.0.0.21", dgx, []string{"dgx-h100", "rack-r1", "fw-2024.3"})
	if err != nil {
		t.Fatalf("FromInventory(DGX H100) = %v", err)
	}
	var devs []string
	for i := range 8 {
		devs = append(devs, fmt.Sprintf("/dev/nvidia%d", i))
	}
	want := Node{Name: "gpu001", Addr: "10.0.0.21", CPUs: 224, Sockets: 2, CoresPerSocket: 56, ThreadsPerCore: 2,
		RealMemoryMiB: 2048 * 1024 * 97 / 100, GPUModel: "h100", GPUCount: 8, GPUDevices: devs,
		Features: []string{"dgx-h100", "rack-r1", "fw-2024.3", "h100"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromInventory(DGX H100) mismatch (-want +got):\n%s", diff)
	}

	// The GPU model already among the features is not repeated; the
	// BMC's view gives no device files.
	oob := fixtures.DGXH100("1650323000101")
	oob.Source = inventory.OutOfBand
	got, err = FromInventory("gpu001", "gpu001.example", oob, []string{"h100"})
	if err != nil {
		t.Fatalf("FromInventory(DGX H100, out-of-band) = %v", err)
	}
	if got.GPUDevices != nil || strings.Join(got.Features, ",") != "h100" {
		t.Errorf("FromInventory(out-of-band): devices %v, features %v, want none and [h100]", got.GPUDevices, got.Features)
	}

	vm := fixtures.QEMUVM("52:54:00:00:00:01")
	got, err = FromInventory("vm1", "10.0.0.5", vm, nil)
	if err != nil {
		t.Fatalf("FromInventory(QEMU VM) = %v", err)
	}
	if got.CPUs != 2 || got.ThreadsPerCore != 1 || got.GPUCount != 0 || got.GPUModel != "" || got.RealMemoryMiB != 1024*97/100 {
		t.Errorf("FromInventory(QEMU VM) = %+v", got)
	}
}

func TestFromInventoryErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		inv      func(*inventory.Inventory)
		features []string
		want     string
	}{
		"nil":            {inv: nil, want: "no inventory"},
		"no cpus":        {inv: func(i *inventory.Inventory) { i.CPUs = nil }, want: "no CPUs"},
		"uneven sockets": {inv: func(i *inventory.Inventory) { i.CPUs[1].Cores = 48 }, want: "sockets differ"},
		"odd threads":    {inv: func(i *inventory.Inventory) { i.CPUs[0].Threads, i.CPUs[1].Threads = 100, 100 }, want: "whole number"},
		"no memory":      {inv: func(i *inventory.Inventory) { i.Memory = inventory.Memory{} }, want: "no memory"},
		"mixed gpus":     {inv: func(i *inventory.Inventory) { i.GPUs[3].Name = "NVIDIA A100-SXM4-80GB" }, want: "mixed GPU models [a100 h100]"},
		"unnamed gpu":    {inv: func(i *inventory.Inventory) { i.GPUs[0].Name = "" }, want: "names no model"},
		"dup index":      {inv: func(i *inventory.Inventory) { i.GPUs[1].Index = 0 }, want: "two GPUs with index 0"},
		"bad feature":    {features: []string{"rack=r1"}, want: `feature "rack=r1"`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var inv *inventory.Inventory
			if tc.inv != nil || name != "nil" {
				inv = fixtures.DGXH100("1650323000101")
				if tc.inv != nil {
					tc.inv(inv)
				}
			}
			_, err := FromInventory("gpu001", "10.0.0.21", inv, tc.features)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("FromInventory() = %v, want an ErrInvalid error with %q", err, tc.want)
			}
			var fc interface{ FailureClass() string }
			if !errors.As(err, &fc) || fc.FailureClass() != "handoff-failed" {
				t.Errorf("FromInventory() error has no FailureClass handoff-failed: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := Node{Name: "gpu001", Addr: "10.0.0.21", CPUs: 8, Sockets: 1, CoresPerSocket: 4, ThreadsPerCore: 2, RealMemoryMiB: 1000,
		GPUModel: "h100", GPUCount: 2, GPUDevices: []string{"/dev/nvidia0", "/dev/nvidia1"}, Features: []string{"rack-r1"}}
	if err := ok.validate(); err != nil {
		t.Fatalf("validate(%+v) = %v", ok, err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Node)
		want string
	}{
		"name with space":   {func(n *Node) { n.Name = "gpu 1" }, "node name"},
		"hostlist name":     {func(n *Node) { n.Name = "gpu[1-2]" }, "node name"},
		"option-like name":  {func(n *Node) { n.Name = "-h" }, "node name"},
		"bad addr":          {func(n *Node) { n.Addr = "10.0.0.1 State=DOWN" }, "address"},
		"no cpus":           {func(n *Node) { n.CPUs = 0 }, "CPUs 0"},
		"topology mismatch": {func(n *Node) { n.ThreadsPerCore = 1 }, "is not sockets"},
		"partial topology":  {func(n *Node) { n.Sockets = 0 }, "all three or none"},
		"no memory":         {func(n *Node) { n.RealMemoryMiB = 0 }, "real memory"},
		"device count":      {func(n *Node) { n.GPUDevices = n.GPUDevices[:1] }, "1 GPU devices for 2 GPUs"},
		"device path":       {func(n *Node) { n.GPUDevices[1] = "nvidia1" }, "want a path under /dev"},
		"cores":             {func(n *Node) { n.GPUCores = []string{"0-3", "all"} }, "GPU cores"},
		"model, no count":   {func(n *Node) { n.GPUCount, n.GPUDevices = 0, nil }, "GPU count of 0"},
		"feature with ,":    {func(n *Node) { n.Features = []string{"a,b"} }, `feature "a,b"`},
		"two at once":       {func(n *Node) { n.CPUs, n.Features = 0, []string{"x y"} }, `feature "x y"`},
	} {
		n := ok
		n.GPUDevices = append([]string(nil), ok.GPUDevices...)
		tc.mod(&n)
		err := n.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: validate() = %v, want an ErrInvalid error with %q", name, err, tc.want)
		}
	}
}

// golden compares got with testdata/<dir>/<name>.golden, or rewrites it
// under -update.
func golden(t *testing.T, dir, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", dir, name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", p, diff)
	}
}

func goldenNodes(t *testing.T) map[string]Node {
	dgx, err := FromInventory("gpu001", "10.0.0.21", fixtures.DGXH100("1650323000101"), []string{"dgx-h100", "rack-r1"})
	if err != nil {
		t.Fatal(err)
	}
	withCores := dgx
	withCores.GPUCores = []string{"0-55", "0-55", "0-55", "0-55", "56-111", "56-111", "56-111", "56-111"}
	noDevices := dgx
	noDevices.GPUDevices = nil
	untyped := Node{Name: "gpu002", Addr: "10.0.0.22", CPUs: 16, RealMemoryMiB: 64000, GPUCount: 2,
		GPUDevices: []string{"/dev/nvidia0", "/dev/nvidia2"}}
	vm, err := FromInventory("vm1", "10.0.0.5", fixtures.QEMUVM("52:54:00:00:00:01"), []string{"qemu-vm"})
	if err != nil {
		t.Fatal(err)
	}
	badModel := dgx
	badModel.GPUModel = "NVIDIA"
	return map[string]Node{"dgx-h100": dgx, "dgx-h100-cores": withCores, "dgx-h100-no-devices": noDevices,
		"untyped-gpus": untyped, "qemu-vm": vm, "bad-model": badModel}
}

func TestGresConfGolden(t *testing.T) {
	for name, n := range goldenNodes(t) {
		t.Run(name, func(t *testing.T) { golden(t, "gres", name, GresConf(n)) })
	}
}

// TestCreateGolden keeps the `scontrol create` line of each node, with the
// cluster's features merged in, as a file a reviewer can read.
func TestCreateGolden(t *testing.T) {
	c := &Cluster{cfg: Config{Features: []string{"rackstrap", "rack-r1"}}}
	for name, n := range goldenNodes(t) {
		t.Run(name, func(t *testing.T) {
			var got string
			if err := n.validate(); err != nil {
				got = "error: " + err.Error() + "\n"
			} else {
				n.Features = c.features(n.Features)
				got = "scontrol " + quoteArgs(createArgs(n)) + "\n"
			}
			golden(t, "create", name, got)
		})
	}
}
