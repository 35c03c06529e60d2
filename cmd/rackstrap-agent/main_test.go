package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin/checkintest"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpu"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

// testDeps stubs NVML with "no driver" and makes retries and polls fast.
func testDeps() *deps {
	return &deps{
		probeGPUs:   func() gpu.Result { return gpu.Result{Unavailable: gpu.NoDriver} },
		minBackoff:  time.Millisecond,
		maxBackoff:  5 * time.Millisecond,
		taskMinPoll: 10 * time.Millisecond,
		taskMaxPoll: 50 * time.Millisecond,
		retryWait:   10 * time.Millisecond,
	}
}

func execute(t *testing.T, d *deps, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd(d)
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// hostTree is a small fake host: one CPU, memory, a NIC, a disk and an
// NVIDIA GPU on the PCI bus (whose driver is absent).
func hostTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	write("/sys/class/dmi/id/sys_vendor", "QEMU\n")
	write("/sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n")
	write("/sys/class/dmi/id/product_serial", "VM-SERIAL-1\n")
	write("/proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: QEMU Virtual CPU\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: QEMU Virtual CPU\n\n")
	write("/proc/meminfo", "MemTotal:       4194304 kB\n")
	for _, d := range []struct{ addr, vendor, device, class string }{
		{"0000:00:03.0", "0x1af4", "0x1041", "0x020000"},
		{"0000:00:04.0", "0x1af4", "0x1042", "0x010000"},
		{"0000:01:00.0", "0x10de", "0x2330", "0x030200"},
	} {
		dir := "/sys/devices/pci0000:00/" + d.addr
		write(dir+"/vendor", d.vendor+"\n")
		write(dir+"/device", d.device+"\n")
		write(dir+"/class", d.class+"\n")
		link("/sys/bus/pci/devices/"+d.addr, "../../../devices/pci0000:00/"+d.addr)
	}
	nic := "/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/ens3"
	write(nic+"/address", "52:54:00:12:34:56\n")
	write(nic+"/carrier", "1\n")
	write(nic+"/speed", "-1\n")
	link(nic+"/device", "../../../virtio0")
	write("/sys/devices/pci0000:00/0000:00:03.0/virtio0/modalias", "virtio:d00000001v00001AF4\n")
	link("/sys/devices/pci0000:00/0000:00:03.0/virtio0/driver", "../../../../bus/virtio/drivers/virtio_net")
	link("/sys/class/net/ens3", "../../devices/pci0000:00/0000:00:03.0/virtio0/net/ens3")
	vda := "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda"
	write(vda+"/size", "20971520\n")
	write(vda+"/serial", "rackstrap-e2e\n")
	link(vda+"/device", "../../../virtio1")
	link("/sys/block/vda", "../devices/pci0000:00/0000:00:04.0/virtio1/block/vda")
	return root
}

func TestInventoryFixture(t *testing.T) {
	t.Parallel()
	root := hostTree(t)
	stdout, stderr, err := execute(t, testDeps(), "inventory", "--sys-root", root)
	if err != nil {
		t.Fatalf("inventory: %v\n%s", err, stderr)
	}
	// The model's strict parser reads what the agent prints.
	inv, err := inventory.Parse([]byte(stdout))
	if err != nil {
		t.Fatalf("inventory.Parse(output): %v\n%s", err, stdout)
	}
	if inv.Source != inventory.InBand || inv.System.Serial != "VM-SERIAL-1" || len(inv.CPUs) != 1 || inv.CPUs[0].Threads != 2 {
		t.Errorf("inventory = %+v", inv)
	}
	if len(inv.NICs) != 1 || inv.NICs[0].MAC != "52:54:00:12:34:56" || inv.NICs[0].Driver != "virtio_net" || inv.NICs[0].PCIAddress != "0000:00:03.0" || !inv.NICs[0].LinkUp {
		t.Errorf("nics = %+v", inv.NICs)
	}
	if len(inv.Disks) != 1 || inv.Disks[0].SizeBytes != 10<<30 || inv.Disks[0].Serial != "rackstrap-e2e" || inv.Disks[0].Type != inventory.DiskVirtual {
		t.Errorf("disks = %+v", inv.Disks)
	}
	if want := gpu.NoDriver + "; 1 NVIDIA GPUs are on the PCI bus"; inv.GPUDriverError != want || len(inv.GPUs) != 0 {
		t.Errorf("gpuDriverError = %q, %d GPUs; want %q", inv.GPUDriverError, len(inv.GPUs), want)
	}
	if !strings.Contains(stderr, "note: smbios: /sys/firmware/dmi/tables/DMI absent") || !strings.Contains(stderr, "note: gpu: "+gpu.NoDriver) {
		t.Errorf("stderr notes = %q", stderr)
	}
	if !strings.HasPrefix(inv.Collector, "rackstrap-agent ") {
		t.Errorf("collector = %q", inv.Collector)
	}

	text, _, err := execute(t, testDeps(), "inventory", "--sys-root", root, "-o", "text")
	if err != nil || !strings.Contains(text, "52:54:00:12:34:56") || !strings.Contains(text, "QEMU Virtual CPU") || !strings.Contains(text, gpu.NoDriver) {
		t.Errorf("inventory -o text = %v\n%s", err, text)
	}
	if _, _, err := execute(t, testDeps(), "inventory", "-o", "yaml"); err == nil {
		t.Error("inventory -o yaml succeeded")
	}
}

