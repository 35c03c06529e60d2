//go:build linux

// Package initproc is the agent's PID 1: the /init of Rackstrap's netboot
// initramfs and of the installed image's initrd. It mounts the kernel's
// filesystems, loads the modules the machine's devices ask for (by their
// modalias, from the initramfs's /lib/modules), leases an address over
// DHCP on the wired NICs, and then either hands over to the agent
// (rackstrap.* on the kernel command line: a Rackstrap netboot) or mounts
// root= and switches to it (a disk boot).
package initproc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// Logf is where the init reports each step.
type Logf func(format string, args ...any)

// MountKernelFS mounts /proc, /sys, /dev (devtmpfs), /run and /tmp when
// they are not mounted yet.
func MountKernelFS() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	// efivarfs is optional: a BIOS boot has none, a kernel may lack it
	// (or have it as a module: MountEFIVars again after LoadModules).
	_ = MountEFIVars()
	return nil
}

// UEFI says whether the kernel was booted by UEFI firmware.
func UEFI() bool {
	_, err := os.Stat("/sys/firmware/efi")
	return err == nil
}

// MountEFIVars mounts efivarfs on /sys/firmware/efi/efivars (already
// mounted: nil). Debian builds it as a module (efivarfs), which the
// kernel cannot load on demand without modprobe in the initramfs: pass it
// to LoadModules first.
func MountEFIVars() error {
	err := unix.Mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", 0, "")
	if errors.Is(err, unix.EBUSY) {
		return nil
	}
	return err
}

// Console returns a writer to the console, and to the first serial port
// as well when the command line sends the console elsewhere (a netboot
// script without console=ttyS0 still shows the agent on the serial line).
func Console(cmdline string) io.Writer {
	var ws []io.Writer
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		ws = append(ws, c)
	}
	if !strings.Contains(cmdline, "console=ttyS0") {
		if s, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			ws = append(ws, s)
		}
	}
	if len(ws) == 0 {
		return os.Stderr
	}
	return io.MultiWriter(ws...)
}

// LoadModules loads the module of every device whose modalias matches
// modules.alias, and their dependencies, until no new device appears (a
// bus driver such as virtio_pci brings the devices of the next bus), then
// the extra modules named (e.g. the root filesystem's). A kernel without
// a module directory for its release has everything built in: nothing to
// do. Failures are logged and skipped: a missing NIC driver shows up as
// no NIC, which the caller reports.
func LoadModules(logf Logf, extra ...string) {
	rel := release()
	dir := ""
	for _, d := range []string{"/lib/modules/" + rel, "/usr/lib/modules/" + rel} {
		if _, err := os.Stat(filepath.Join(d, "modules.dep")); err == nil {
			dir = d
			break
		}
	}
	if dir == "" {
		logf("modules: no /lib/modules/%s/modules.dep; using the kernel's built-in drivers", rel)
		return
	}
	aliases, err := readAliases(filepath.Join(dir, "modules.alias"))
	if err != nil {
		logf("modules: %v", err)
	}
	deps, err := readDeps(dir)
	if err != nil {
		logf("modules: %v", err)
		return
	}
	loaded := map[string]error{}
	tried := map[string]bool{}
	probe := func(name string) {
		if tried[name] {
			return
		}
		tried[name] = true
		if _, ok := deps[normModule(name)]; !ok {
			// a name such as crypto-crc32c is an alias of a module
			if ms := MatchAlias(aliases, name); len(ms) > 0 {
				name = ms[0]
			}
		}
		if err := loadModule(deps, normModule(name), loaded, 0); err != nil {
			logf("modules: load %s: %v", name, err)
			return
		}
		logf("modules: loaded %s", name)
	}
	for round := 0; round < 5; round++ {
		before := len(tried)
		for _, ma := range modaliases() {
			for _, m := range MatchAlias(aliases, ma) {
				probe(m)
			}
		}
		if len(tried) == before {
			break
		}
		time.Sleep(200 * time.Millisecond) // let the new bus enumerate
	}
	for _, m := range extra {
		probe(m)
	}
}

func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Alias is one line of modules.alias.
type Alias struct{ Pattern, Module string }

func readAliases(p string) ([]Alias, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseAliases(f)
}

// ParseAliases reads modules.alias ("alias PATTERN MODULE" lines).
func ParseAliases(r io.Reader) ([]Alias, error) {
	var out []Alias
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "alias" {
			out = append(out, Alias{Pattern: f[1], Module: f[2]})
		}
	}
	return out, sc.Err()
}

// MatchAlias lists the modules whose pattern matches the device modalias.
func MatchAlias(aliases []Alias, modalias string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range aliases {
		if ok, err := path.Match(a.Pattern, modalias); err == nil && ok && !seen[a.Module] {
			seen[a.Module] = true
			out = append(out, a.Module)
		}
	}
	return out
}

