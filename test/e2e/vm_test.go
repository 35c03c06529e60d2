//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// netns is a network namespace with a bridge (the provisioning network,
// the controller's address on it) and a tap device for the VM's NIC.
type netns struct {
	name string
	ip   string // the controller's address on br0
}

func newNetns(t *testing.T, name, cidr string) *netns {
	t.Helper()
	// a namespace left by an earlier run that was killed
	_ = exec.Command("ip", "netns", "del", name).Run()
	ip, _, _ := strings.Cut(cidr, "/")
	n := &netns{name: name, ip: ip}
	atSignal(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	for _, args := range [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "add", "br0", "type", "bridge"},
		{"-n", name, "addr", "add", cidr, "dev", "br0"},
		{"-n", name, "link", "set", "br0", "up"},
		{"-n", name, "tuntap", "add", "dev", "tap0", "mode", "tap"},
		{"-n", name, "link", "set", "tap0", "master", "br0"},
		{"-n", name, "link", "set", "tap0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s (the e2e test needs root and iproute2)", strings.Join(args, " "), err, out)
		}
	}
	return n
}

// cmd runs argv inside the namespace.
func (n *netns) cmd(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name}, argv...)...)
}

// daemon is a long-running process in the namespace, killed (its whole
// process group) at cleanup or when its deadline passes.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (n *netns) start(t *testing.T, name, logFile string, deadline time.Duration, argv ...string) *daemon {
	t.Helper()
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name}, argv...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() { _ = cmd.Wait(); lf.Close(); close(d.done) }()
	timer := time.AfterFunc(deadline, func() {
		t.Logf("%s ran past its deadline (%v): killing it", name, deadline)
		d.kill()
	})
	t.Cleanup(func() {
		timer.Stop()
		d.kill()
	})
	atSignal(d.kill)
	return d
}

func (d *daemon) kill() {
	if d.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
	}
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// The ipmi_sim emulator commands (RECIPES.md §1).
const bmcEmu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// chassisScript is ipmi_sim's chassis_control (RECIPES.md §1 variant B):
// power runs or kills the VM (start-vm.sh), boot records the device the
// next start boots from. It must return quickly: ipmi_sim blocks on it.
const chassisScript = `#!/bin/sh
D=$(cd "$(dirname "$0")" && pwd); op=$2; shift 2
running() { [ -s "$D/vm.pid" ] && kill -0 "$(cat "$D/vm.pid")" 2>/dev/null; }
start() { running || { setsid "$D/start-vm.sh" </dev/null >>"$D/qemu.log" 2>&1 & echo $! >"$D/vm.pid"; echo "$(date +%s.%N) start $(cat "$D/bootdev" 2>/dev/null)" >>"$D/power.log"; }; }
stop() { running && { kill "$(cat "$D/vm.pid")"; n=0; while running && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done; kill -9 "$(cat "$D/vm.pid")" 2>/dev/null; echo "$(date +%s.%N) stop" >>"$D/power.log"; }; rm -f "$D/vm.pid"; }
case $op in
get) for p; do case $p in power) running && echo power:1 || echo power:0 ;;
     boot) echo "boot:$(cat "$D/bootdev" 2>/dev/null || echo default)" ;; *) exit 1 ;; esac; done ;;
set) while [ $# -ge 2 ]; do p=$1 v=$2; shift 2; case $p in
     power) if [ "$v" = 1 ]; then start; else stop; fi ;; reset) stop; start ;;
     shutdown) stop ;; boot) echo "$v" >"$D/bootdev" ;; identify) : ;; *) exit 1 ;; esac; done ;;
esac
`

// vmSpec is the machine behind the BMC.
type vmSpec struct {
	dir     string // scratch: vars.fd, disk, console log, scripts
	disk    string
	mac     string
	memMiB  int
	cpus    int
	ipmiLAN int // UDP port of the BMC's LAN channel (in the namespace)
	ipmiVM  int // TCP port QEMU's ipmi-bmc-extern connects to
}

// startVMScript execs QEMU (TCG only: see RECIPES.md's KVM trap; -cpu max
// for RDRAND, which seeds the guest kernel's RNG at once: with qemu64 the
// agent's first getrandom waits minutes for entropy under TCG) with the
// boot order the BMC last set, the VM's serial console appended to
// console.log, and the BMC attached through ipmi-bmc-extern.
func (v vmSpec) startVMScript() string {
	return fmt.Sprintf(`#!/bin/sh
D=%q
case "$(cat "$D/bootdev" 2>/dev/null)" in
pxe) NET=1 DISK=2 ;;
*) NET=2 DISK=1 ;;
esac
exec qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m %d -smp %d -nodefaults -display none \
  -chardev file,id=con0,path="$D/console.log",append=on -serial chardev:con0 \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
  -drive if=pflash,format=raw,unit=1,file="$D/vars.fd" \
  -drive file=%q,if=none,id=d0,format=raw,cache=unsafe -device virtio-blk-pci,drive=d0,bootindex=$DISK \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=%s,bootindex=$NET \
  -chardev socket,id=ipmi0,host=127.0.0.1,port=%d,reconnect=10 -device ipmi-bmc-extern,chardev=ipmi0,id=bmc0 \
  -device isa-ipmi-kcs,bmc=bmc0
`, v.dir, v.memMiB, v.cpus, v.disk, v.mac, v.ipmiVM)
}

