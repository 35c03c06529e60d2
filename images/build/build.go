// Package build turns an image spec into reproducible outputs: a GPT raw disk
// (FAT32 ESP + ext4 root, via go-diskfs, and optionally a FAT32 CIDATA
// partition for cloud-init's NoCloud seed), optionally qcow2 (qemu-img), a
// squashfs root (mksquashfs), a netboot kernel + newc initramfs (u-root
// cpio, zstd or gzip) and an El Torito BIOS+EFI ISO (go-diskfs). The same
// spec and inputs give byte-identical outputs: every timestamp is
// SOURCE_DATE_EPOCH, entries are sorted, and every UUID derives from the
// spec digest.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/images/rootfs"
	"github.com/rackstrap/rackstrap/images/seed"
	"github.com/rackstrap/rackstrap/images/spec"
	"github.com/rackstrap/rackstrap/images/store"
)

// Options control one build.
type Options struct {
	// OutDir receives the outputs and manifest.json. Outputs are written
	// under a temporary name and renamed only when complete.
	OutDir string
	// ScratchDir holds temporary files (default: a new dir under OutDir).
	ScratchDir string
	Logger     *slog.Logger
	// SourceDateEpoch overrides the spec's and the environment's.
	SourceDateEpoch *int64
	// Tools names external programs (mksquashfs, qemu-img) when not on PATH.
	Tools map[string]string
	// CIDATASize, when set, adds to the raw disk a FAT32 partition
	// labelled CIDATA (GPT partition 3, between the ESP and the root, so
	// the root stays last and can grow) for cloud-init's NoCloud seed,
	// which rackstrap-agent writes per node after a verified write
	// (images/seed). At least 33MiB, a whole number of MiB. Zero takes the
	// spec's outputs.disk.cidata_size (docs/decisions/0017-nocloud-seed.md).
	CIDATASize spec.Size
}

// minCIDATASize is FAT32's smallest partition (seed.MinPartitionSize).
const minCIDATASize = seed.MinPartitionSize

func (o Options) checkCIDATA(s *spec.Spec) error {
	c := int64(o.CIDATASize)
	switch {
	case c == 0:
		return nil
	case c < minCIDATASize || c%(1<<20) != 0:
		return fmt.Errorf("build: CIDATA partition size %s: use a whole number of MiB, at least %s (FAT32), e.g. 64MiB", o.CIDATASize, spec.Size(minCIDATASize))
	case s.Outputs.Disk == nil:
		return errors.New("build: a CIDATA partition was asked for but the spec builds no disk output; add outputs.disk")
	}
	return nil
}

// Result is what a build produced.
type Result struct {
	Manifest *store.Manifest
	// Files maps artifact names to their paths in OutDir.
	Files map[string]string
	// Skipped reports what the sources held that the image does not carry.
	Skipped rootfs.Skipped
}

type builder struct {
	spec       *spec.Spec
	opts       Options
	log        *slog.Logger
	scratch    string
	epoch      time.Time
	specDigest string
	inputs     []Input
	pending    []pendingDigest
	content    contentDigests
	skipped    rootfs.Skipped
}