// modaliases lists every device's modalias under /sys/bus.
func modaliases() []string {
	files, _ := filepath.Glob("/sys/bus/*/devices/*/modalias")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Lease is what DHCP gave one interface.
type Lease struct {
	Interface string
	Addr      net.IPNet
	Router    net.IP
	Server    net.IP
}

// wiredNICs lists the interfaces backed by a device (not lo, not virtual).
func wiredNICs() []string {
	ents, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join("/sys/class/net", e.Name(), "device")); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// BringUpNetwork sets lo and every wired NIC up, asks DHCP on each at
// once, and configures each that got a lease (address, netmask, default
// route). It fails only when no NIC got one before ctx ends.
func BringUpNetwork(ctx context.Context, logf Logf) ([]Lease, error) {
	if err := setUp("lo"); err != nil {
		logf("net: lo: %v", err)
	}
	var nics []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if nics = wiredNICs(); len(nics) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(nics) == 0 {
		return nil, errors.New("no network interface: the initramfs has no driver for this machine's NIC; add its module under lib/modules")
	}
	var (
		mu     sync.Mutex
		leases []Lease
		errs   []error
		wg     sync.WaitGroup
	)
	for _, nic := range nics {
		wg.Go(func() {
			l, err := lease(ctx, nic, logf)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", nic, err))
				return
			}
			leases = append(leases, l)
		})
	}
	wg.Wait()
	if len(leases) == 0 {
		return nil, fmt.Errorf("dhcp: no lease on %s: %w; check the provisioning network and the DHCP server", strings.Join(nics, ", "), errors.Join(errs...))
	}
	sort.Slice(leases, func(i, j int) bool { return leases[i].Interface < leases[j].Interface })
	return leases, nil
}

func lease(ctx context.Context, nic string, logf Logf) (Lease, error) {
	if err := setUp(nic); err != nil {
		return Lease{}, err
	}
	// wait for carrier (a NIC just brought up takes a moment)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if b, err := os.ReadFile("/sys/class/net/" + nic + "/carrier"); err == nil && strings.TrimSpace(string(b)) == "1" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf("net: %s: asking DHCP", nic)
	for attempt := 1; ; attempt++ {
		c, err := nclient4.New(nic, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(2))
		if err != nil {
			return Lease{}, err
		}
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		l, err := c.Request(lctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("rackstrap-agent")))
		cancel()
		c.Close()
		if err == nil {
			ack := l.ACK
			out := Lease{Interface: nic, Addr: net.IPNet{IP: ack.YourIPAddr.To4(), Mask: ack.SubnetMask()}, Server: ack.ServerIdentifier()}
			if out.Addr.Mask == nil {
				out.Addr.Mask = out.Addr.IP.DefaultMask()
			}
			if r := ack.Router(); len(r) > 0 {
				out.Router = r[0]
			}
			if err := configure(out); err != nil {
				return Lease{}, err
			}
			logf("net: %s: %s (server %s, router %v)", nic, out.Addr.String(), out.Server, out.Router)
			return out, nil
		}
		logf("net: %s: dhcp attempt %d: %v", nic, attempt, err)
		select {
		case <-ctx.Done():
			return Lease{}, err
		case <-time.After(time.Second):
		}
	}
}

func ioctlSocket() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
}

func setUp(name string) error {
	fd, err := ioctlSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func configure(l Lease) error {
	fd, err := ioctlSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(l.Interface)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(l.Addr.IP.To4()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("set address of %s: %w", l.Interface, err)
	}
	mask := net.IP(l.Addr.Mask).To4()
	if err := ifr.SetInet4Addr(mask); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("set netmask of %s: %w", l.Interface, err)
	}
	if l.Router != nil && !l.Router.IsUnspecified() {
		if err := addDefaultRoute(l.Interface, l.Router.To4()); err != nil {
			return fmt.Errorf("default route via %s: %w", l.Router, err)
		}
	}
	return nil
}

// addDefaultRoute sends one RTM_NEWROUTE (0.0.0.0/0 via gw dev ifname).
func addDefaultRoute(ifname string, gw net.IP) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := func(typ uint16, data []byte) []byte {
		b := make([]byte, 4, 8)
		binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
		binary.NativeEndian.PutUint16(b[2:], typ)
		return append(b, data...)
	}
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifi.Index))
	rt := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	body := append(rt, attr(unix.RTA_GATEWAY, gw)...)
	body = append(body, attr(unix.RTA_OIF, oif)...)
	msg := make([]byte, 16, 16+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(16+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_NEWROUTE)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	if n >= 20 && binary.NativeEndian.Uint16(buf[4:]) == unix.NLMSG_ERROR {
		if code := int32(binary.NativeEndian.Uint32(buf[16:])); code != 0 {
			return syscall.Errno(-code)
		}
	}
	return nil
}

// Param returns the value of key=value on the kernel command line ("" if absent).
func Param(cmdline, key string) string {
	v := ""
	for _, w := range strings.Fields(cmdline) {
		if w == "--" {
			break
		}
		if k, val, ok := strings.Cut(w, "="); ok && k == key {
			v = strings.Trim(val, `"`)
		}
	}
	return v
}

