package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/rackstrap/rackstrap/images/rootfs"
	"github.com/rackstrap/rackstrap/images/spec"
	"github.com/rackstrap/rackstrap/images/store"
)

// Input is one input of a build, recorded in the manifest.
type Input = store.Input

// assembly is the root tree plus what the outputs need besides it.
type assembly struct {
	tree    *rootfs.Tree
	inputs  []Input
	kernel  *rootfs.Entry
	initrd  *rootfs.Entry
	skipped rootfs.Skipped
}

func (b *builder) addSource(t *rootfs.Tree, key string, src spec.Source, layer string) error {
	switch src.Kind() {
	case "dir":
		p := b.spec.Resolve(src.Dir)
		if err := checkExists(key+".dir", src.Dir, p, true); err != nil {
			return err
		}
		sk, err := t.AddDir(p, layer)
		b.skipped.Devices += sk.Devices
		if err != nil {
			return err
		}
		b.addDirInput(Input{Key: key, Kind: "dir", Path: src.Dir}, p)
	case "tarball":
		p := b.spec.Resolve(src.Tarball)
		if err := checkExists(key+".tarball", src.Tarball, p, false); err != nil {
			return err
		}
		sk, err := t.AddTarball(p, layer, filepath.Join(b.scratch, "content"))
		b.skipped.Devices += sk.Devices
		if err != nil {
			return err
		}
		d, err := fileDigest(p)
		if err != nil {
			return err
		}
		b.inputs = append(b.inputs, Input{Key: key, Kind: "tarball", Path: src.Tarball, Digest: d})
	case "oci":
		o := rootfs.OCI{Ref: src.OCI.Ref, Platform: src.OCI.Platform}
		path := src.OCI.Layout
		if path != "" {
			o.Layout = b.spec.Resolve(path)
			if err := checkExists(key+".oci.layout", path, o.Layout, true); err != nil {
				return err
			}
		} else {
			path = src.OCI.Tarball
			o.Tarball = b.spec.Resolve(path)
			if err := checkExists(key+".oci.tarball", path, o.Tarball, false); err != nil {
				return err
			}
		}
		d, sk, err := t.AddOCI(o, layer, filepath.Join(b.scratch, "content"))
		b.skipped.Devices += sk.Devices
		if err != nil {
			return err
		}
		b.inputs = append(b.inputs, Input{Key: key, Kind: "oci", Path: path, Digest: d})
	default:
		return fmt.Errorf("%s: no source; set dir, tarball or oci", key)
	}
	return nil
}

func checkExists(key, given, full string, dir bool) error {
	fi, err := os.Stat(full)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s: %s does not exist (resolved to %s); fix the path, relative paths are relative to the spec file", key, given, full)
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	if dir && !fi.IsDir() {
		return fmt.Errorf("%s: %s is not a directory", key, given)
	}
	if !dir && fi.IsDir() {
		return fmt.Errorf("%s: %s is a directory; name a file", key, given)
	}
	return nil
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// addDirInput records a directory input whose digest digestInputs fills
// in after the outputs are written: the disk writer hashes each file as it
// copies it, so a large tree is read once, not twice.
func (b *builder) addDirInput(in Input, dir string) {
	b.pending = append(b.pending, pendingDigest{index: len(b.inputs), dir: dir})
	b.inputs = append(b.inputs, in)
}

type pendingDigest struct {
	index int
	dir   string
}

// digestInputs fills in the digests addDirInput left out.
func (b *builder) digestInputs(ctx context.Context, inputs []Input) error {
	for _, p := range b.pending {
		d, err := dirDigest(ctx, p.dir, &b.content)
		if err != nil {
			return fmt.Errorf("%s: hash %s: %w", inputs[p.index].Key, p.dir, err)
		}
		inputs[p.index].Digest = d
	}
	return nil
}

// contentDigests remembers the sha256 of host files that an output writer
// read in full, so hashing the inputs afterwards does not read 1 GiB again.
type contentDigests struct {
	mu sync.Mutex
	m  map[string]string // absolute path -> "sha256:…"
}

func (c *contentDigests) get(p string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[p]
}

func (c *contentDigests) put(p, d string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]string{}
	}
	c.m[p] = d
}

