package build

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bootKernel returns Debian's amd64 kernel, shared with the PXE tests in
// /var/cache/rackstrap-test (or $XDG_CACHE_HOME) and extracted from the
// linux-image package with apt-get once.
func bootKernel(t *testing.T) (path, release string) {
	t.Helper()
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		dir = "/var/cache"
	}
	dir = filepath.Join(dir, "rackstrap-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	pkg := ""
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if err != nil || pkg == "" {
		t.Fatalf("find the kernel package: %v\n%s\nrun apt-get update", err, out)
	}
	release = strings.TrimPrefix(pkg, "linux-image-")
	k := filepath.Join(dir, "vmlinuz-"+release)
	if _, err := os.Stat(k); err == nil {
		return k, release
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
	part := fmt.Sprintf("%s.tmp-%d", k, time.Now().UnixNano())
	script := fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar -xO --wildcards './boot/vmlinuz-*' > %q", debs[0], part)
	if b, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("extract the kernel: %v\n%s", err, b)
	}
	if err := os.Rename(part, k); err != nil {
		t.Fatal(err)
	}
	return k, release
}

// rootModules are what Debian's kernel needs to mount the disk's ext4 root
// over virtio, in load order (paths under lib/modules/RELEASE).
var rootModules = []string{
	"kernel/lib/crc16.ko", "kernel/crypto/crc32c_generic.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko",
	"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko",
}

