//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/test/cluster/slurmtest"
)

// nsName is per run: newNetns removes a namespace of its name left by a
// killed run, which must never be another run's that is still going.
var nsName = fmt.Sprintf("rs-e2e-%d", os.Getpid())

const (
	ctlCIDR  = "10.231.0.1/24"
	vmMAC    = "52:54:00:e2:e0:01"
	vmCPUs   = 2
	vmMemMiB = 512
	diskSize = 1<<30 + 64<<20 // the qemu-vm profile wants a disk of at least 1 GiB
	bmcUser  = "admin"
	bmcPass  = "e2e-password"
	node     = "e2e-n01"
	imgName  = "e2e-os"
)

// need fails the test when a peer program is missing, naming its package.
func need(t *testing.T, tools map[string]string) {
	t.Helper()
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: install the Debian package %s ('make test-deps' does)", tool, pkg)
		}
	}
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd", "/usr/lib/ipxe/ipxe.efi", "/usr/lib/ipxe/undionly.kpxe",
		"/usr/lib/systemd/boot/efi/systemd-bootx64.efi"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: install ovmf, ipxe and systemd-boot-efi ('make test-deps' does)", err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the e2e test needs root: it creates a network namespace, a bridge and a tap device")
	}
}

// goBuild builds a static binary of the package (no race detector: the
// agent runs as PID 1 of a VM; the controller as a separate process).
func goBuild(t *testing.T, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-ldflags", "-s -w -X main.version=e2e", "-o", out, pkg) // no -trimpath: share the build cache with `go test`
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func write(t *testing.T, p, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dst, string(b), mode)
}

// diskInit is the installed image's /sbin/init: what systemd does on a
// full OS, reduced to the first-boot hooks (the initrd, Rackstrap's
// agent as PID 1, has mounted the root and leased an address).
const diskInit = `#!/bin/sh
echo "e2e-os: root mounted, running first-boot hooks" >/dev/console
/usr/lib/rackstrap/rackstrap-first-boot
echo "e2e-os: first-boot hooks done (exit $?)" >/dev/console
while :; do sleep 3600; done
`