// FindRoot resolves root= (/dev/NAME, PARTUUID=…) to a device path,
// waiting up to wait for it to appear.
func FindRoot(root string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		dev, err := resolveRoot(root)
		if err == nil {
			return dev, nil
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func resolveRoot(root string) (string, error) {
	switch {
	case strings.HasPrefix(root, "/dev/"):
		if _, err := os.Stat(root); err != nil {
			return "", fmt.Errorf("root=%s: %w", root, err)
		}
		return root, nil
	case strings.HasPrefix(strings.ToUpper(root), "PARTUUID="):
		want := strings.ToLower(root[len("PARTUUID="):])
		disks, _ := os.ReadDir("/sys/block")
		for _, d := range disks {
			n, err := partitionByGUID("/dev/"+d.Name(), want)
			if err != nil || n == 0 {
				continue
			}
			for _, name := range []string{d.Name() + fmt.Sprint(n), d.Name() + "p" + fmt.Sprint(n)} {
				if _, err := os.Stat("/sys/block/" + d.Name() + "/" + name); err == nil {
					return "/dev/" + name, nil
				}
			}
		}
		return "", fmt.Errorf("root=%s: no disk has a GPT partition with that unique GUID (is the disk driver in the initramfs?)", root)
	}
	return "", fmt.Errorf("root=%s: give /dev/NAME or PARTUUID=GUID", root)
}

// partitionByGUID reads the disk's GPT and returns the number (1-based) of
// the partition whose unique GUID is want, or 0.
func partitionByGUID(dev, want string) (int, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return GPTPartitionByGUID(f, 512, want)
}

// GPTPartitionByGUID reads a GPT through r (sector size ss) and returns
// the 1-based number of the partition whose unique GUID is want, or 0.
func GPTPartitionByGUID(r io.ReaderAt, ss int64, want string) (int, error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, ss); err != nil {
		return 0, err
	}
	if string(hdr[:8]) != "EFI PART" {
		return 0, errors.New("no GPT")
	}
	lba := int64(binary.LittleEndian.Uint64(hdr[72:]))
	count := int(binary.LittleEndian.Uint32(hdr[80:]))
	size := int(binary.LittleEndian.Uint32(hdr[84:]))
	if count > 1024 || size < 128 || size > 4096 {
		return 0, errors.New("implausible GPT header")
	}
	buf := make([]byte, count*size)
	if _, err := r.ReadAt(buf, lba*ss); err != nil {
		return 0, err
	}
	for i := 0; i < count; i++ {
		e := buf[i*size : i*size+size]
		if GUIDString(e[16:32]) == want {
			return i + 1, nil
		}
	}
	return 0, nil
}

// GUIDString formats a GPT GUID (mixed endian) as 8-4-4-4-12 lower hex.
func GUIDString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// SwitchRoot mounts dev (fstype, rw unless ro) on /newroot, moves the
// kernel filesystems into it, makes it / and execs init there.
func SwitchRoot(dev, fstype string, readOnly bool, init string) error {
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return err
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, "/newroot", fstype, flags, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on /newroot: %w", dev, fstype, err)
	}
	if _, err := os.Stat("/newroot" + init); err != nil {
		return fmt.Errorf("the root filesystem on %s has no %s: %w", dev, init, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		_ = os.MkdirAll("/newroot"+m, 0o755)
		if err := unix.Mount(m, "/newroot"+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the new root: %w", m, err)
		}
	}
	_ = unix.Unmount("/tmp", unix.MNT_DETACH)
	if err := unix.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec(init, []string{init}, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux"})
}

// Halt ends PID 1's work without ending PID 1 (the kernel panics when init
// exits): the machine stays up until its BMC or the controller acts.
func Halt() {
	for {
		time.Sleep(time.Hour)
	}
}

// module is one line of modules.dep: a module's file and the files of
// the modules it needs, all relative to the module directory's parent.
type module struct {
	path string
	deps []string // module names
}

func normModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

func moduleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return normModule(b)
}

func readDeps(dir string) (map[string]module, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseDeps(f, dir)
}

// ParseDeps reads modules.dep ("kernel/x/a.ko: kernel/y/b.ko ...").
func ParseDeps(r io.Reader, dir string) (map[string]module, error) {
	out := map[string]module{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		m := module{path: filepath.Join(dir, strings.TrimSpace(file))}
		for _, d := range strings.Fields(rest) {
			m.deps = append(m.deps, moduleName(d))
		}
		out[moduleName(file)] = m
	}
	return out, sc.Err()
}

// loadModule loads a module after its dependencies (finit_module; one the
// kernel already has is fine).
func loadModule(deps map[string]module, name string, loaded map[string]error, depth int) error {
	if err, ok := loaded[name]; ok {
		return err
	}
	m, ok := deps[name]
	if !ok {
		return fmt.Errorf("module %s is not in this initramfs (modules.dep)", name)
	}
	if depth > 32 {
		return fmt.Errorf("module %s: dependency loop", name)
	}
	for _, d := range m.deps {
		if err := loadModule(deps, d, loaded, depth+1); err != nil {
			loaded[name] = err
			return fmt.Errorf("%s needs %s: %w", name, d, err)
		}
	}
	f, err := os.Open(m.path)
	if err == nil {
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if errors.Is(err, unix.EEXIST) {
			err = nil
		}
	}
	loaded[name] = err
	return err
}
