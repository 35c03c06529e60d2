// Package e2e_test boots real firmware through Rackstrap's own DHCP, TFTP
// and HTTP services: QEMU with SeaBIOS (its NIC ROM is iPXE) and with OVMF
// (UEFI PXE → snponly.efi over TFTP → iPXE), in a network namespace with a
// bridge and tap devices, until the guest prints its marker.
package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/pxe/artifact"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	pxehttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/internal/nettest"
	"github.com/rackstrap/rackstrap/pxe/ipxe"
	"github.com/rackstrap/rackstrap/pxe/tftp"
)

const (
	childEnv = "RACKSTRAP_PXE_BOOT_CHILD"
	srvIP    = "10.222.0.1"
	marker   = "RACKSTRAP-OK"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runServices(dir))
	}
	os.Exit(m.Run())
}

// scripts renders each node's boot script: the busybox initramfs with the
// MAC and firmware platform on the kernel command line.
type scripts struct{ base string }

func (s scripts) Script(_ context.Context, mac net.HardwareAddr) ([]byte, error) {
	return ipxe.Render(ipxe.Script{
		MAC: mac.String(), Action: ipxe.Boot,
		Kernel:  s.base + "/vmlinuz",
		Initrds: []string{s.base + "/initrd.gz"},
		// no_timer_check: under TCG on a loaded host the kernel's IO-APIC
		// timer check can miss its ticks and panic ("IO-APIC + timer
		// doesn't work"), as CI saw at load 20.
		Cmdline: ipxe.Cmdline{}.Set("console", "ttyS0").Flag("quiet").Set("panic", "-1").Flag("no_timer_check").
			Set("rackstrap.platform", "${platform}").Set("rackstrap.mac", mac.String()),
	})
}

type printer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (p *printer) DHCPEvent(e dhcp.Event) { p.mu.Lock(); p.enc.Encode(e); p.mu.Unlock() }