// images builds, with `rackstrap image build`, the netboot kernel and
// initramfs (the agent as /init) and the OS image (raw GPT disk whose
// initrd is the same initramfs and whose first-boot hook runs the agent),
// signs the OS image, and imports it into a store.
func buildImages(t *testing.T, rs, agent, dir string) (artifacts, store, pub string, netKernel, netInitrd string) {
	t.Helper()
	vmlinuz, mods, rel := kernelAndModules(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox is not installed: install busybox-static")
	}

	// kernel.image and kernel.initrd are host files only as relative paths
	// (absolute ones name files inside the image)
	nb := filepath.Join(dir, "netboot")
	os.MkdirAll(filepath.Join(nb, "root/etc"), 0o755)
	copyFile(t, vmlinuz, filepath.Join(nb, "vmlinuz"), 0o644)
	write(t, filepath.Join(nb, "netboot.yaml"), fmt.Sprintf(`api_version: rackstrap.io/image/v1
name: e2e-netboot
version: "1"
source_date_epoch: 1700000000
base: {dir: root}
kernel: {version: %s, image: vmlinuz, modules: %s}
agent: %s
outputs:
  netboot: {compression: zstd}
`, rel, mods, agent), 0o644)
	run(t, 3*time.Minute, rs, "image", "build", filepath.Join(nb, "netboot.yaml"), "--out", filepath.Join(nb, "out"))
	netKernel, netInitrd = "e2e-netboot.vmlinuz", "e2e-netboot.initramfs.cpio.zst"

	osDir := filepath.Join(dir, "os")
	r := filepath.Join(osDir, "root")
	copyFile(t, busybox, filepath.Join(r, "bin/busybox"), 0o755)
	for _, app := range []string{"sh", "mkdir", "basename", "touch", "sleep", "cat", "echo"} {
		mustSymlink(t, "busybox", filepath.Join(r, "bin", app))
	}
	write(t, filepath.Join(r, "sbin/init"), diskInit, 0o755)
	copyFile(t, vmlinuz, filepath.Join(osDir, "vmlinuz"), 0o644)
	copyFile(t, filepath.Join(nb, "out", netInitrd), filepath.Join(osDir, "initrd.img"), 0o644)
	copyFile(t, "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", filepath.Join(r, "usr/lib/systemd/boot/efi/systemd-bootx64.efi"), 0o644)
	write(t, filepath.Join(osDir, "os.yaml"), fmt.Sprintf(`api_version: rackstrap.io/image/v1
name: %s
version: "1"
source_date_epoch: 1700000000
base: {dir: root}
kernel:
  version: %s
  image: vmlinuz
  initrd: initrd.img
  cmdline: console=ttyS0 panic=-1
agent: %s
first_boot:
  - name: 50-rackstrap-agent
    run: exec /usr/bin/rackstrap-agent firstboot --state auto --idle-exit 2m
outputs:
  disk: {size: 96MiB, esp_size: 40MiB}
`, imgName, rel, agent), 0o644)
	run(t, 3*time.Minute, rs, "image", "build", filepath.Join(osDir, "os.yaml"), "--out", filepath.Join(osDir, "out"))

	key, pub := filepath.Join(dir, "signing.key"), filepath.Join(dir, "signing.pub")
	run(t, time.Minute, rs, "image", "keygen", "--key", key, "--pub", pub)
	store = filepath.Join(dir, "store")
	run(t, 2*time.Minute, rs, "image", "import", filepath.Join(osDir, "out"), "--store", store, "--key", key)

	artifacts = filepath.Join(dir, "artifacts")
	copyFile(t, "/usr/lib/ipxe/ipxe.efi", filepath.Join(artifacts, "ipxe.efi"), 0o644)
	copyFile(t, "/usr/lib/ipxe/undionly.kpxe", filepath.Join(artifacts, "undionly.kpxe"), 0o644)
	copyFile(t, filepath.Join(nb, "out", netKernel), filepath.Join(artifacts, netKernel), 0o644)
	copyFile(t, filepath.Join(nb, "out", netInitrd), filepath.Join(artifacts, netInitrd), 0o644)
	return artifacts, store, pub, netKernel, netInitrd
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// builds are the binaries and images, made once for the package's tests
// (TestMain removes them).
type builds struct {
	rs, agent, dir                             string
	artifacts, store, pub, kernel, initrd, key string
}

var (
	buildOnce sync.Once
	buildErr  string
	shared    builds
)

func built(t *testing.T) builds {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rackstrap-e2e-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		os.Chmod(dir, 0o755)
		atExit(func() { os.RemoveAll(dir) })
		b := builds{dir: dir, rs: filepath.Join(dir, "rackstrap"), agent: filepath.Join(dir, "rackstrap-agent")}
		// a failure inside Do must not leave later tests with half a build
		ok := false
		defer func() {
			if !ok && buildErr == "" {
				buildErr = "building the binaries and images failed (see the first test's log)"
			}
		}()
		goBuild(t, "github.com/rackstrap/rackstrap/cmd/rackstrap", b.rs)
		goBuild(t, "github.com/rackstrap/rackstrap/cmd/rackstrap-agent", b.agent)
		b.artifacts, b.store, b.pub, b.kernel, b.initrd = buildImages(t, b.rs, b.agent, dir)
		b.key = filepath.Join(dir, "signing.key")
		shared, ok = b, true
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return shared
}

type nodeDetail struct {
	model.Node
	Timeline []model.Step       `json:"timeline"`
	Events   []model.AuditEntry `json:"events"`
}

// TestPowerOnToHandedOff takes one QEMU machine whose BMC is ipmi_sim from
// power-off to HandedOff through Rackstrap's real protocols: IPMI power and
// boot device, DHCP/iPXE/HTTP from `rackstrap serve`, the agent (PID 1 of
// the netboot initramfs) checking in its inventory, validation against the
// qemu-vm profile, the signed image streamed to the virtio disk, the boot
// from disk, the installed OS's first-boot check-in and burn-in, and the
// hand-off to a real slurmctld (a dynamic node with the verified facts):
// first with slurmctld stopped, which fails the node with handoff-failed,
// then by the technician's retry once it is back. Decommissioning then drains the node in Slurm with a reason, removes it
// and powers the machine off.
func TestPowerOnToHandedOff(t *testing.T) {
	need(t, map[string]string{"qemu-system-x86_64": "qemu-system-x86", "ipmi_sim": "openipmi", "ipmitool": "ipmitool",
		"ip": "iproute2", "busybox": "busybox-static", "dpkg-deb": "dpkg", "apt-get": "apt"})
	start := time.Now()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	b := built(t)
	rs, artifacts, store, pub, kernel, initrd := b.rs, b.artifacts, b.store, b.pub, b.kernel, b.initrd
	t.Logf("binaries and images built in %v", time.Since(start).Round(time.Second))

	ns := newNetns(t, nsName, ctlCIDR)
	// The site's Slurm controller: a real slurmctld and munged beside the
	// controller in its namespace (stopped before the namespace goes).
	sc := slurmtest.Start(t, slurmtest.Options{Netns: ns.name})
	vm := vmSpec{dir: filepath.Join(dir, "vm"), mac: vmMAC, memMiB: vmMemMiB, cpus: vmCPUs, ipmiLAN: 9001, ipmiVM: 9002}
	os.MkdirAll(vm.dir, 0o755)
	vm.disk = filepath.Join(vm.dir, "disk.raw")
	if err := os.WriteFile(vm.disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(vm.disk, diskSize); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "/usr/share/OVMF/OVMF_VARS.fd", filepath.Join(vm.dir, "vars.fd"), 0o644)
	startBMC(t, ns, vm, bmcUser, bmcPass)
	defer func() {
		if t.Failed() {
			for _, f := range []string{"console.log", "power.log", "qemu.log", "ipmi_sim.log", "serve.log"} {
				b, _ := os.ReadFile(filepath.Join(vm.dir, f))
				t.Logf("--- %s (last 6000 bytes) ---\n%s", f, tail(string(b), 6000))
			}
		}
	}()

	pw := filepath.Join(dir, "bmc.pass")
	write(t, pw, bmcPass+"\n", 0o600)
	// API access: the first admin token, made in the store directly
	data := filepath.Join(dir, "data")
	var tok struct{ Secret string }
	if err := json.Unmarshal([]byte(run(t, time.Minute, rs, "token", "create", "--bootstrap", "--role", "admin", "--name", "e2e", "--data-dir", data, "-o", "json")), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("token create: %v (%+v)", err, tok)
	}
	api := ns.ip + ":8080"
	server := "http://" + api
	serve := ns.start(t, "rackstrap serve", filepath.Join(vm.dir, "serve.log"), 12*time.Minute, rs, "serve",
		"--data-dir", data, "--api-listen", api, "--log-format", "json",
		"--artifacts", artifacts, "--kernel", kernel, "--initrd", initrd,
		"--image-store", store, "--image", imgName+":1", "--trusted-key", pub,
		"--boot-url", "http://"+ns.ip+":8081", "--boot-listen", ns.ip+":8081", "--tftp-listen", ns.ip+":69",
		"--bmc-username", bmcUser, "--bmc-password-file", pw, "--slurm-conf", sc.Conf,
		"--dhcp-interface", "br0", "--dhcp-subnet", "10.231.0.0/24", "--dhcp-range", "10.231.0.100-10.231.0.150")
	cli := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := ns.cmd(ctx, append([]string{rs, "--server", server}, args...)...)
		c.Env = append(os.Environ(), "RACKSTRAP_TOKEN="+tok.Secret) // not in argv
		out, err := c.CombinedOutput()
		return string(out), err
	}
	waitUntil(t, serve, 30*time.Second, "the controller's API", func() bool { _, err := cli("nodes", "list"); return err == nil })

	// Enrol: the rack manifest names the BMC (IPMI) and the NIC's MAC.
	manifest := filepath.Join(dir, "rack.yaml")
	write(t, manifest, fmt.Sprintf(`racks:
  - name: e2e
    profile: qemu-vm
    desired: handed-off
    handoff: slurm
    nodes:
      - slot: 1
        bmc: ipmi://127.0.0.1:%d
        macs: [%s]
`, vm.ipmiLAN, vmMAC), 0o644)
	// slurmctld is down when the node comes to its hand-off (it is needed
	// for nothing before): the hand-off fails, and once slurmctld is back
	// the technician's retry hands the node off.
	sc.StopSlurmctld()
	if out, err := cli("apply", manifest, "--provision"); err != nil {
		t.Fatalf("rackstrap apply: %v\n%s", err, out)
	}
	provisioned := time.Now()

	var d nodeDetail
	last := model.State("")
	lastErr := ""
	watch := func(want model.State) func() bool {
		return func() bool {
			out, err := cli("nodes", "show", node, "-o", "json")
			if err == nil {
				err = json.Unmarshal([]byte(out), &d)
			}
			if err != nil {
				// Said once per distinct failure: a poll that keeps
				// failing shows why, not only "not there yet".
				if msg := fmt.Sprintf("%v: %.300s", err, out); msg != lastErr {
					t.Logf("%6.1fs nodes show %s: %s", time.Since(provisioned).Seconds(), node, msg)
					lastErr = msg
				}
				return false
			}
			if d.State != last {
				t.Logf("%6.1fs %s: %s", time.Since(provisioned).Seconds(), node, d.State)
				last = d.State
			}
			if d.State == want {
				return true
			}
			if d.State == model.Failed || d.State == model.Quarantined {
				t.Fatalf("%s went to %s: %s: %s\nfindings: %s", node, d.State, d.FailureClass, d.FailureMsg, d.Findings)
			}
			return false
		}
	}
	waitUntil(t, serve, 10*time.Minute, node+" Failed at its hand-off (slurmctld down)", watch(model.Failed))
	t.Logf("power-on to the failed hand-off in %v (whole test so far %v)", time.Since(provisioned).Round(time.Second), time.Since(start).Round(time.Second))
	handOffFailed(t, sc, d.Node)
	retried := time.Now()
	if out, err := cli("nodes", "act", node, "retry"); err != nil {
		t.Fatalf("rackstrap nodes act %s retry: %v\n%s", node, err, out)
	}
	waitUntil(t, serve, 5*time.Minute, node+" HandedOff", watch(model.HandedOff))
	t.Logf("retry to HandedOff in %v (whole test so far %v)", time.Since(retried).Round(time.Second), time.Since(start).Round(time.Second))

	// The timeline: every step of the chain, in order, each succeeded.
	want := []string{"enroll", "set-boot-network", "boot-network", "wait-netboot-checkin", "inspect", "validate",
		"image", "set-boot-disk", "boot-disk", "wait-firstboot-checkin", "burn-in", "hand-off"}
	var got []string
	for _, s := range d.Timeline {
		if s.Outcome == model.Succeeded {
			got = append(got, s.Name)
		}
	}
	if !isSubsequence(want, got) {
		t.Errorf("timeline (succeeded steps) = %v, want %v in that order", got, want)
	}
	actions := auditActions(t, ns, server, tok.Secret)
	for _, a := range []string{"dhcp.ack", "agent.checkin"} {
		if len(actions[a]) == 0 {
			t.Errorf("no %s event recorded for %s; events: %v", a, node, actions)
		}
	}
	wantAuditedOnce(t, actions, "handoff.cluster")

	// What the agent reported from inside the VM.
	inv, err := inventory.Parse(d.Inventory)
	if err != nil {
		t.Fatalf("stored inventory: %v", err)
	}
	cpus := 0
	for _, c := range inv.CPUs {
		cpus += c.Threads
	}
	if cpus != vmCPUs {
		t.Errorf("inventory CPUs: %d threads (%+v), want %d", cpus, inv.CPUs, vmCPUs)
	}
	var disk *inventory.BlockDevice
	for i := range inv.Disks {
		if inv.Disks[i].Name == "vda" {
			disk = &inv.Disks[i]
		}
	}
	if disk == nil || disk.SizeBytes != diskSize {
		t.Errorf("inventory disks = %+v, want vda of %d bytes", inv.Disks, int64(diskSize))
	}
	macOK := false
	for _, n := range inv.NICs {
		macOK = macOK || strings.EqualFold(n.MAC, vmMAC)
	}
	if !macOK {
		t.Errorf("inventory NICs = %+v, want one with MAC %s", inv.NICs, vmMAC)
	}
	if inv.System.Vendor != "QEMU" {
		t.Errorf("inventory system = %+v, want vendor QEMU", inv.System)
	}

	// slurmctld knows the node with the facts validation verified.
	checkSlurmNode(t, sc, d.Node, inv)

	// Decommissioned: drained in Slurm with a reason, removed, powered off.
	decommission(t, serve, sc, cli, vm)
	wantAuditedOnce(t, auditActions(t, ns, server, tok.Secret), "handoff.cluster", "release.cluster")

	// The audit chain verifies end to end.
	if out, err := cli("audit", "verify"); err != nil {
		t.Errorf("rackstrap audit verify: %v\n%s", err, out)
	} else {
		t.Logf("audit verify: %s", strings.TrimSpace(out))
	}
	// The console shows both boots: the netboot agent and the installed OS.
	con, _ := os.ReadFile(filepath.Join(vm.dir, "console.log"))
	for _, m := range []string{"rackstrap-init: rackstrap-agent e2e starting", "checked in as node " + node, "e2e-os: root mounted"} {
		if !bytes.Contains(con, []byte(m)) {
			t.Errorf("console lacks %q", m)
		}
	}
	t.Logf("e2e done in %v", time.Since(start).Round(time.Second))
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func waitUntil(t *testing.T, d *daemon, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if d.exited() {
			b, _ := os.ReadFile(d.log)
			t.Fatalf("%s exited while waiting for %s:\n%s", d.name, what, tail(string(b), 4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
		time.Sleep(time.Second)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestTamperedImageIsRefused: one byte of the signed OS image changed in
// the store, or an image signed by a key the controller does not trust:
// `rackstrap serve` refuses to start with it, so no boot server ever
// offers those bytes and no disk is written.
func TestTamperedImageIsRefused(t *testing.T) {
	need(t, map[string]string{"busybox": "busybox-static", "dpkg-deb": "dpkg", "apt-get": "apt"})
	b := built(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "bmc.pass")
	write(t, pw, bmcPass+"\n", 0o600)
	serve := func(store, pub string) string {
		artifacts := filepath.Join(t.TempDir(), "artifacts")
		os.MkdirAll(artifacts, 0o755)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// loopback only, and nothing to bind: it must fail while loading the image
		cmd := exec.CommandContext(ctx, b.rs, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--api-listen", "127.0.0.1:0",
			"--artifacts", artifacts, "--image-store", store, "--image", imgName+":1", "--trusted-key", pub,
			"--boot-url", "http://127.0.0.1:1", "--boot-listen", "127.0.0.1:0", "--tftp-listen", "127.0.0.1:0", "--no-dhcp",
			"--bmc-password-file", pw, "--log-format", "json")
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("rackstrap serve with a bad image: %v (it must refuse to start)\n%s", err, out)
		}
		if fs, _ := os.ReadDir(artifacts); len(fs) != 0 {
			t.Errorf("serve exported %v to the boot server's directory before refusing", fs)
		}
		return string(out)
	}

	// one byte of the raw disk artifact flipped
	tampered := filepath.Join(dir, "store")
	run(t, time.Minute, "cp", "-a", b.store, tampered)
	// the store keeps artifacts as content-addressed blobs named in the manifest
	var m struct {
		Artifacts []struct {
			Format string
			Stored struct{ Digest string }
		}
	}
	mb, err := os.ReadFile(filepath.Join(tampered, "images", imgName, "1", "manifest.json"))
	if err != nil || json.Unmarshal(mb, &m) != nil {
		t.Fatalf("the store's manifest: %v\n%s", err, mb)
	}
	var raws []string
	for _, a := range m.Artifacts {
		if a.Format == "raw" {
			raws = append(raws, filepath.Join(tampered, "blobs", "sha256", strings.TrimPrefix(a.Stored.Digest, "sha256:")))
		}
	}
	if len(raws) != 1 {
		t.Fatalf("the manifest names raw artifacts %v, want one", raws)
	}
	// the blob is zstd: flip one byte of the image inside it and compress
	// again, so only the signed digests can tell
	plain := filepath.Join(dir, "plain.raw")
	run(t, time.Minute, "zstd", "-q", "-d", raws[0], "-o", plain)
	f, err := os.OpenFile(plain, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	f.ReadAt(one, 3<<20)
	one[0] ^= 0x01
	f.WriteAt(one, 3<<20)
	f.Close()
	os.Chmod(raws[0], 0o644)
	run(t, time.Minute, "zstd", "-q", "-f", plain, "-o", raws[0])
	if out := serve(tampered, b.pub); !strings.Contains(out, "image "+imgName+":1") {
		t.Errorf("serve with a tampered image said:\n%s\nwant it to refuse image %s:1", out, imgName)
	} else {
		t.Logf("tampered image: %s", lastLine(out))
	}

	// signed, but by a key this controller does not trust
	other, otherPub := filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub")
	run(t, time.Minute, b.rs, "image", "keygen", "--key", other, "--pub", otherPub)
	if out := serve(b.store, otherPub); !strings.Contains(out, "refusing image "+imgName+":1") {
		t.Errorf("serve with an untrusted signature said:\n%s\nwant 'refusing image %s:1'", out, imgName)
	} else {
		t.Logf("untrusted signature: %s", lastLine(out))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
