package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/images/spec"
)

const kver = "6.1.0-28-amd64"

// need fails the test when an external checker is missing: make test installs them.
func need(t testing.TB, tools ...string) {
	t.Helper()
	pkgs := map[string]string{"sgdisk": "gdisk", "fsck.vfat": "dosfstools", "e2fsck": "e2fsprogs", "debugfs": "e2fsprogs",
		"mksquashfs": "squashfs-tools", "unsquashfs": "squashfs-tools", "xorriso": "xorriso", "cpio": "cpio", "qemu-img": "qemu-utils", "zstd": "zstd",
		"mdir": "mtools", "mtype": "mtools", "mlabel": "mtools", "mcopy": "mtools", "cloud-init": "cloud-init", "blkid": "util-linux"}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; run 'make test-deps' (Debian package %s)", tool, pkgs[tool])
		}
	}
}

func write(t testing.TB, p string, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func copyHost(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("%v; run 'make test-deps' to install the boot loader packages", err)
	}
	write(t, dst, string(data), 0o644)
}

func tarGz(t testing.TB, p string, entries []tar.Header, bodies map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		h := h
		body := bodies[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		h.ModTime = time.Unix(1600000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if body != "" {
			io.WriteString(tw, body)
		}
	}
	tw.Close()
	zw.Close()
	write(t, p, buf.String(), 0o644)
}

// fixture lays out a tiny image source tree and returns the spec's directory:
// rootfs/ (merged /usr, boot loaders copied from the host's Debian packages,
// a fake kernel), a tarball layer with a whiteout, a GPU driver built for
// kver, a hook script and an agent binary stand-in.
func fixture(t testing.TB, outputs string) string {
	t.Helper()
	dir := t.TempDir()
	r := filepath.Join(dir, "rootfs")
	write(t, filepath.Join(r, "etc/os-release"), "ID=debian\nVERSION_ID=12\n", 0o644)
	write(t, filepath.Join(r, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	write(t, filepath.Join(r, "etc/group"), "root:x:0:\nsudo:x:27:\n", 0o644)
	write(t, filepath.Join(r, "usr/bin/tool"), "#!/bin/sh\necho tool\n", 0o755)
	write(t, filepath.Join(r, "usr/bin/su"), "setuid stand-in\n", 0o755)
	if err := os.Chmod(filepath.Join(r, "usr/bin/su"), 0o4755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(r, "usr/share/doc/a file with spaces.txt"), "spaces\n", 0o644)
	write(t, filepath.Join(r, "usr/share/big.bin"), strings.Repeat("0123456789abcdef", 64<<10), 0o644) // 1 MiB
	write(t, filepath.Join(r, "var/lib/old/remove-me"), "gone after the layer\n", 0o644)
	write(t, filepath.Join(r, "boot/vmlinuz-"+kver), "fake kernel "+strings.Repeat("K", 4096), 0o644)
	write(t, filepath.Join(r, "usr/lib/modules/"+kver+"/modules.dep"), "", 0o644)
	copyHost(t, "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", filepath.Join(r, "usr/lib/systemd/boot/efi/systemd-bootx64.efi"))
	copyHost(t, "/usr/lib/ISOLINUX/isolinux.bin", filepath.Join(r, "usr/lib/ISOLINUX/isolinux.bin"))
	copyHost(t, "/usr/lib/syslinux/modules/bios/ldlinux.c32", filepath.Join(r, "usr/lib/syslinux/modules/bios/ldlinux.c32"))
	if err := os.Symlink("usr/lib", filepath.Join(r, "lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(r, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(r, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(r, "tmp"), 0o1777|fs.ModeSticky)
	if err := os.Lchown(filepath.Join(r, "usr/share/doc"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	tarGz(t, filepath.Join(dir, "layer.tar.gz"), []tar.Header{
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/site.conf", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 0, Gid: 0},
		{Name: "./var/lib/old/.wh.remove-me", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "./usr/local/bin/site-tool", Typeflag: tar.TypeReg, Mode: 0o755},
		{Name: "./usr/local/bin/site-tool-link", Typeflag: tar.TypeLink, Linkname: "./usr/local/bin/site-tool"},
	}, map[string]string{"./etc/site.conf": "site=1\n", "./usr/local/bin/site-tool": "#!/bin/sh\necho site\n"})
	write(t, filepath.Join(dir, "nvidia", "lib/modules", kver, "updates/dkms/nvidia.ko"),
		"\x7fELF....modinfo\x00license=NVIDIA\x00vermagic="+kver+" SMP preempt mod_unload modversions \x00name=nvidia\x00", 0o644)
	write(t, filepath.Join(dir, "hooks/20-check.sh"), "#!/bin/sh\necho checked\n", 0o755)
	write(t, filepath.Join(dir, "bin/rackstrap-agent"), "agent stand-in\n", 0o755)
	write(t, filepath.Join(dir, "debs/a_1.0_amd64.deb"), "not really a deb\n", 0o644)
	doc := fmt.Sprintf(`api_version: rackstrap.io/image/v1
name: tiny
version: "1.0"
source_date_epoch: 1700000000
base:
  dir: rootfs
layers:
  - name: site
    tarball: layer.tar.gz
  - name: motd
    files:
      - {path: /etc/motd, content: "hello\n", mode: "0644"}
      - {path: /usr/local/bin/motd-link, symlink: ../../../etc/motd}
  - name: debs
    packages: {dir: debs}
kernel:
  version: %[1]s
  cmdline: console=ttyS0
gpu_driver:
  vendor: nvidia
  version: 550.127.05
  kernel_version: %[1]s
  dir: nvidia
users:
  - name: ops
    uid: 1000
    groups: [sudo]
    ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGcWy2o7pq9fWcXk7R0m2mSbk3Z1wGq0y0ulcV0Hk2vQ ops@test"]
first_boot:
  - {name: 10-hello, run: "echo hello"}
  - {name: 20-check, script: hooks/20-check.sh}
agent: bin/rackstrap-agent
outputs:
%s`, kver, outputs)
	write(t, filepath.Join(dir, "image.yaml"), doc, 0o644)
	return dir
}

const allOutputs = `  disk: {size: 136MiB, esp_size: 40MiB, qcow2: true}
  squashfs: {compression: gzip}
  netboot: {compression: zstd}
  iso: {}
`

func loadSpec(t testing.TB, dir string) *spec.Spec {
	t.Helper()
	s, err := spec.Load(filepath.Join(dir, "image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t testing.TB, dir, out string) *Result {
	t.Helper()
	return buildWith(t, dir, Options{OutDir: out})
}

func buildWith(t testing.TB, dir string, opts Options) *Result {
	t.Helper()
	res, err := Build(context.Background(), loadSpec(t, dir), opts)
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	return res
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// listing is a byte-for-byte description of a tree on disk: one line per
// entry with type, permissions, owner, size and content hash or link target.
func listing(t testing.TB, root string, skip func(rel string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || (skip != nil && skip(rel)) {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", rel, fi.Mode().String(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += fmt.Sprintf(" %d %s", len(data), hex.EncodeToString(sum[:8]))
		case fi.Mode()&fs.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			line += " -> " + tgt
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