func TestCheckinCommand(t *testing.T) {
	t.Parallel()
	srv := checkintest.New()
	defer srv.Close()
	srv.AddToken("tok-1", "rack1-node07", checkin.Netboot, time.Hour)
	srv.FailNext(503)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("tok-1\n"), 0o600)
	root := hostTree(t)
	stdout, stderr, err := execute(t, testDeps(), "checkin", "--server", srv.URL, "--token-file", tokenFile, "--phase", "netboot", "--sys-root", root)
	if err != nil {
		t.Fatalf("checkin: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "checked in as node rack1-node07") {
		t.Errorf("stdout = %q", stdout)
	}
	got := srv.Received()
	if len(got) != 1 || got[0].Inventory.NICs[0].MAC != "52:54:00:12:34:56" || got[0].Phase != checkin.Netboot || !strings.HasPrefix(got[0].AgentVersion, "rackstrap-agent ") || len(got[0].Notes) == 0 {
		t.Errorf("controller received %+v", got)
	}

	// The token is used: a second check-in is refused at once.
	_, _, err = execute(t, testDeps(), "checkin", "--server", srv.URL, "--token", "tok-1", "--phase", "netboot", "--sys-root", root)
	if apiErr, ok := errors.AsType[*checkin.APIError](err); !ok || apiErr.Code != "token-used" {
		t.Errorf("second checkin = %v, want token-used", err)
	}
	if _, _, err := execute(t, testDeps(), "checkin", "--server", srv.URL, "--token", "x", "--phase", "imaging"); err == nil || !strings.Contains(err.Error(), "unknown phase") {
		t.Errorf("checkin --phase imaging = %v", err)
	}
	if _, _, err := execute(t, testDeps(), "checkin", "--token", "x", "--phase", "netboot"); err == nil || !strings.Contains(err.Error(), "server") {
		t.Errorf("checkin without --server = %v", err)
	}
}

func TestRunCommandFromCmdline(t *testing.T) {
	t.Parallel()
	srv := checkintest.New()
	defer srv.Close()
	srv.AddToken("AbC123", "rack1-node09", checkin.Firstboot, time.Hour)
	srv.FailNext(500, 502)
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("BOOT_IMAGE=/boot/vmlinuz root=UUID=1234 ro quiet rackstrap.server="+srv.URL+" rackstrap.token=AbC123 rackstrap.phase=firstboot\n"), 0o644)
	stdout, stderr, err := execute(t, testDeps(), "run", "--cmdline", cmdline, "--sys-root", hostTree(t))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "checked in as node rack1-node09 (firstboot") || srv.Attempts() != 3 {
		t.Errorf("run stdout %q after %d attempts, want accepted on the 3rd", stdout, srv.Attempts())
	}
	if !strings.Contains(stderr, "check-in failed; retrying") {
		t.Errorf("stderr does not log the retries: %q", stderr)
	}

	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("BOOT_IMAGE=/boot/vmlinuz quiet\n"), 0o644)
	if _, _, err := execute(t, testDeps(), "run", "--cmdline", plain); !errors.Is(err, checkin.ErrNoBootParams) {
		t.Errorf("run without rackstrap.* = %v, want ErrNoBootParams", err)
	}
	if _, _, err := execute(t, testDeps(), "run", "--cmdline", filepath.Join(dir, "absent")); err == nil {
		t.Error("run with a missing cmdline file succeeded")
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	out, _, err := execute(t, testDeps(), "version", "-o", "json")
	var v map[string]any
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["version"] != version || v["nvml"] != gpu.NVMLSupported {
		t.Errorf("version -o json = %q, %v", out, err)
	}
	out, _, err = execute(t, testDeps(), "version")
	if err != nil || !strings.HasPrefix(out, "rackstrap-agent "+version) {
		t.Errorf("version = %q, %v", out, err)
	}
}