// Build builds every output the spec asks for. On error no output is left
// under its final name and no manifest is written.
func Build(ctx context.Context, s *spec.Spec, opts Options) (*Result, error) {
	if s == nil {
		return nil, errors.New("build: nil spec")
	}
	d := s.WithDefaults()
	if opts.CIDATASize == 0 && s.Outputs.Disk != nil {
		opts.CIDATASize = s.Outputs.Disk.CIDATASize
	}
	b := &builder{spec: &d, opts: opts, log: opts.Logger, specDigest: s.Digest()}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := opts.checkCIDATA(s); err != nil {
		return nil, err
	}
	epoch, err := sourceDateEpoch(s, opts)
	if err != nil {
		return nil, err
	}
	b.epoch = time.Unix(epoch, 0).UTC()
	if opts.OutDir == "" {
		return nil, errors.New("build: no output directory; pass --out DIR")
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	b.scratch = opts.ScratchDir
	if b.scratch == "" {
		if b.scratch, err = os.MkdirTemp(opts.OutDir, ".scratch-"); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		defer os.RemoveAll(b.scratch)
	}
	// a stale manifest must not vouch for the outputs being replaced
	_ = os.Remove(filepath.Join(opts.OutDir, "manifest.json"))
	_ = os.Remove(filepath.Join(opts.OutDir, "manifest.json.sig"))

	start := time.Now()
	a, err := b.assemble()
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	st := a.tree.Stats()
	b.log.Info("root assembled", "files", st.Files, "dirs", st.Dirs, "symlinks", st.Symlinks, "bytes", st.Bytes, "skipped_devices", a.skipped.Devices, "took", time.Since(start))

	m := &store.Manifest{
		SchemaVersion: store.ManifestVersion,
		Name:          d.Name,
		Version:       d.Version,
		SpecDigest:    b.specDigest,
		BuildTime:     b.epoch.Format(time.RFC3339),
		Builder:       "rackstrap",
		Inputs:        a.inputs,
	}
	if d.Kernel != nil {
		m.Kernel = d.Kernel.Version
	}
	if g := d.GPUDriver; g != nil {
		m.GPUDriver = g.Vendor + " " + g.Version
	}
	res := &Result{Manifest: m, Files: map[string]string{}, Skipped: a.skipped}
	var written []string
	fail := func(err error) (*Result, error) {
		for _, p := range written {
			_ = os.Remove(p)
		}
		return nil, fmt.Errorf("build %s: %w", s.Name, err)
	}
	// known holds digests computed while writing, by temporary name
	known := map[string]string{}
	// produce writes one output via a temporary name, then renames it.
	produce := func(name, format string, write func(tmp string) error) error {
		final := filepath.Join(opts.OutDir, name)
		tmp := filepath.Join(opts.OutDir, "."+name+".partial")
		_ = os.Remove(final)
		t0 := time.Now()
		if err := write(tmp); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("%s: %w", format, err)
		}
		if err := ctx.Err(); err != nil {
			_ = os.Remove(tmp)
			return err
		}
		size, digest, err := int64(0), known[tmp], error(nil)
		if digest != "" {
			var fi os.FileInfo
			if fi, err = os.Stat(tmp); err == nil {
				size = fi.Size()
			}
		} else {
			size, digest, err = hashFile(tmp)
		}
		if err != nil {
			_ = os.Remove(tmp)
			return err
		}
		// on disk before it has its final name: a crash must not leave a
		// named output with missing blocks
		if err := syncFile(tmp); err != nil {
			_ = os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		written = append(written, final)
		res.Files[name] = final
		m.Artifacts = append(m.Artifacts, store.Artifact{Name: name, Format: format, Size: size, Digest: digest})
		b.log.Info("output written", "name", name, "format", format, "bytes", size, "digest", digest, "took", time.Since(t0))
		return nil
	}
	o := d.Outputs
	var initramfs string // path of the netboot initramfs, reused by the ISO
	if o.Netboot != nil || o.ISO != nil {
		comp := "zstd"
		if o.Netboot != nil {
			comp = o.Netboot.Compression
		}
		initramfs = filepath.Join(b.scratch, "initramfs")
		if err := writeInitramfs(ctx, initramfs, a.tree, comp, b.epoch); err != nil {
			return fail(fmt.Errorf("netboot: %w", err))
		}
	}
	if o.Disk != nil {
		esp, err := b.espFiles(a, "root=PARTUUID="+uuidString(derivedUUID(b.specDigest, "gpt-root")))
		if err != nil {
			return fail(err)
		}
		p := diskParams{
			tree: a.tree, size: int64(o.Disk.Size), espSize: int64(o.Disk.ESPSize), cidataSize: int64(opts.CIDATASize),
			cidataGUID: derivedUUID(b.specDigest, "gpt-cidata"),
			diskGUID:   derivedUUID(b.specDigest, "gpt-disk"), espGUID: derivedUUID(b.specDigest, "gpt-esp"),
			rootGUID: derivedUUID(b.specDigest, "gpt-root"), fsUUID: derivedUUID(b.specDigest, "ext4-root"),
			specDigest: b.specDigest, label: o.Disk.RootLabel, esp: esp, epoch: b.epoch, content: &b.content,
		}
		if err := produce(d.Name+".raw", "raw", func(tmp string) error {
			digest, err := writeDisk(ctx, tmp, p)
			if err != nil {
				return err
			}
			known[tmp] = digest // holes read back as the zeros it hashed
			if !*o.Disk.Sparse {
				return fillHoles(tmp)
			}
			return nil
		}); err != nil {
			return fail(err)
		}
		if o.Disk.QCOW2 {
			raw := filepath.Join(opts.OutDir, d.Name+".raw")
			if err := produce(d.Name+".qcow2", "qcow2", func(tmp string) error {
				return b.run(ctx, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, tmp)
			}); err != nil {
				return fail(err)
			}
		}
	}
	if o.Squashfs != nil {
		if err := produce(d.Name+".squashfs", "squashfs", func(tmp string) error {
			return b.writeSquashfs(ctx, tmp, a.tree, o.Squashfs)
		}); err != nil {
			return fail(err)
		}
	}
	if o.Netboot != nil {
		if err := produce(d.Name+".vmlinuz", "kernel", func(tmp string) error { return copyEntry(a.kernel, tmp) }); err != nil {
			return fail(err)
		}
		ext := map[string]string{"zstd": ".cpio.zst", "gzip": ".cpio.gz", "none": ".cpio"}[o.Netboot.Compression]
		if err := produce(d.Name+".initramfs"+ext, "initramfs", func(tmp string) error {
			return copyEntry(&rootfs.Entry{Src: initramfs}, tmp)
		}); err != nil {
			return fail(err)
		}
	}
	if o.ISO != nil {
		if err := produce(d.Name+".iso", "iso", func(tmp string) error {
			return b.writeISO(ctx, tmp, a, initramfs, o.ISO)
		}); err != nil {
			return fail(err)
		}
	}
	// directory inputs last: the writers recorded the content they hashed
	if err := b.digestInputs(ctx, a.inputs); err != nil {
		return fail(err)
	}
	mb, err := m.Marshal()
	if err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(filepath.Join(opts.OutDir, "manifest.json"), mb); err != nil {
		return fail(err)
	}
	b.log.Info("build done", "image", d.Name+":"+d.Version, "artifacts", len(m.Artifacts), "took", time.Since(start))
	return res, nil
}

func sourceDateEpoch(s *spec.Spec, opts Options) (int64, error) {
	switch {
	case opts.SourceDateEpoch != nil:
		return *opts.SourceDateEpoch, nil
	case s.SourceDateEpoch != nil:
		return *s.SourceDateEpoch, nil
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not seconds since 1970; unset it or fix it", v)
		}
		return n, nil
	}
	return 0, nil
}