// open is e.Open, recording the content's digest when it is read to the end.
func (c *contentDigests) open(e *rootfs.Entry) func() (io.ReadCloser, error) {
	if e.Src == "" || !filepath.IsAbs(e.Src) {
		return e.Open
	}
	return func() (io.ReadCloser, error) {
		r, err := e.Open()
		if err != nil {
			return nil, err
		}
		return &hashingReader{ReadCloser: r, h: sha256.New(), done: func(d string) { c.put(e.Src, d) }}, nil
	}
}

type hashingReader struct {
	io.ReadCloser
	h    hash.Hash
	done func(string)
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF && r.done != nil {
		r.done("sha256:" + hex.EncodeToString(r.h.Sum(nil)))
		r.done = nil
	}
	return n, err
}

// dirDigest hashes a directory's sorted listing: path, mode, owner, size,
// link target and content hash of every entry; content hashes already
// taken by a writer come from known.
func dirDigest(ctx context.Context, root string, known *contentDigests) (string, error) {
	h := sha256.New()
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", rel, info.Mode(), info.Size())
		switch {
		case info.Mode().IsRegular():
			fd := known.get(p)
			if fd == "" {
				if fd, err = fileDigest(p); err != nil {
					return err
				}
			}
			io.WriteString(h, fd)
		case info.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			io.WriteString(h, t)
		}
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// hostOrImage returns an entry for a kernel.*/boot.* path: absolute paths
// are looked up in the tree, relative ones read from the build host.
func (b *builder) hostOrImage(t *rootfs.Tree, key, p string) (*rootfs.Entry, error) {
	if spec.InImage(p) {
		e, err := t.Lookup(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if e == nil {
			return nil, fmt.Errorf("%s: %s is not in the image; add it with a layer or point %s at a file next to the spec (a relative path)", key, p, key)
		}
		if !e.IsRegular() {
			return nil, fmt.Errorf("%s: %s in the image is not a regular file", key, p)
		}
		return e, nil
	}
	full := b.spec.Resolve(p)
	if err := checkExists(key, p, full, false); err != nil {
		return nil, err
	}
	fi, err := os.Stat(full)
	if err != nil {
		return nil, err
	}
	return &rootfs.Entry{Path: filepath.Base(full), Mode: 0o644, Size: fi.Size(), Src: full}, nil
}

func (b *builder) assemble() (*assembly, error) {
	s := b.spec
	t := rootfs.New()
	if err := b.addSource(t, "base", s.Base, "base"); err != nil {
		return nil, err
	}
	for i, l := range s.Layers {
		key := fmt.Sprintf("layers[%d]", i)
		switch {
		case l.Source.Kind() != "":
			if err := b.addSource(t, key, l.Source, l.Name); err != nil {
				return nil, err
			}
		case len(l.Files) > 0:
			if err := b.addFiles(t, key, l); err != nil {
				return nil, err
			}
		case l.Packages != nil:
			dir := s.Resolve(l.Packages.Dir)
			if err := checkExists(key+".packages.dir", l.Packages.Dir, dir, true); err != nil {
				return nil, err
			}
			sub := rootfs.New()
			if _, err := sub.AddDir(dir, l.Name); err != nil {
				return nil, err
			}
			for _, e := range sub.Entries() {
				if e.Path == "." {
					continue
				}
				c := *e
				c.Path = strings.TrimPrefix(l.Packages.Dest, "/") + "/" + e.Path
				c.UID, c.GID = 0, 0
				if _, err := t.Put(c); err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
			}
			b.addDirInput(Input{Key: key, Kind: "packages", Path: l.Packages.Dir}, dir)
		}
	}
	a := &assembly{tree: t}
	if k := s.Kernel; k != nil {
		if k.Modules != "" {
			p := s.Resolve(k.Modules)
			fi, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("kernel.modules: %s does not exist (resolved to %s); fix the path", k.Modules, p)
			}
			if fi.IsDir() {
				sub := rootfs.New()
				if _, err := sub.AddDir(p, "kernel-modules"); err != nil {
					return nil, err
				}
				prefix := "lib/modules/" + k.Version + "/"
				if sub.Get(prefix) != nil {
					prefix = ""
				}
				for _, e := range sub.Entries() {
					if e.Path == "." {
						continue
					}
					c := *e
					c.Path = prefix + e.Path
					if _, err := t.Put(c); err != nil {
						return nil, fmt.Errorf("kernel.modules: %w", err)
					}
				}
				b.addDirInput(Input{Key: "kernel.modules", Kind: "dir", Path: k.Modules}, p)
			} else if err := b.addSource(t, "kernel.modules", spec.Source{Tarball: k.Modules}, "kernel-modules"); err != nil {
				return nil, err
			}
		}
		if g := s.GPUDriver; g != nil {
			if err := b.addSource(t, "gpu_driver", g.Source, "gpu-driver"); err != nil {
				return nil, err
			}
			if err := checkDriver(t, g, k.Version); err != nil {
				return nil, err
			}
		}
		var err error
		if a.kernel, err = b.hostOrImage(t, "kernel.image", k.Image); err != nil {
			return nil, err
		}
		if err := checkKernelVersion(a.kernel, k.Version); err != nil {
			return nil, err
		}
		if !spec.InImage(k.Image) {
			c := *a.kernel
			c.Path = "boot/vmlinuz-" + k.Version
			if _, err := t.Put(c); err != nil {
				return nil, err
			}
			b.addHostInput("kernel.image", k.Image)
		}
		if k.Initrd != "" {
			if a.initrd, err = b.hostOrImage(t, "kernel.initrd", k.Initrd); err != nil {
				return nil, err
			}
			if !spec.InImage(k.Initrd) {
				b.addHostInput("kernel.initrd", k.Initrd)
			}
		}
	}
	if err := b.addUsers(t); err != nil {
		return nil, err
	}
	if err := b.addHooks(t); err != nil {
		return nil, err
	}
	if s.Agent != "" {
		p := s.Resolve(s.Agent)
		if err := checkExists("agent", s.Agent, p, false); err != nil {
			return nil, err
		}
		fi, _ := os.Stat(p)
		if _, err := t.Put(rootfs.Entry{Path: "usr/bin/rackstrap-agent", Mode: 0o755, Size: fi.Size(), Src: p, Layer: "agent"}); err != nil {
			return nil, err
		}
		b.addHostInput("agent", s.Agent)
	}
	put := func(p string, mode fs.FileMode, data []byte) error {
		_, err := t.Put(rootfs.Entry{Path: p, Mode: mode, Data: data, Size: int64(len(data)), Layer: "rackstrap"})
		return err
	}
	if err := put("etc/hostname", 0o644, []byte(s.Hostname+"\n")); err != nil {
		return nil, err
	}
	info := map[string]any{"name": s.Name, "version": s.Version, "spec_digest": b.specDigest}
	if s.Kernel != nil {
		info["kernel"] = s.Kernel.Version
	}
	if g := s.GPUDriver; g != nil {
		info["gpu_driver"] = g.Vendor + " " + g.Version
	}
	ij, _ := json.MarshalIndent(info, "", "  ")
	if err := put("etc/rackstrap/image.json", 0o644, append(ij, '\n')); err != nil {
		return nil, err
	}
	a.inputs = b.inputs
	a.skipped = b.skipped
	return a, nil
}

func (b *builder) addHostInput(key, p string) {
	if d, err := fileDigest(b.spec.Resolve(p)); err == nil {
		b.inputs = append(b.inputs, Input{Key: key, Kind: "file", Path: p, Digest: d})
	}
}

func (b *builder) addFiles(t *rootfs.Tree, key string, l spec.Layer) error {
	for j, f := range l.Files {
		fk := fmt.Sprintf("%s.files[%d]", key, j)
		e := rootfs.Entry{Path: f.Path, UID: f.UID, GID: f.GID, Layer: l.Name, Mode: 0o644}
		if f.Mode != nil {
			e.Mode = modeBits(uint32(*f.Mode))
		}
		switch {
		case f.Symlink != "":
			e.Mode = fs.ModeSymlink | 0o777
			e.Target = f.Symlink
		case f.Source != "":
			p := b.spec.Resolve(f.Source)
			fi, err := os.Stat(p)
			if err != nil {
				if os.IsNotExist(err) {
					return fmt.Errorf("%s.source: %s does not exist (resolved to %s); fix the path", fk, f.Source, p)
				}
				return fmt.Errorf("%s.source: %w", fk, err)
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s.source: %s is not a regular file", fk, f.Source)
			}
			if f.Mode == nil {
				e.Mode = fi.Mode().Perm()
			}
			e.Src, e.Size = p, fi.Size()
			b.addHostInput(fk+".source", f.Source)
		default:
			e.Data, e.Size = []byte(f.Content), int64(len(f.Content))
		}
		if _, err := t.Put(e); err != nil {
			return fmt.Errorf("%s: %w", fk, err)
		}
	}
	return nil
}

func modeBits(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// checkKernelVersion reads the release string of an x86 bzImage (the boot
// protocol's kernel_version field) and compares it with kernel.version.
// Files that are not bzImages (test stand-ins) are not checked.
func checkKernelVersion(k *rootfs.Entry, want string) error {
	rc, err := k.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	hdr := make([]byte, 64<<10)
	n, _ := io.ReadFull(rc, hdr)
	hdr = hdr[:n]
	if len(hdr) < 0x210 || string(hdr[0x202:0x206]) != "HdrS" {
		return nil
	}
	off := int(binary.LittleEndian.Uint16(hdr[0x20E:])) + 0x200
	if off <= 0x200 || off >= len(hdr) {
		return nil
	}
	end := bytes.IndexByte(hdr[off:], 0)
	if end < 0 {
		return nil
	}
	got := strings.Fields(string(hdr[off : off+end]))
	if len(got) > 0 && got[0] != want {
		return fmt.Errorf("kernel.image is kernel %s but kernel.version says %s; set kernel.version to %s or use the %s kernel", got[0], want, got[0], want)
	}
	return nil
}

// checkDriver verifies that every kernel module of the GPU driver layer was
// built for kernel kv: its lib/modules directory and each module's vermagic.
func checkDriver(t *rootfs.Tree, g *spec.GPUDriver, kv string) error {
	var mods []*rootfs.Entry
	for _, e := range t.Entries() {
		if e.Layer != "gpu-driver" || !e.IsRegular() {
			continue
		}
		name := e.Path
		if i := strings.Index(name, "lib/modules/"); i >= 0 {
			rest := name[i+len("lib/modules/"):]
			dir, _, _ := strings.Cut(rest, "/")
			if dir != kv && strings.Contains(rest, "/") {
				return fmt.Errorf("gpu_driver: %s %s installs modules for kernel %s (/%s) but the image boots kernel %s; rebuild the driver against the %s headers",
					g.Vendor, g.Version, dir, e.Path, kv, kv)
			}
		}
		if strings.HasSuffix(name, ".ko") || strings.HasSuffix(name, ".ko.xz") || strings.HasSuffix(name, ".ko.zst") || strings.HasSuffix(name, ".ko.gz") {
			mods = append(mods, e)
		}
	}
	if len(mods) == 0 {
		return fmt.Errorf("gpu_driver: %s %s holds no kernel modules (*.ko); point gpu_driver at the driver built for kernel %s", g.Vendor, g.Version, kv)
	}
	for _, m := range mods {
		vm, err := vermagic(m)
		if err != nil {
			return fmt.Errorf("gpu_driver: /%s: %w", m.Path, err)
		}
		if vm == "" {
			return fmt.Errorf("gpu_driver: /%s has no vermagic; it is not a kernel module", m.Path)
		}
		if got := strings.Fields(vm)[0]; got != kv {
			return fmt.Errorf("gpu_driver: /%s was built for kernel %s (vermagic %q) but the image boots kernel %s; rebuild %s %s for %s or change kernel.version",
				m.Path, got, vm, kv, g.Vendor, g.Version, kv)
		}
	}
	return nil
}

func vermagic(e *rootfs.Entry) (string, error) {
	rc, err := e.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	plain, err := rootfs.Decompress(rc)
	if err != nil {
		return "", err
	}
	defer plain.Close()
	data, err := io.ReadAll(io.LimitReader(plain, 512<<20))
	if err != nil {
		return "", err
	}
	i := bytes.Index(data, []byte("vermagic="))
	if i < 0 {
		return "", nil
	}
	rest := data[i+len("vermagic="):]
	if j := bytes.IndexByte(rest, 0); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(string(rest)), nil
}

// addUsers writes passwd, group and shadow lines, home directories and
// authorized_keys for the spec's users.
func (b *builder) addUsers(t *rootfs.Tree) error {
	s := b.spec
	if len(s.Users) == 0 {
		return nil
	}
	read := func(p, def string) []string {
		data, err := t.ReadFile(p)
		if err != nil {
			data = []byte(def)
		}
		return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	}
	passwd := read("/etc/passwd", "root:x:0:0:root:/root:/bin/sh")
	group := read("/etc/group", "root:x:0:")
	shadow := read("/etc/shadow", "root:*:0:0:99999:7:::")
	set := func(lines []string, name, line string) []string {
		for i, l := range lines {
			if strings.HasPrefix(l, name+":") {
				lines[i] = line
				return lines
			}
		}
		return append(lines, line)
	}
	gids := map[string]int{}
	for _, l := range group {
		f := strings.Split(l, ":")
		if len(f) >= 3 {
			if g, err := strconv.Atoi(f[2]); err == nil {
				gids[f[0]] = g
			}
		}
	}
	days := b.epoch.Unix() / 86400
	nextGID := 2000
	for _, u := range s.Users {
		gid := u.UID
		if u.GID != nil {
			gid = *u.GID
		}
		home := u.Home
		if home == "" {
			home = "/home/" + u.Name
		}
		shell := u.Shell
		if shell == "" {
			shell = "/bin/sh"
		}
		hash := u.PasswordHash
		if hash == "" {
			hash = "!"
		}
		passwd = set(passwd, u.Name, fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", u.Name, u.UID, gid, u.Name, home, shell))
		shadow = set(shadow, u.Name, fmt.Sprintf("%s:%s:%d:0:99999:7:::", u.Name, hash, days))
		if _, ok := gids[u.Name]; !ok {
			group = set(group, u.Name, fmt.Sprintf("%s:x:%d:", u.Name, gid))
			gids[u.Name] = gid
		}
		for _, gname := range u.Groups {
			found := false
			for i, l := range group {
				f := strings.Split(l, ":")
				if len(f) == 4 && f[0] == gname {
					members := []string{}
					if f[3] != "" {
						members = strings.Split(f[3], ",")
					}
					members = append(members, u.Name)
					f[3] = strings.Join(members, ",")
					group[i] = strings.Join(f, ":")
					found = true
				}
			}
			if !found {
				for {
					if !gidUsed(gids, nextGID) {
						break
					}
					nextGID++
				}
				group = append(group, fmt.Sprintf("%s:x:%d:%s", gname, nextGID, u.Name))
				gids[gname] = nextGID
			}
		}
		hc := strings.TrimPrefix(home, "/")
		if _, err := t.Put(rootfs.Entry{Path: hc, Mode: fs.ModeDir | 0o750, UID: u.UID, GID: gid, Layer: "users"}); err != nil {
			return fmt.Errorf("users: home of %s: %w", u.Name, err)
		}
		if len(u.SSHAuthorizedKeys) > 0 {
			if _, err := t.Put(rootfs.Entry{Path: hc + "/.ssh", Mode: fs.ModeDir | 0o700, UID: u.UID, GID: gid, Layer: "users"}); err != nil {
				return err
			}
			keys := []byte(strings.Join(u.SSHAuthorizedKeys, "\n") + "\n")
			if _, err := t.Put(rootfs.Entry{Path: hc + "/.ssh/authorized_keys", Mode: 0o600, UID: u.UID, GID: gid, Data: keys, Size: int64(len(keys)), Layer: "users"}); err != nil {
				return err
			}
		}
	}
	for _, f := range []struct {
		p     string
		lines []string
		mode  fs.FileMode
	}{{"etc/passwd", passwd, 0o644}, {"etc/group", group, 0o644}, {"etc/shadow", shadow, 0o640}} {
		data := []byte(strings.Join(f.lines, "\n") + "\n")
		if _, err := t.Put(rootfs.Entry{Path: f.p, Mode: f.mode, Data: data, Size: int64(len(data)), Layer: "users"}); err != nil {
			return err
		}
	}
	return nil
}

func gidUsed(gids map[string]int, g int) bool {
	for _, v := range gids {
		if v == g {
			return true
		}
	}
	return false
}

const firstBootRunner = `#!/bin/sh
# Runs each first-boot hook once, in name order; a hook that fails is retried next boot.
set -u
dir=/usr/lib/rackstrap/first-boot.d
state=/var/lib/rackstrap/first-boot
mkdir -p "$state"
rc=0
for h in "$dir"/*; do
  [ -x "$h" ] || continue
  n=$(basename "$h")
  [ -e "$state/$n.done" ] && continue
  if "$h"; then touch "$state/$n.done"; else echo "rackstrap-first-boot: $n failed" >&2; rc=1; fi
done
exit $rc
`

const firstBootUnit = `[Unit]
Description=Rackstrap first-boot hooks
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/lib/rackstrap/rackstrap-first-boot
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`

func (b *builder) addHooks(t *rootfs.Tree) error {
	s := b.spec
	if len(s.FirstBoot) == 0 {
		return nil
	}
	hooks := append([]spec.Hook(nil), s.FirstBoot...)
	sort.Slice(hooks, func(i, j int) bool { return hooks[i].Name < hooks[j].Name })
	for i, h := range hooks {
		var data []byte
		if h.Run != "" {
			data = []byte(h.Run)
			if !bytes.HasPrefix(data, []byte("#!")) {
				data = append([]byte("#!/bin/sh\nset -e\n"), data...)
			}
		} else {
			p := s.Resolve(h.Script)
			var err error
			if data, err = os.ReadFile(p); err != nil {
				return fmt.Errorf("first_boot[%d].script: %s: %w; fix the path, relative paths are relative to the spec file", i, h.Script, err)
			}
			b.addHostInput(fmt.Sprintf("first_boot[%d].script", i), h.Script)
		}
		if _, err := t.Put(rootfs.Entry{Path: "usr/lib/rackstrap/first-boot.d/" + h.Name, Mode: 0o755, Data: data, Size: int64(len(data)), Layer: "first-boot"}); err != nil {
			return err
		}
	}
	for _, e := range []rootfs.Entry{
		{Path: "usr/lib/rackstrap/rackstrap-first-boot", Mode: 0o755, Data: []byte(firstBootRunner)},
		{Path: "usr/lib/systemd/system/rackstrap-first-boot.service", Mode: 0o644, Data: []byte(firstBootUnit)},
		{Path: "etc/systemd/system/multi-user.target.wants/rackstrap-first-boot.service", Mode: fs.ModeSymlink | 0o777, Target: "/usr/lib/systemd/system/rackstrap-first-boot.service"},
	} {
		e.Size = int64(len(e.Data))
		e.Layer = "first-boot"
		if _, err := t.Put(e); err != nil {
			return err
		}
	}
	return nil
}