// runServices is the child: DHCP on br0, TFTP and HTTP on the bridge
// address, files from dir/tftp and dir/http, until SIGTERM.
func runServices(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	base := "http://" + srvIP + ":8080"
	cfg := dhcp.Config{
		Interface: "br0",
		Subnets: []dhcp.Subnet{{
			Prefix: netip.MustParsePrefix("10.222.0.0/24"),
			Pools:  []dhcp.Range{{Start: netip.MustParseAddr("10.222.0.100"), End: netip.MustParseAddr("10.222.0.150")}},
		}},
		Boot: dhcp.Boot{ScriptURL: base + "/ipxe?mac={mac}"},
	}
	if _, err := os.Stat(filepath.Join(dir, "proxy")); err == nil {
		// Another server (dnsmasq) hands out the addresses.
		cfg.Mode, cfg.Subnets = dhcp.ModeProxy, nil
	}
	d, err := dhcp.New(cfg, log, dhcp.Deps{Store: dhcp.NewFileStore(filepath.Join(dir, "leases")), Observer: &printer{enc: json.NewEncoder(os.Stdout)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	tdir, err1 := artifact.NewDir(filepath.Join(dir, "tftp"))
	hdir, err2 := artifact.NewDir(filepath.Join(dir, "http"))
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, err1, err2)
		return 2
	}
	t, err := tftp.New(tftp.Config{Addr: netip.MustParseAddrPort(srvIP + ":69")}, log, tdir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	h, err := pxehttp.New(pxehttp.Config{Addr: netip.MustParseAddrPort(srvIP + ":8080")}, log,
		pxehttp.Deps{Files: hdir, Scripts: scripts{base: base}, Identities: d})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.Serve(gctx) })
	g.Go(func() error { return t.Serve(gctx) })
	g.Go(func() error { return h.Serve(gctx) })
	if err := g.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// cacheDir holds the extracted kernel between runs.
func cacheDir(t *testing.T) string {
	d := os.Getenv("XDG_CACHE_HOME")
	if d == "" {
		d = "/var/cache"
	}
	d = filepath.Join(d, "rackstrap-test")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// kernel returns Debian's current amd64 kernel, extracted once from its
// package into the cache.
func kernel(t *testing.T) string {
	t.Helper()
	dir := cacheDir(t)
	out, err := nettest.RunErr("apt-cache", "depends", "linux-image-amd64")
	pkg := ""
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if err != nil || pkg == "" {
		t.Fatalf("find the kernel package: %v\n%s\nrun apt-get update", err, out)
	}
	k := filepath.Join(dir, "vmlinuz-"+strings.TrimPrefix(pkg, "linux-image-"))
	if _, err := os.Stat(k); err == nil {
		return k
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
	dl.Dir = tmp
	if b, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download %s: %v\n%s", pkg, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	tmpK := k + ".tmp-" + nettest.Suffix() // parallel tests may extract at once
	script := fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -xO --wildcards './boot/vmlinuz-*' > %q", debs[0], tmpK)
	if b, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("extract the kernel: %v\n%s", err, b)
	}
	if err := os.Rename(tmpK, k); err != nil {
		t.Fatal(err)
	}
	return k
}

const initScript = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
echo "RACKSTRAP-OK cmdline: $(/bin/busybox cat /proc/cmdline)" > /dev/console
/bin/busybox poweroff -f
`

// initramfs builds a busybox initramfs that prints the marker and powers off.
func initramfs(t *testing.T, out string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"bin", "dev", "proc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("read /bin/busybox: %v; install busybox-static", err)
	}
	os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755)
	os.WriteFile(filepath.Join(root, "init"), []byte(initScript), 0o755)
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1 > "+out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build initramfs: %v\n%s", err, b)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lab prepares the artifacts and a namespace with bridge br0 (srvIP/24) and
// the given taps, and starts the services in it (proxyDHCP when proxy is
// set). It returns the namespace, the artifact dir and the services' output.
func lab(t *testing.T, proxy bool, taps ...string) (string, string, func() string) {
	nettest.Require(t, map[string]string{
		"qemu-system-x86_64": "qemu-system-x86", "/usr/lib/ipxe/snponly.efi": "ipxe",
		"/usr/share/OVMF/OVMF_CODE.fd": "ovmf", "cpio": "cpio", "/bin/busybox": "busybox-static", "ip": "iproute2",
	})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for _, d := range []string{"tftp", "http"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	copyFile(t, "/usr/lib/ipxe/snponly.efi", filepath.Join(dir, "tftp", "snponly.efi"))
	copyFile(t, "/usr/lib/ipxe/undionly.kpxe", filepath.Join(dir, "tftp", "undionly.kpxe"))
	copyFile(t, kernel(t), filepath.Join(dir, "http", "vmlinuz"))
	initramfs(t, filepath.Join(dir, "http", "initrd.gz"))
	if proxy {
		os.WriteFile(filepath.Join(dir, "proxy"), nil, 0o644)
	}

	ns := nettest.NS(t, "rsp-boot")
	nettest.Run(t, "ip", "-n", ns, "link", "add", "br0", "type", "bridge")
	nettest.Run(t, "ip", "-n", ns, "addr", "add", srvIP+"/24", "dev", "br0")
	nettest.Run(t, "ip", "-n", ns, "link", "set", "br0", "up")
	for _, tap := range taps {
		nettest.Run(t, "ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
		nettest.Run(t, "ip", "-n", ns, "link", "set", tap, "master", "br0")
		nettest.Run(t, "ip", "-n", ns, "link", "set", tap, "up")
	}
	exe, _ := os.Executable()
	_, srvOut := nettest.StartEnv(t, ns, []string{childEnv + "=" + dir}, exe, "-test.run=^$")
	if !nettest.WaitFor(10*time.Second, func() bool { return strings.Count(srvOut(), "msg=serving") == 3 }) {
		t.Fatalf("services did not start:\n%s", srvOut())
	}
	return ns, dir, srvOut
}

// boot runs QEMU on tap until it powers off or the deadline passes, and
// returns its serial console.
func boot(t *testing.T, ns, name string, args ...string) string {
	t.Helper()
	args = append([]string{"qemu-system-x86_64", "-machine", "accel=tcg", "-m", "512", "-nodefaults",
		"-display", "none", "-serial", "stdio", "-no-reboot", "-boot", "n"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second) // TCG on a busy 2-core machine
	defer cancel()
	cmd := nettest.Cmd(ctx, ns, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s boot took %v (qemu: %v)", name, time.Since(start).Round(time.Second), err)
	return out.String()
}

// acked lists the boot files the DHCP server gave mac in events of type typ.
func acked(out, typ, mac string) []string {
	var got []string
	for _, line := range strings.Split(out, "\n") {
		var e dhcp.Event
		if json.Unmarshal([]byte(line), &e) == nil && e.Type == typ && e.Client.MAC.String() == mac {
			got = append(got, e.Boot.File)
		}
	}
	return got
}

func TestQEMUBoot(t *testing.T) {
	t.Parallel()
	ns, dir, srvOut := lab(t, false, "tap0", "tap1")
	vms := map[string]struct {
		tap, mac, platform string
		args               []string
		boots              []string // boot files the DHCP server must hand out, in order
	}{
		"bios": {tap: "tap0", mac: "52:54:00:12:34:01", platform: "pcbios",
			boots: []string{"http://" + srvIP + ":8080/ipxe?mac=52:54:00:12:34:01"}},
		"uefi": {tap: "tap1", mac: "52:54:00:12:34:02", platform: "efi",
			args: []string{
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
				"-drive", "if=pflash,format=raw,unit=1,file=" + filepath.Join(dir, "vars.fd"),
			},
			boots: []string{"snponly.efi", "http://" + srvIP + ":8080/ipxe?mac=52:54:00:12:34:02"}},
	}
	copyFile(t, "/usr/share/OVMF/OVMF_VARS.fd", filepath.Join(dir, "vars.fd"))
	for name, vm := range vms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			nic := "virtio-net-pci,netdev=n0,mac=" + vm.mac
			if name == "uefi" {
				nic += ",romfile=" // OVMF's own PXE, so snponly.efi comes over our TFTP
			}
			console := boot(t, ns, name, append([]string{"-netdev", "tap,id=n0,ifname=" + vm.tap + ",script=no,downscript=no", "-device", nic}, vm.args...)...)
			want := fmt.Sprintf("rackstrap.platform=%s rackstrap.mac=%s", vm.platform, vm.mac)
			if !strings.Contains(console, marker) || !strings.Contains(console, want) {
				t.Fatalf("no %s with %q on the console:\n%s\nservices:\n%s", marker, want, tail(console), tail(srvOut()))
			}
			if got := acked(srvOut(), "ACK", vm.mac); strings.Join(got, " ") != strings.Join(vm.boots, " ") {
				t.Errorf("boot files acknowledged = %q, want %q", got, vm.boots)
			}
		})
	}
}

// TestQEMUProxyDHCP boots SeaBIOS's iPXE ROM where dnsmasq hands out the
// address and our server runs as proxyDHCP (port 67 offer, port 4011 ACK).
func TestQEMUProxyDHCP(t *testing.T) {
	t.Parallel()
	nettest.Require(t, map[string]string{"dnsmasq": "dnsmasq-base"})
	ns, dir, srvOut := lab(t, true, "tap0")
	conf := filepath.Join(dir, "dnsmasq.conf")
	os.WriteFile(conf, []byte("port=0\ninterface=br0\nbind-interfaces\nno-ping\nlog-dhcp\n"+
		"dhcp-range=10.222.0.160,10.222.0.180,255.255.255.0,1h\ndhcp-leasefile="+filepath.Join(dir, "dnsmasq.leases")+"\n"), 0o644)
	_, dnsOut := nettest.Start(t, ns, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file="+conf)
	const mac = "52:54:00:12:34:03"
	console := boot(t, ns, "proxy", "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac="+mac)
	want := "rackstrap.platform=pcbios rackstrap.mac=" + mac
	if !strings.Contains(console, marker) || !strings.Contains(console, want) {
		t.Fatalf("no %s with %q on the console:\n%s\nservices:\n%s\ndnsmasq:\n%s", marker, want, tail(console), tail(srvOut()), tail(dnsOut()))
	}
	if !strings.Contains(dnsOut(), "DHCPACK(br0) 10.222.0.1") {
		t.Errorf("dnsmasq acknowledged no address:\n%s", tail(dnsOut()))
	}
	script := "http://" + srvIP + ":8080/ipxe?mac=" + mac
	if got := acked(srvOut(), "PROXY-OFFER", mac); len(got) == 0 || got[0] != script {
		t.Errorf("proxy offers = %q, want %q", got, script)
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}