func (b *builder) tool(name string) string {
	if p := b.opts.Tools[name]; p != "" {
		return p
	}
	return name
}

var toolPackages = map[string]string{"mksquashfs": "squashfs-tools", "qemu-img": "qemu-utils"}

// run executes an external tool with a deadline from ctx; its output goes
// into the error when it fails.
func (b *builder) run(ctx context.Context, name string, args ...string) error {
	path, err := exec.LookPath(b.tool(name))
	if err != nil {
		return fmt.Errorf("%s is not installed; install the Debian package %s", name, toolPackages[name])
	}
	cmd := exec.CommandContext(ctx, path, args...)
	// tools get times from their flags; mksquashfs refuses both at once
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return nil
}

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return 0, "", err
	}
	return n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func copyEntry(e *rootfs.Entry, dst string) error {
	r, err := e.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".partial"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return syncFile(filepath.Dir(p)) // the renames themselves
}

// syncFile flushes a file (or a directory's entries) to stable storage.
func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

// fillHoles rewrites a sparse file so every block is allocated.
func fillHoles(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	var off int64
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if _, werr := f.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// espFiles lists the EFI System Partition: the boot loader as the
// removable-media path EFI/BOOT/BOOTX64.EFI with its configuration, the
// kernel and the initrd.
func (b *builder) espFiles(a *assembly, root string) ([]espFile, error) {
	s := b.spec
	cmdline := strings.TrimSpace(strings.Join([]string{root, "rw", s.Kernel.Cmdline, s.Boot.Cmdline}, " "))
	var files []espFile
	var err error
	if s.Boot.Loader == "grub" {
		files, err = b.grubFiles(a, cmdline)
	} else {
		files, err = b.systemdBootFiles(a, cmdline)
	}
	if err != nil {
		return nil, err
	}
	files = append(files, espFile{path: "vmlinuz", src: a.kernel})
	if a.initrd != nil {
		files = append(files, espFile{path: "initrd.img", src: a.initrd})
	}
	return files, nil
}

func (b *builder) systemdBootFiles(a *assembly, cmdline string) ([]espFile, error) {
	s := b.spec
	loader, err := b.hostOrImage(a.tree, "boot.efi", s.Boot.EFI)
	if err != nil {
		return nil, fmt.Errorf("%w (the disk output needs systemd-boot: install systemd-boot-efi in the base or set boot.efi)", err)
	}
	entry := fmt.Sprintf("title %s %s\nlinux /vmlinuz\n", s.Name, s.Version)
	if a.initrd != nil {
		entry += "initrd /initrd.img\n"
	}
	entry += "options " + cmdline + "\n"
	conf := "default rackstrap.conf\ntimeout 0\nconsole-mode keep\n"
	return []espFile{
		{path: "EFI/BOOT/BOOTX64.EFI", src: loader},
		{path: "loader/loader.conf", src: dataEntry(conf)},
		{path: "loader/entries/rackstrap.conf", src: dataEntry(entry)},
	}, nil
}

// grubFiles lays out Debian's signed GRUB EFI, behind shim when there is
// one: shim is BOOTX64.EFI and loads grubx64.efi from its own directory.
// Debian's GRUB reads $prefix/grub.cfg with the prefix /EFI/debian, and
// other builds $cmdpath/grub.cfg, so the configuration goes in both.
func (b *builder) grubFiles(a *assembly, cmdline string) ([]espFile, error) {
	s := b.spec
	grub, err := b.hostOrImage(a.tree, "boot.efi", s.Boot.EFI)
	if err != nil {
		return nil, fmt.Errorf("%w (boot.loader grub needs GRUB EFI: install grub-efi-amd64-signed in the base or set boot.efi)", err)
	}
	var shim *rootfs.Entry
	if s.Boot.Shim != "" {
		if shim, err = b.hostOrImage(a.tree, "boot.shim", s.Boot.Shim); err != nil {
			return nil, fmt.Errorf("%w (install shim-signed in the base, or remove boot.shim to boot GRUB directly)", err)
		}
	} else if e, err := b.hostOrImage(a.tree, "boot.shim", spec.DefaultShim); err == nil {
		shim = e
	}
	var cfg strings.Builder
	cfg.WriteString("set default=0\nset timeout=0\n")
	fmt.Fprintf(&cfg, "menuentry %s {\n\tlinux /vmlinuz", grubQuote(s.Name+" "+s.Version))
	for _, arg := range strings.Fields(cmdline) {
		cfg.WriteString(" " + grubQuote(arg))
	}
	cfg.WriteString("\n")
	if a.initrd != nil {
		cfg.WriteString("\tinitrd /initrd.img\n")
	}
	cfg.WriteString("}\n")
	files := []espFile{{path: "EFI/BOOT/BOOTX64.EFI", src: grub}}
	if shim != nil {
		files = []espFile{{path: "EFI/BOOT/BOOTX64.EFI", src: shim}, {path: "EFI/BOOT/grubx64.efi", src: grub}}
	}
	return append(files,
		espFile{path: "EFI/BOOT/grub.cfg", src: dataEntry(cfg.String())},
		espFile{path: "EFI/debian/grub.cfg", src: dataEntry(cfg.String())},
	), nil
}

// grubQuote quotes a word for GRUB's shell-like script: single quotes keep
// everything literal ($, ;, spaces, double quotes).
func grubQuote(w string) string {
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

func dataEntry(s string) *rootfs.Entry {
	return &rootfs.Entry{Data: []byte(s), Size: int64(len(s)), Mode: 0o644}
}
