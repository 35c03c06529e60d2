// Package ipmisim runs OpenIPMI's ipmi_sim (Debian package openipmi) as a
// real IPMI BMC for tests, following ../shared/RECIPES.md §1 variant B: a
// chassis_control script that records power and boot device in files (no
// VM is needed to test power and boot control).
package ipmisim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Sim is one running ipmi_sim.
type Sim struct {
	Addr     netip.AddrPort // UDP address of its LAN channel
	User     string
	Password string
	dir      string
}

const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// The chassis_control script: ipmi_sim runs "chassis.sh 0x20 get power boot"
// and "chassis.sh 0x20 set power 1 ...".
const chassis = `#!/bin/sh
D=$(cd "$(dirname "$0")" && pwd); op=$2; shift 2
case $op in
get) for p; do case $p in power) echo "power:$(cat "$D/power" 2>/dev/null || echo 0)" ;;
     boot) echo "boot:$(cat "$D/bootdev" 2>/dev/null || echo default)" ;; *) exit 1 ;; esac; done ;;
set) while [ $# -ge 2 ]; do p=$1 v=$2; shift 2; case $p in
     power) echo "$v" >"$D/power" ;; reset) echo 1 >"$D/power" ;;
     shutdown) echo 0 >"$D/power" ;; boot) echo "$v" >"$D/bootdev" ;; identify) : ;; *) exit 1 ;; esac; done ;;
esac
`

// Start runs ipmi_sim on 127.0.0.1 and a free UDP port, with a fresh state
// directory and one admin user; t.Cleanup stops it. A missing ipmi_sim
// fails the test (install openipmi), it never skips.
func Start(t testing.TB, user, password string) *Sim {
	t.Helper()
	return StartAt(t, netip.MustParseAddr("127.0.0.1"), user, password)
}

// StartAt is Start on another (loopback) address.
func StartAt(t testing.TB, addr netip.Addr, user, password string) *Sim {
	t.Helper()
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		t.Fatalf("ipmi_sim not found: install the Debian package openipmi (make test-deps does)")
	}
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Fatalf("ipmitool not found: install the Debian package ipmitool (make test-deps does)")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t, addr)
	conf := fmt.Sprintf(`name "rackstrap-bmc"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_admin none md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 none md5
`, addr, port, filepath.Join(dir, "chassis.sh"), user, password)
	for name, body := range map[string]string{"bmc.emu": emu, "lan.conf": conf, "chassis.sh": chassis} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "sim.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", filepath.Join(dir, "state"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ipmi_sim: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		log.Close()
	})
	s := &Sim{Addr: netip.AddrPortFrom(addr, uint16(port)), User: user, Password: password, dir: dir}
	// Ready when ipmitool gets an answer (normally well under a second).
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c := exec.CommandContext(ctx, "ipmitool", "-I", "lanplus", "-C", "3", "-N", "1", "-R", "1",
			"-H", addr.String(), "-p", fmt.Sprint(port), "-U", user, "-E", "chassis", "power", "status")
		c.Env = []string{"IPMITOOL_PASSWORD=" + password}
		out, err := c.CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-done:
			data, _ := os.ReadFile(filepath.Join(dir, "sim.log"))
			t.Fatalf("ipmi_sim exited: %s", data)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipmi_sim on port %d not ready: %v %s", port, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// Power is the chassis power the script recorded: "1" on, "0" off.
func (s *Sim) Power() string { return s.read("power", "0") }

// BootDev is the boot device the script recorded ("pxe", "cdrom", ...).
func (s *Sim) BootDev() string { return s.read("bootdev", "default") }

func (s *Sim) read(name, def string) string {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return def
	}
	return strings.TrimSpace(string(data))
}

func freeUDPPort(t testing.TB, addr netip.Addr) int {
	c, err := net.ListenPacket("udp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
