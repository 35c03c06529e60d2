package build

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/images/rootfs"
)

func execIn(dir, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = dir
	return c
}

// extractPartition copies partition n of a GPT disk to its own file, found by sgdisk.
func extractPartition(t *testing.T, disk string, n int, out string) {
	t.Helper()
	info := run(t, "sgdisk", "-i", string(rune('0'+n)), disk)
	var first, last int64
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "First sector:") {
			fields := strings.Fields(l)
			first = atoi(t, fields[2])
		}
		if strings.HasPrefix(l, "Last sector:") {
			fields := strings.Fields(l)
			last = atoi(t, fields[2])
		}
	}
	src, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	buf := make([]byte, (last-first+1)*512)
	if _, err := src.ReadAt(buf, first*512); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Write(buf); err != nil {
		t.Fatal(err)
	}
}

func atoi(t *testing.T, s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// TestBuildReproducibleAndChecked builds every format twice and compares
// the sha256 of each output, then checks each with tools that are not ours
// and compares the root they extract against the input tree.
func TestBuildReproducibleAndChecked(t *testing.T) {
	t.Parallel()
	need(t, "sgdisk", "fsck.vfat", "e2fsck", "debugfs", "mksquashfs", "unsquashfs", "xorriso", "cpio", "qemu-img", "zstd")
	dir := fixture(t, allOutputs)
	out1, out2 := filepath.Join(dir, "out1"), filepath.Join(dir, "out2")
	// the raw disk carries the CIDATA seed partition too
	r1 := buildWith(t, dir, Options{OutDir: out1, CIDATASize: 34 << 20})
	time.Sleep(2100 * time.Millisecond) // cross FAT's 2 s clock tick: a leaked wall-clock time shows
	r2 := buildWith(t, dir, Options{OutDir: out2, CIDATASize: 34 << 20})
	if diff := cmp.Diff(r1.Manifest, r2.Manifest); diff != "" {
		t.Fatalf("two builds differ (-first +second):\n%s", diff)
	}
	formats := map[string]bool{}
	for _, a := range r1.Manifest.Artifacts {
		formats[a.Format] = true
	}
	for _, f := range []string{"raw", "qcow2", "squashfs", "kernel", "initramfs", "iso"} {
		if !formats[f] {
			t.Errorf("no %s artifact in %+v", f, r1.Manifest.Artifacts)
		}
	}
	// digests computed while writing (the raw disk) match the files
	for _, a := range r1.Manifest.Artifacts {
		size, digest, err := hashFile(r1.Files[a.Name])
		if err != nil || size != a.Size || digest != a.Digest {
			t.Errorf("%s: file has %d bytes, %s (%v); manifest says %d bytes, %s", a.Name, size, digest, err, a.Size, a.Digest)
		}
	}
	if _, err := os.Stat(filepath.Join(out1, "manifest.json")); err != nil {
		t.Fatal(err)
	}
	input := listing(t, filepath.Join(dir, "rootfs"), nil)
	scratch := t.TempDir()

	// raw disk: GPT, ESP and root checked by their own tools
	raw := r1.Files["tiny.raw"]
	if out := run(t, "sgdisk", "-v", raw); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	esp := filepath.Join(scratch, "esp.img")
	extractPartition(t, raw, 1, esp)
	run(t, "fsck.vfat", "-n", esp)
	mdir := run(t, "mdir", "-i", esp, "-/", "::")
	for _, want := range []string{"BOOTX64  EFI", "rackstrap.conf", "vmlinuz"} {
		if !strings.Contains(mdir, want) {
			t.Errorf("ESP listing lacks %s:\n%s", want, mdir)
		}
	}
	entry := run(t, "mtype", "-i", esp, "::loader/entries/rackstrap.conf")
	if !strings.Contains(entry, "root=PARTUUID="+uuidString(derivedUUID(r1.Manifest.SpecDigest, "gpt-root"))) || !strings.Contains(entry, "console=ttyS0") {
		t.Errorf("boot entry = %q", entry)
	}
	checkCIDATA(t, raw, filepath.Join(scratch, "cidata.img"), nil)
	root := filepath.Join(scratch, "root.img")
	extractPartition(t, raw, 2, root)
	if out := run(t, "e2fsck", "-fn", root); strings.Contains(out, "?") {
		t.Errorf("e2fsck -fn found problems:\n%s", out)
	}
	ext4Tree := filepath.Join(scratch, "ext4")
	os.Mkdir(ext4Tree, 0o755)
	run(t, "debugfs", "-R", "rdump / "+ext4Tree, root)
	if st := run(t, "debugfs", "-R", "stat /usr/bin/su", root); !strings.Contains(st, "Mode:  04755") {
		t.Errorf("ext4 lost the setuid bit of /usr/bin/su:\n%s", st)
	}
	if st := run(t, "debugfs", "-R", "stat /tmp", root); !strings.Contains(st, "Mode:  01777") {
		t.Errorf("ext4 lost the sticky bit of /tmp:\n%s", st)
	}
	passwd := run(t, "debugfs", "-R", "cat /etc/passwd", root)
	group := run(t, "debugfs", "-R", "cat /etc/group", root)
	if !strings.Contains(passwd, "ops:x:1000:1000:ops:/home/ops:/bin/sh") || !strings.Contains(group, "sudo:x:27:ops") {
		t.Errorf("users not added:\n%s\n%s", passwd, group)
	}

	// squashfs
	sq := r1.Files["tiny.squashfs"]
	run(t, "unsquashfs", "-s", sq)
	if l := run(t, "unsquashfs", "-l", sq); !strings.Contains(l, "squashfs-root/etc/motd") {
		t.Errorf("unsquashfs -l lacks /etc/motd:\n%s", tail(l, 2000))
	}
	sqTree := filepath.Join(scratch, "squashfs")
	run(t, "unsquashfs", "-no-xattrs", "-d", sqTree, sq)
	sqList := listing(t, sqTree, nil)

	// initramfs
	ird := r1.Files["tiny.initramfs.cpio.zst"]
	plain := filepath.Join(scratch, "initramfs.cpio")
	run(t, "zstd", "-q", "-d", ird, "-o", plain)
	cpioList := run(t, "cpio", "-t", "--quiet", "-F", plain)
	if !strings.Contains(cpioList, "usr/bin/rackstrap-agent") || !strings.Contains(cpioList, "etc/motd") {
		t.Errorf("cpio -t lacks the agent or motd:\n%s", cpioList)
	}
	cpioTree := filepath.Join(scratch, "cpio")
	os.Mkdir(cpioTree, 0o755)
	cmd := execIn(cpioTree, "cpio", "-idm", "--quiet", "--no-absolute-filenames", "-F", plain)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	cpioTreeList := listing(t, cpioTree, nil)

	// ISO
	iso := r1.Files["tiny.iso"]
	if toc := run(t, "xorriso", "-indev", iso, "-toc"); !strings.Contains(toc, "ISO session") {
		t.Errorf("xorriso -toc:\n%s", toc)
	}
	rep := run(t, "xorriso", "-indev", iso, "-report_el_torito", "plain")
	for _, want := range []string{"El Torito boot img :   1  BIOS", "El Torito boot img :   2  UEFI"} {
		if !strings.Contains(rep, want) {
			t.Errorf("xorriso El Torito report lacks %q:\n%s", want, rep)
		}
	}
	run(t, "qemu-img", "check", r1.Files["tiny.qcow2"])

	// the roots agree with each other and with the input; the initramfs may
	// add what a kernel needs of it alone (/dev/console, /init: netboot.go)
	inSq := map[string]bool{}
	for _, l := range sqList {
		inSq[strings.Fields(l)[0]] = true
	}
	var cpioRoot []string
	for _, l := range cpioTreeList {
		p := strings.Fields(l)[0]
		if (p == "dev" || p == "dev/console" || p == "init") && !inSq[p] {
			continue
		}
		cpioRoot = append(cpioRoot, l)
	}
	if diff := cmp.Diff(sqList, cpioRoot); diff != "" {
		t.Errorf("squashfs and initramfs roots differ (-squashfs +cpio):\n%s", diff)
	}
	// debugfs rdump drops setuid, setgid and sticky bits (checked above with stat)
	rootDump := listing(t, ext4Tree, func(rel string) bool { return rel == "lost+found" })
	if diff := cmp.Diff(stripSpecial(sqList), stripSpecial(rootDump)); diff != "" {
		t.Errorf("squashfs and ext4 roots differ (-squashfs +ext4):\n%s", diff)
	}
	got := map[string]bool{}
	for _, l := range sqList {
		got[l] = true
	}
	for _, l := range input {
		if strings.HasPrefix(l, "var/lib/old/remove-me ") || strings.HasPrefix(l, "etc/passwd ") || strings.HasPrefix(l, "etc/group ") {
			continue // removed by a whiteout; changed by users
		}
		// directories gain entries; compare their own line only
		if !got[l] {
			t.Errorf("input entry missing or changed in the image: %s", l)
		}
	}
	for _, l := range sqList {
		if strings.HasPrefix(l, "var/lib/old/remove-me ") {
			t.Errorf("whiteout not applied: %s", l)
		}
	}
	for _, want := range []string{
		"etc/site.conf -rw------- 0:0",
		"usr/bin/rackstrap-agent -rwxr-xr-x 0:0",
		"home/ops/.ssh/authorized_keys -rw------- 1000:1000",
		"usr/lib/rackstrap/first-boot.d/20-check -rwxr-xr-x 0:0",
		"var/lib/rackstrap/packages/a_1.0_amd64.deb -rw-r--r-- 0:0",
		"usr/lib/modules/" + kver + "/updates/dkms/nvidia.ko -rw-r--r-- 0:0",
		"usr/local/bin/motd-link Lrwxrwxrwx 0:0 -> ../../../etc/motd",
	} {
		found := false
		for _, l := range sqList {
			if strings.HasPrefix(l, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("image lacks %q", want)
		}
	}
}

func stripSpecial(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		name, rest, _ := strings.Cut(l, " ")
		mode, tail, _ := strings.Cut(rest, " ")
		mode = strings.Map(func(r rune) rune {
			if r == 'u' || r == 'g' || r == 't' {
				return -1
			}
			return r
		}, mode)
		if len(mode) == 9 {
			mode = "-" + mode
		}
		out[i] = name + " " + mode + " " + tail
	}
	return out
}

// TestInputDigestFromWriter: a directory digest made from the content
// hashes a writer recorded equals one made by reading every file.
func TestInputDigestFromWriter(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "  netboot: {}\n")
	root := filepath.Join(dir, "rootfs")
	plain, err := dirDigest(context.Background(), root, &contentDigests{})
	if err != nil {
		t.Fatal(err)
	}
	tree := rootfs.New()
	if _, err := tree.AddDir(root, "base"); err != nil {
		t.Fatal(err)
	}
	var known contentDigests
	for _, e := range tree.Entries() {
		if !e.IsRegular() {
			continue
		}
		r, err := known.open(e)()
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r)
		r.Close()
	}
	if len(known.m) == 0 {
		t.Fatal("open recorded no digests")
	}
	for p, d := range known.m {
		if _, want, _ := hashFile(p); d != want {
			t.Errorf("recorded %s for %s, want %s", d, p, want)
		}
	}
	if got, err := dirDigest(context.Background(), "./"+mustRel(t, root), &known); err != nil || got != plain {
		t.Errorf("dirDigest with recorded content = %s, %v; want %s", got, err, plain)
	}
}

func mustRel(t *testing.T, p string) string {
	wd, _ := os.Getwd()
	r, err := filepath.Rel(wd, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