// TestBinaries builds the agent as `make build` does (cgo, with NVML) and
// without cgo, and runs both as processes on this host: the real NVML path
// (no driver here: "no NVIDIA driver"), the fallback, and main's exit code.
func TestBinaries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		cgo     string
		gpuNote string
		version string
	}{
		"cgo":    {"1", "", "with NVML"},
		"no cgo": {"0", gpu.BuiltWithout, "without NVML"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(dir, "agent-cgo"+tc.cgo)
			build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", bin, ".")
			build.Env = append(os.Environ(), "CGO_ENABLED="+tc.cgo)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build (CGO_ENABLED=%s): %v\n%s", tc.cgo, err, out)
			}
			out, err := exec.Command(bin, "version").Output()
			if err != nil || !strings.Contains(string(out), "rackstrap-agent v9.9.9-test") || !strings.Contains(string(out), tc.version) {
				t.Errorf("version = %q, %v", out, err)
			}
			cmd := exec.Command(bin, "inventory")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err = cmd.Output()
			if err != nil {
				t.Fatalf("inventory: %v\n%s", err, stderr.String())
			}
			inv, err := inventory.Parse(out)
			if err != nil {
				t.Fatalf("parse inventory: %v", err)
			}
			if len(inv.CPUs) == 0 || len(inv.NICs) == 0 || inv.Collector != "rackstrap-agent v9.9.9-test" {
				t.Errorf("inventory of this host: %d CPUs, %d NICs, collector %q", len(inv.CPUs), len(inv.NICs), inv.Collector)
			}
			want := tc.gpuNote
			if want == "" { // the real NVML: no driver on CI, GPUs on a GPU host
				if len(inv.GPUs) == 0 {
					want = gpu.NoDriver
				}
			}
			if !strings.HasPrefix(inv.GPUDriverError, want) {
				t.Errorf("gpuDriverError = %q, want %q (GPUs: %d)", inv.GPUDriverError, want, len(inv.GPUs))
			}
			t.Logf("gpus %d, gpuDriverError %q", len(inv.GPUs), inv.GPUDriverError)

			cmd = exec.Command(bin, "checkin", "--server", "not-a-url", "--token", "t", "--phase", "netboot", "--deadline", "0")
			out, err = cmd.CombinedOutput()
			if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), "error: checkin: server") {
				t.Errorf("checkin with a bad URL = %v, %q; want exit 1 and an error line", err, out)
			}
		})
	}
}

func TestInventoryLLDPWaitOnThisHost(t *testing.T) {
	t.Parallel()
	// No switch sends LLDP to this host's NICs: each NIC that is up gets a
	// note after the wait, and the inventory is still printed.
	start := time.Now()
	stdout, stderr, err := execute(t, testDeps(), "inventory", "--lldp-wait", "300ms")
	if err != nil {
		t.Fatalf("inventory --lldp-wait: %v", err)
	}
	if _, err := inventory.Parse([]byte(stdout)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "note: lldp: ") || !strings.Contains(stderr, "no neighbour within 300ms") {
		t.Errorf("stderr = %q, want a note per NIC that heard no neighbour", stderr)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("inventory --lldp-wait 300ms took %v", el)
	}
}

// TestInventoryValidatesAgainstQEMUProfile feeds what the agent prints for a
// QEMU q35 VM (the fixture tree) to the controller's validator and the
// bundled qemu-vm profile, picked by matching, as the controller does on
// check-in.
func TestInventoryValidatesAgainstQEMUProfile(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := execute(t, testDeps(), "inventory", "--sys-root", hostTree(t))
	if err != nil {
		t.Fatalf("inventory: %v\n%s", err, stderr)
	}
	inv, err := inventory.Parse([]byte(stdout))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := validate.Node(cat, "", inv, nil)
	if err != nil {
		t.Fatalf("validate.Node: %v", err)
	}
	if res.Profile != "qemu-vm" || res.Verdict != validate.Pass || res.Errors != 0 {
		t.Errorf("validate = profile %q verdict %q errors %d, want qemu-vm pass; findings:\n%v", res.Profile, res.Verdict, res.Errors, res.Findings)
	}
}
