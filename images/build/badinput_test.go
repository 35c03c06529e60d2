package build

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/images/spec"
)

// TestBadInput: each broken input gets an error naming the problem and the
// fix, and leaves no output and no manifest behind.
func TestBadInput(t *testing.T) {
	t.Parallel()
	need(t, "mksquashfs")
	tests := map[string]struct {
		outputs string
		mutate  func(t *testing.T, dir string)
		want    []string
	}{
		"missing base dir": {
			mutate: func(t *testing.T, dir string) { os.RemoveAll(filepath.Join(dir, "rootfs")) },
			want:   []string{"base.dir: rootfs does not exist", "fix the path"},
		},
		"symlink loop": {
			mutate: func(t *testing.T, dir string) {
				r := filepath.Join(dir, "rootfs/boot")
				os.Remove(filepath.Join(r, "vmlinuz-"+kver))
				os.Symlink("loop-b", filepath.Join(r, "vmlinuz-"+kver))
				os.Symlink("vmlinuz-"+kver, filepath.Join(r, "loop-b"))
			},
			want: []string{"kernel.image", "too many levels of symbolic links (a symlink loop)", "fix the link at /boot/"},
		},
		"tar path escapes": {
			mutate: func(t *testing.T, dir string) {
				tarGz(t, filepath.Join(dir, "layer.tar.gz"), []tar.Header{{Name: "../../etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}}, map[string]string{"../../etc/evil": "x"})
			},
			want: []string{`entry "../../etc/evil" escapes the tree with '..'`, "rebuild the tarball"},
		},
		"truncated tarball": {
			mutate: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "layer.tar.gz")
				fi, _ := os.Stat(p)
				os.Truncate(p, fi.Size()/2)
			},
			want: []string{"layer site: tarball", "layer.tar.gz", "re-create it"},
		},
		"tree larger than the disk": {
			outputs: "  disk: {size: 60MiB, esp_size: 40MiB}\n",
			mutate: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "rootfs/usr/share/huge.bin"), strings.Repeat("x", 24<<20), 0o644)
			},
			want: []string{"the root tree needs about", "raise outputs.disk.size to at least"},
		},
		"driver built for another kernel": {
			mutate: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "nvidia", "lib/modules", kver, "updates/dkms/nvidia.ko"),
					"\x00vermagic=6.1.0-27-amd64 SMP preempt mod_unload \x00", 0o644)
			},
			want: []string{"gpu_driver: /usr/lib/modules/" + kver + "/updates/dkms/nvidia.ko was built for kernel 6.1.0-27-amd64", "rebuild nvidia 550.127.05 for " + kver},
		},
		"driver without modules": {
			mutate: func(t *testing.T, dir string) {
				os.RemoveAll(filepath.Join(dir, "nvidia"))
				write(t, filepath.Join(dir, "nvidia/README"), "no modules\n", 0o644)
			},
			want: []string{"gpu_driver: nvidia 550.127.05 holds no kernel modules (*.ko)"},
		},
		"no boot loader in the image": {
			outputs: "  disk: {size: 100MiB, esp_size: 40MiB}\n",
			mutate: func(t *testing.T, dir string) {
				os.RemoveAll(filepath.Join(dir, "rootfs/usr/lib/systemd"))
			},
			want: []string{"boot.efi: /usr/lib/systemd/boot/efi/systemd-bootx64.efi is not in the image", "install systemd-boot-efi"},
		},
		"grub loader but no GRUB in the image": {
			outputs: "  disk: {size: 100MiB, esp_size: 40MiB}\nboot: {loader: grub}\n",
			mutate:  func(t *testing.T, dir string) {},
			want:    []string{"boot.efi: /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed is not in the image", "install grub-efi-amd64-signed"},
		},
		"missing hook script": {
			mutate: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "hooks/20-check.sh")) },
			want:   []string{"first_boot[1].script: hooks/20-check.sh", "relative paths are relative to the spec file"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			outputs := tc.outputs
			if outputs == "" {
				outputs = "  squashfs: {compression: gzip}\n  netboot: {compression: gzip}\n"
			}
			dir := fixture(t, outputs)
			tc.mutate(t, dir)
			out := filepath.Join(dir, "out")
			_, err := Build(context.Background(), loadSpec(t, dir), Options{OutDir: out})
			if err == nil {
				t.Fatalf("Build() = nil error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Build() error = %q\nwant it to contain %q", err, w)
				}
			}
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				t.Errorf("failed build left %s in the output directory", e.Name())
			}
		})
	}
}

func TestUnknownKeyStopsBeforeBuilding(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "  netboot: {}\n")
	p := filepath.Join(dir, "image.yaml")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(data), "  cmdline: console=ttyS0", "  cmdlin: console=ttyS0", 1)), 0o644)
	_, err := spec.Load(p)
	if err == nil || !strings.Contains(err.Error(), `unknown key "cmdlin"; did you mean "cmdline"?`) || !strings.Contains(err.Error(), "image.yaml:") {
		t.Fatalf("Load() = %v", err)
	}
}