// bootModules extracts rootModules from Debian's kernel package once, into
// the same cache as bootKernel, and returns the directory holding them.
func bootModules(t *testing.T, release string) string {
	t.Helper()
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		dir = "/var/cache"
	}
	dir = filepath.Join(dir, "rackstrap-test", "images-root-modules-"+release)
	have := true
	for _, m := range rootModules {
		if _, err := os.Stat(filepath.Join(dir, m)); err != nil {
			have = false
		}
	}
	if have {
		return dir
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dl := exec.CommandContext(ctx, "apt-get", "download", "linux-image-"+release)
	dl.Dir = tmp
	if b, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download linux-image-%s: %v\n%s", release, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download left %v", debs)
	}
	x := filepath.Join(tmp, "x")
	os.MkdirAll(x, 0o755)
	args := []string{"-x", "-C", x}
	for _, m := range rootModules {
		args = append(args, "./lib/modules/"+release+"/"+m)
	}
	tarCmd := exec.CommandContext(ctx, "tar", args...)
	deb := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", debs[0])
	pipe, err := deb.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tarCmd.Stdin = pipe
	if err := deb.Start(); err != nil {
		t.Fatal(err)
	}
	out, terr := tarCmd.CombinedOutput()
	derr := deb.Wait()
	if terr != nil || derr != nil {
		t.Fatalf("extract modules: %v %v\n%s", terr, derr, out)
	}
	part := fmt.Sprintf("%s.tmp-%d", dir, time.Now().UnixNano())
	if err := os.Rename(filepath.Join(x, "lib/modules", release), part); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(part, dir); err != nil && !os.IsExist(err) {
		os.RemoveAll(part)
		if _, serr := os.Stat(filepath.Join(dir, rootModules[0])); serr != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// bootInit loads the virtio and ext4 modules, mounts the disk's root
// partition read-only and prints a file from it with the command line.
const bootInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in MODULES; do /bin/busybox insmod /modules/$m || echo "insmod $m failed" > /dev/console; done
i=0
while [ ! -b /dev/vda2 ] && [ $i -lt 30 ]; do /bin/busybox sleep 1; i=$((i+1)); done
/bin/busybox mkdir -p /mnt
ROOT=not-mounted
if /bin/busybox mount -t ext4 -o ro /dev/vda2 /mnt; then ROOT="$(/bin/busybox cat /mnt/etc/rackstrap-root-marker)"; fi
echo "RACKSTRAP-DISK-BOOT-OK $(/bin/busybox cat /proc/cmdline) ROOT=$ROOT" > /dev/console
/bin/busybox poweroff -f
`

// TestQEMUBootsRawDisk boots the built raw disk under OVMF (TCG), once per
// EFI loader: the firmware finds our ESP and runs systemd-boot, or shim and
// Debian's signed GRUB, which read our configuration and start the kernel
// and initrd from the ESP; the initrd prints a marker with the command line
// on the serial console.
func TestQEMUBootsRawDisk(t *testing.T) {
	t.Parallel()
	need(t, "cpio", "fsck.vfat", "mdir", "sgdisk")
	for _, tool := range []string{"qemu-system-x86_64", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; run 'make test-deps' (qemu-system-x86, busybox-static)", tool)
		}
	}
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v; run 'make test-deps' (ovmf)", err)
		}
	}
	kpath, release := bootKernel(t)
	mods := bootModules(t, release)
	cases := map[string]struct {
		boot    string
		loaders map[string]string // host file -> path in the image
		esp     []string          // mdir -/ listing must hold these
	}{
		"systemd-boot": {
			loaders: map[string]string{"/usr/lib/systemd/boot/efi/systemd-bootx64.efi": "usr/lib/systemd/boot/efi/systemd-bootx64.efi"},
			esp:     []string{"BOOTX64  EFI", "rackstrap.conf", "vmlinuz"},
		},
		"grub behind shim": {
			boot: "boot: {loader: grub}\n",
			loaders: map[string]string{
				"/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed": "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
				"/usr/lib/shim/shimx64.efi.signed":                   "usr/lib/shim/shimx64.efi.signed",
			},
			esp: []string{"BOOTX64  EFI", " grubx64.efi", "::/EFI/debian", " grub.cfg", "vmlinuz"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for host := range tc.loaders {
				if _, err := os.Stat(host); err != nil {
					t.Fatalf("%v; run 'make test-deps' (systemd-boot-efi, grub-efi-amd64-signed, shim-signed)", err)
				}
			}
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			r := filepath.Join(dir, "rootfs")
			copyHost(t, kpath, filepath.Join(r, "boot/vmlinuz-"+release))
			for host, in := range tc.loaders {
				copyHost(t, host, filepath.Join(r, in))
			}
			write(t, filepath.Join(r, "etc/os-release"), "ID=test\n", 0o644)
			write(t, filepath.Join(r, "etc/rackstrap-root-marker"), "ext4-root-read-by-linux\n", 0o644)

			// the initrd is made by cpio(1) and gzip from busybox-static, not by us
			ird := filepath.Join(dir, "ird")
			busybox, _ := exec.LookPath("busybox")
			copyHost(t, busybox, filepath.Join(ird, "bin/busybox"))
			os.Chmod(filepath.Join(ird, "bin/busybox"), 0o755)
			os.MkdirAll(filepath.Join(ird, "proc"), 0o755)
			os.MkdirAll(filepath.Join(ird, "dev"), 0o755)
			var names []string
			for _, m := range rootModules {
				copyHost(t, filepath.Join(mods, m), filepath.Join(ird, "modules", filepath.Base(m)))
				names = append(names, filepath.Base(m))
			}
			write(t, filepath.Join(ird, "init"), strings.Replace(bootInit, "MODULES", strings.Join(names, " "), 1), 0o755)
			mk := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1 > ../initrd.gz")
			mk.Dir = ird
			if b, err := mk.CombinedOutput(); err != nil {
				t.Fatalf("make initrd: %v\n%s", err, b)
			}
			write(t, filepath.Join(dir, "image.yaml"), fmt.Sprintf(`api_version: rackstrap.io/image/v1
name: bootme
version: "1"
source_date_epoch: 1700000000
base: {dir: rootfs}
kernel:
  version: %s
  initrd: initrd.gz
  cmdline: console=ttyS0 panic=-1 rackstrap.test=disk
%soutputs:
  disk: {size: 80MiB, esp_size: 40MiB}
`, release, tc.boot), 0o644)
			res := build(t, dir, filepath.Join(dir, "out"))
			raw := res.Files["bootme.raw"]

			esp := filepath.Join(dir, "esp.img")
			extractPartition(t, raw, 1, esp)
			run(t, "fsck.vfat", "-n", esp)
			mdir := run(t, "mdir", "-i", esp, "-/", "::")
			for _, want := range tc.esp {
				if !strings.Contains(mdir, want) {
					t.Errorf("ESP listing lacks %q:\n%s", want, mdir)
				}
			}

			vars := filepath.Join(dir, "vars.fd")
			copyHost(t, "/usr/share/OVMF/OVMF_VARS.fd", vars)
			want := "root=PARTUUID=" + uuidString(derivedUUID(res.Manifest.SpecDigest, "gpt-root"))
			line := bootQEMU(t, "RACKSTRAP-DISK-BOOT-OK", "-machine", "q35,accel=tcg",
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
				"-drive", "if=pflash,format=raw,unit=1,file="+vars,
				"-drive", "if=virtio,format=raw,file="+raw)
			if !strings.Contains(line, want) || !strings.Contains(line, "rackstrap.test=disk") {
				t.Fatalf("booted with the wrong command line: %s\nwant %s", line, want)
			}
			// Linux mounted the ext4 root images/ext4 wrote and read a file
			if !strings.Contains(line, "ROOT=ext4-root-read-by-linux") {
				t.Fatalf("the kernel did not read the ext4 root: %s", line)
			}
		})
	}
}

// bootQEMU runs QEMU (TCG only: some hosts have a /dev/kvm that opens but
// never runs a guest) with a serial console and returns the console line
// holding marker, failing after a deadline.
func bootQEMU(t *testing.T, marker string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	base := []string{"-m", "512", "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", append(base, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var console strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		console.WriteString(line + "\n")
		if strings.Contains(line, marker) {
			return line
		}
	}
	io.Copy(io.Discard, stdout)
	t.Fatalf("no %s on the console within the deadline (%v); console:\n%s", marker, ctx.Err(), tail(console.String(), 3000))
	return ""
}

const isoInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "RACKSTRAP-ISO-BOOT-OK $(/bin/busybox cat /proc/cmdline)" > /dev/console
/bin/busybox poweroff -f
`

// TestQEMUBootsISO boots the ISO twice: SeaBIOS through El Torito and
// isolinux, and OVMF through the El Torito EFI image and systemd-boot. Both
// load the kernel and our zstd newc initramfs, whose /init prints a marker:
// the netboot initramfs is proven too.
func TestQEMUBootsISO(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"qemu-system-x86_64", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; run 'make test-deps' (qemu-system-x86, busybox-static)", tool)
		}
	}
	kpath, release := bootKernel(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	r := filepath.Join(dir, "rootfs")
	copyHost(t, kpath, filepath.Join(r, "boot/vmlinuz-"+release))
	busybox, _ := exec.LookPath("busybox")
	copyHost(t, busybox, filepath.Join(r, "bin/busybox"))
	os.Chmod(filepath.Join(r, "bin/busybox"), 0o755)
	os.MkdirAll(filepath.Join(r, "proc"), 0o755)
	os.MkdirAll(filepath.Join(r, "dev"), 0o755)
	write(t, filepath.Join(r, "init"), isoInit, 0o755)
	copyHost(t, "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", filepath.Join(r, "usr/lib/systemd/boot/efi/systemd-bootx64.efi"))
	copyHost(t, "/usr/lib/ISOLINUX/isolinux.bin", filepath.Join(r, "usr/lib/ISOLINUX/isolinux.bin"))
	copyHost(t, "/usr/lib/syslinux/modules/bios/ldlinux.c32", filepath.Join(r, "usr/lib/syslinux/modules/bios/ldlinux.c32"))
	write(t, filepath.Join(dir, "image.yaml"), fmt.Sprintf(`api_version: rackstrap.io/image/v1
name: isome
version: "1"
source_date_epoch: 1700000000
base: {dir: rootfs}
kernel: {version: %s, cmdline: console=ttyS0 panic=-1 rackstrap.test=iso}
outputs:
  iso: {}
`, release), 0o644)
	iso := build(t, dir, filepath.Join(dir, "out")).Files["isome.iso"]
	t.Run("bios", func(t *testing.T) {
		t.Parallel()
		line := bootQEMU(t, "RACKSTRAP-ISO-BOOT-OK", "-machine", "accel=tcg", "-cdrom", iso)
		if !strings.Contains(line, "rackstrap.test=iso") {
			t.Errorf("console: %s", line)
		}
	})
	t.Run("efi", func(t *testing.T) {
		t.Parallel()
		vars := filepath.Join(t.TempDir(), "vars.fd")
		copyHost(t, "/usr/share/OVMF/OVMF_VARS.fd", vars)
		line := bootQEMU(t, "RACKSTRAP-ISO-BOOT-OK", "-machine", "q35,accel=tcg",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			"-drive", "file="+iso+",media=cdrom,if=none,id=cd", "-device", "ide-cd,drive=cd")
		if !strings.Contains(line, "rackstrap.test=iso") {
			t.Errorf("console: %s", line)
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestKernelReleaseCheck reads the release out of a real bzImage and
// refuses a spec that names another.
func TestKernelReleaseCheck(t *testing.T) {
	t.Parallel()
	kpath, release := bootKernel(t)
	dir := fixture(t, "  netboot: {compression: gzip}\n")
	copyHost(t, kpath, filepath.Join(dir, "rootfs/boot/vmlinuz-"+kver))
	_, err := Build(context.Background(), loadSpec(t, dir), Options{OutDir: filepath.Join(dir, "out")})
	want := fmt.Sprintf("kernel.image is kernel %s but kernel.version says %s", release, kver)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Build() = %v, want %q", err, want)
	}
}