// startBMC runs ipmi_sim in the namespace as the VM's BMC; cleanup kills
// it and the VM it started.
func startBMC(t *testing.T, n *netns, v vmSpec, user, password string) *daemon {
	t.Helper()
	conf := fmt.Sprintf(`name "rackstrap-e2e-bmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_admin none md5
    guid a123456789abcdefa123456789abcdef
  endlan
  serial 15 127.0.0.1 %d codec VM
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 none md5
`, v.ipmiLAN, v.ipmiVM, filepath.Join(v.dir, "chassis.sh"), user, password)
	for name, body := range map[string]string{"bmc.emu": bmcEmu, "lan.conf": conf, "chassis.sh": chassisScript, "start-vm.sh": v.startVMScript()} {
		if err := os.WriteFile(filepath.Join(v.dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(v.dir, "bmc-state")
	os.MkdirAll(state, 0o755)
	d := n.start(t, "ipmi_sim", filepath.Join(v.dir, "ipmi_sim.log"), 15*time.Minute,
		"ipmi_sim", "-n", "-c", filepath.Join(v.dir, "lan.conf"), "-f", filepath.Join(v.dir, "bmc.emu"), "-s", state)
	t.Cleanup(func() { checkUEFIBoot(t, v.dir) })
	t.Cleanup(func() { killVM(v.dir) })
	atSignal(func() { killVM(v.dir) })
	return d
}

// checkUEFIBoot: a VM that booted its disk had its root partition grown
// to the disk, and booted through the UEFI boot
// entry the netboot agent wrote after imaging (OVMF keeps it in the VM's
// writable vars.fd across power cycles), as the installed OS's first-boot
// agent reports from BootCurrent on the console. A VM that never booted
// its disk has nothing to show.
func checkUEFIBoot(t *testing.T, dir string) {
	if t.Failed() {
		return
	}
	con, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	if !strings.Contains(string(con), "e2e-os: root mounted") {
		return
	}
	// the imaging grew the root partition; the first boot grew the
	// filesystem, or (this image has no resize2fs) said why not
	for _, want := range []string{"grew partition 2", "note: rootfs: "} {
		if !strings.Contains(string(con), want) {
			t.Errorf("the console lacks %q (the root partition grown at imaging, the filesystem at first boot); its rootfs lines:\n%s", want, grepLines(string(con), "rootfs"))
		}
	}
	t.Logf("root: %s", grepLines(string(con), "note: rootfs"))
	for _, want := range []string{"uefi: boot entry Boot", "the entry the imaging wrote"} {
		if !strings.Contains(string(con), want) {
			t.Errorf("the installed OS did not boot through the UEFI entry the agent wrote: the console lacks %q; its uefi lines:\n%s", want, grepLines(string(con), "uefi"))
		}
	}
	t.Logf("UEFI: %s", grepLines(string(con), "note: uefi: "))
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// killVM kills the VM the chassis script started, if it still runs.
func killVM(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "vm.pid"))
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// onSignal holds what must not outlive an interrupted run (the test
// binary's cleanups do not run on SIGINT/SIGTERM): the daemons and the
// namespace, undone in reverse order by TestMain's signal handler.
var onSignal struct {
	sync.Mutex
	undo []func()
}

func atSignal(f func()) {
	onSignal.Lock()
	defer onSignal.Unlock()
	onSignal.undo = append(onSignal.undo, f)
}

func TestMain(m *testing.M) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		onSignal.Lock()
		for i := len(onSignal.undo) - 1; i >= 0; i-- {
			onSignal.undo[i]()
		}
		fmt.Fprintf(os.Stderr, "e2e: %v: killed the VM, ipmi_sim and rackstrap serve, removed the namespace\n", s)
		os.Exit(1)
	}()
	code := m.Run()
	onExit.Lock()
	for i := len(onExit.undo) - 1; i >= 0; i-- {
		onExit.undo[i]()
	}
	onExit.Unlock()
	os.Exit(code)
}

// onExit holds what outlives one test but not the run (the shared builds).
var onExit struct {
	sync.Mutex
	undo []func()
}

func atExit(f func()) {
	onExit.Lock()
	defer onExit.Unlock()
	onExit.undo = append(onExit.undo, f)
}
