//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The drivers the VM needs: virtio PCI transport, NIC and disk, and the
// installed image's ext4 root (crc32c for its checksums).
var wantModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "ext4", "crc32c_generic", "efivarfs"}

// kernelAndModules returns Debian's kernel and a lib/modules tree holding
// only the modules the VM needs, with modules.dep and modules.alias made
// from the modules' own .modinfo (the package ships no modules.dep: depmod
// makes it at install). Everything is cached under /var/cache/rackstrap-test
// (shared with images/build's QEMU tests).
func kernelAndModules(t *testing.T) (vmlinuz, modRoot, release string) {
	t.Helper()
	cache := filepath.Join(cacheDir(), "rackstrap-test")
	if err := os.MkdirAll(cache, 0o755); err != nil {
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
		t.Fatalf("find Debian's kernel package: %v\n%s\nrun apt-get update", err, out)
	}
	release = strings.TrimPrefix(pkg, "linux-image-")
	vmlinuz = filepath.Join(cache, "vmlinuz-"+release)
	modRoot = filepath.Join(cache, "e2e-modules-"+release)
	// the cached tree holds the modules wanted now (MODROOT.wanted)
	wanted := strings.Join(wantModules, " ")
	if b, err := os.ReadFile(modRoot + ".wanted"); err == nil && string(b) == wanted {
		if _, err := os.Stat(filepath.Join(modRoot, "lib/modules", release, "modules.alias")); err == nil {
			if _, err := os.Stat(vmlinuz); err == nil {
				return vmlinuz, modRoot, release
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dl := t.TempDir()
	cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
	cmd.Dir = dl
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download %s: %v\n%s", pkg, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	x := filepath.Join(dl, "x")
	os.MkdirAll(x, 0o755)
	// the kernel, modules.order, and the module directories the wanted
	// modules and their dependencies live in
	script := fmt.Sprintf(`dpkg-deb --fsys-tarfile %q | tar -x -C %q --wildcards './boot/vmlinuz-*' './lib/modules/*/modules.order' \
  './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/net/*.ko' './lib/modules/*/kernel/net/core/*' \
  './lib/modules/*/kernel/drivers/block/*.ko' './lib/modules/*/kernel/fs/*' './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/crypto/*'`, debs[0], x)
	if b, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("extract the kernel package: %v\n%s", err, b)
	}
	src := filepath.Join(x, "lib/modules", release)
	order, err := os.ReadFile(filepath.Join(src, "modules.order"))
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{} // module name → path relative to src
	for _, l := range strings.Fields(string(order)) {
		paths[modName(l)] = l
	}
	type info struct {
		deps    []string
		aliases []string
	}
	infos := map[string]info{}
	var visit func(name string)
	visit = func(name string) {
		if _, ok := infos[name]; ok {
			return
		}
		rel, ok := paths[name]
		if !ok {
			t.Fatalf("module %s is not in %s's modules.order", name, pkg)
		}
		f, err := elf.Open(filepath.Join(src, rel))
		if err != nil {
			t.Fatalf("module %s: %v (not extracted? widen the tar patterns)", name, err)
		}
		sec := f.Section(".modinfo")
		data, err := sec.Data()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var in info
		for _, kv := range bytes.Split(data, []byte{0}) {
			k, v, _ := strings.Cut(string(kv), "=")
			switch k {
			case "depends":
				for _, d := range strings.Split(v, ",") {
					if d != "" {
						in.deps = append(in.deps, modName(d))
					}
				}
			case "alias":
				in.aliases = append(in.aliases, v)
			}
		}
		infos[name] = in
		for _, d := range in.deps {
			visit(d)
		}
	}
	for _, m := range wantModules {
		visit(m)
	}
	tmp := modRoot + fmt.Sprintf(".tmp-%d", time.Now().UnixNano())
	dst := filepath.Join(tmp, "lib/modules", release)
	var dep, alias strings.Builder
	names := make([]string, 0, len(infos))
	for n := range infos {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rel := paths[n]
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
		var deps []string
		for _, d := range infos[n].deps {
			deps = append(deps, paths[d])
		}
		fmt.Fprintf(&dep, "%s: %s\n", rel, strings.Join(deps, " "))
		for _, a := range infos[n].aliases {
			fmt.Fprintf(&alias, "alias %s %s\n", a, n)
		}
	}
	os.WriteFile(filepath.Join(dst, "modules.dep"), []byte(dep.String()), 0o644)
	os.WriteFile(filepath.Join(dst, "modules.alias"), []byte(alias.String()), 0o644)
	os.RemoveAll(modRoot)
	if err := os.Rename(tmp, modRoot); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(modRoot+".wanted", []byte(wanted), 0o644)
	if _, err := os.Stat(vmlinuz); err != nil {
		ks, _ := filepath.Glob(filepath.Join(x, "boot/vmlinuz-*"))
		if len(ks) != 1 {
			t.Fatalf("no kernel in %s: %v", pkg, ks)
		}
		b, err := os.ReadFile(ks[0])
		if err != nil {
			t.Fatal(err)
		}
		part := vmlinuz + fmt.Sprintf(".tmp-%d", time.Now().UnixNano())
		os.WriteFile(part, b, 0o644)
		if err := os.Rename(part, vmlinuz); err != nil {
			t.Fatal(err)
		}
	}
	return vmlinuz, modRoot, release
}

func modName(p string) string {
	b := filepath.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

func cacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return d
	}
	return "/var/cache"
}
