package spec

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62})$`)
	versionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
	userRe    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	kernelRe  = regexp.MustCompile(`^[0-9]+\.[0-9]+[A-Za-z0-9._+-]*$`)
	hookRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	volIDRe   = regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)
)

// Compressions each output accepts.
var (
	SquashfsCompressions = []string{"zstd", "xz", "gzip", "lzo", "lz4"}
	NetbootCompressions  = []string{"zstd", "gzip", "none"}
)

// Defaults filled in by WithDefaults.
const (
	DefaultEFI       = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	DefaultGRUB      = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
	DefaultShim      = "/usr/lib/shim/shimx64.efi.signed"
	DefaultISOLinux  = "/usr/lib/ISOLINUX/isolinux.bin"
	DefaultLDLinux   = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
	DefaultPkgDest   = "/var/lib/rackstrap/packages"
	DefaultESPSize   = Size(128 << 20)
	DefaultBlockSize = Size(1 << 20)
	minESPSize       = Size(33 << 20) // FAT32 needs 65525 clusters of 512 bytes
	minRootSize      = Size(8 << 20)
	minCIDATASize    = Size(33 << 20) // FAT32, like the ESP
)

// WithDefaults returns a copy of s with every optional field that has a
// default filled in, so a builder never guesses.
func (s Spec) WithDefaults() Spec {
	if s.Boot.Loader == "" {
		s.Boot.Loader = "systemd-boot"
	}
	if s.Boot.EFI == "" {
		s.Boot.EFI = DefaultEFI
		if s.Boot.Loader == "grub" {
			s.Boot.EFI = DefaultGRUB
		}
	}
	if s.Boot.ISOLinux == "" {
		s.Boot.ISOLinux = DefaultISOLinux
	}
	if s.Boot.LDLinux == "" {
		s.Boot.LDLinux = DefaultLDLinux
	}
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if s.Kernel != nil {
		k := *s.Kernel
		if k.Image == "" {
			k.Image = "/boot/vmlinuz-" + k.Version
		}
		s.Kernel = &k
	}
	layers := make([]Layer, len(s.Layers))
	copy(layers, s.Layers)
	for i := range layers {
		if p := layers[i].Packages; p != nil && p.Dest == "" {
			c := *p
			c.Dest = DefaultPkgDest
			layers[i].Packages = &c
		}
	}
	s.Layers = layers
	o := s.Outputs
	if o.Disk != nil {
		d := *o.Disk
		if d.ESPSize == 0 {
			d.ESPSize = DefaultESPSize
		}
		if d.Sparse == nil {
			t := true
			d.Sparse = &t
		}
		if d.RootLabel == "" {
			d.RootLabel = "rackstrap-root"
		}
		o.Disk = &d
	}
	if o.Squashfs != nil {
		q := *o.Squashfs
		if q.Compression == "" {
			q.Compression = "zstd"
		}
		if q.BlockSize == 0 {
			q.BlockSize = DefaultBlockSize
		}
		o.Squashfs = &q
	}
	if o.Netboot != nil {
		n := *o.Netboot
		if n.Compression == "" {
			n.Compression = "zstd"
		}
		o.Netboot = &n
	}
	if o.ISO != nil {
		i := *o.ISO
		if i.VolumeID == "" {
			i.VolumeID = strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(s.Name))
			if len(i.VolumeID) > 32 {
				i.VolumeID = i.VolumeID[:32]
			}
		}
		o.ISO = &i
	}
	s.Outputs = o
	return s
}

// validate checks what the types cannot: required fields, one-of choices,
// formats, ranges and consistency between sections.
func (s *Spec) validate() Errors {
	var errs Errors
	add := func(path, format string, args ...any) {
		errs = append(errs, s.errAt(path, format, args...))
	}
	if s.APIVersion != APIVersion {
		if s.APIVersion == "" {
			add("api_version", "missing; add 'api_version: %s' as the first line", APIVersion)
		} else {
			add("api_version", "%q is not supported; this rackstrap reads %s", s.APIVersion, APIVersion)
		}
	}
	if !nameRe.MatchString(s.Name) {
		add("name", "%q is not an image name; use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", s.Name)
	}
	if !versionRe.MatchString(s.Version) {
		add("version", "%q is not a version; use letters, digits, '.', '_', '+' or '-' (e.g. 2026.11.1)", s.Version)
	}
	if s.SourceDateEpoch != nil && *s.SourceDateEpoch < 0 {
		add("source_date_epoch", "must be seconds since 1970, not negative")
	}
	if s.Hostname != "" && !nameRe.MatchString(s.Hostname) {
		add("hostname", "%q is not a host name", s.Hostname)
	}
	errs = append(errs, s.validateSource("base", s.Base, true)...)
	names := map[string]int{}
	for i, l := range s.Layers {
		p := fmt.Sprintf("layers[%d]", i)
		if l.Name == "" {
			add(p+".name", "missing; every layer needs a name for logs and the manifest")
		} else if j, dup := names[l.Name]; dup {
			add(p+".name", "%q is also the name of layers[%d]; names must be unique", l.Name, j)
		} else {
			names[l.Name] = i
		}
		n := l.Source.count()
		if len(l.Files) > 0 {
			n++
		}
		if l.Packages != nil {
			n++
		}
		if n != 1 {
			add(p, "set exactly one of dir, tarball, oci, files or packages (found %d)", n)
			continue
		}
		if l.Source.count() == 1 {
			errs = append(errs, s.validateSource(p, l.Source, true)...)
		}
		for j, f := range l.Files {
			fp := fmt.Sprintf("%s.files[%d]", p, j)
			errs = append(errs, s.validateImagePath(fp+".path", f.Path)...)
			k := 0
			for _, v := range []bool{f.Content != "", f.Source != "", f.Symlink != ""} {
				if v {
					k++
				}
			}
			if k > 1 {
				add(fp, "set at most one of content, source or symlink")
			}
			if f.Symlink != "" && f.Mode != nil {
				add(fp+".mode", "a symlink has no mode of its own; remove mode")
			}
			if f.UID < 0 || f.GID < 0 {
				add(fp, "uid and gid must not be negative")
			}
		}
		if pk := l.Packages; pk != nil {
			if pk.Dir == "" {
				add(p+".packages.dir", "missing; name the directory holding the pre-fetched packages")
			}
			if pk.Dest != "" {
				errs = append(errs, s.validateImagePath(p+".packages.dest", pk.Dest)...)
			}
		}
	}
	if k := s.Kernel; k != nil {
		if !kernelRe.MatchString(k.Version) {
			add("kernel.version", "%q is not a kernel release; write it as 'uname -r' prints it, e.g. 6.1.0-28-amd64", k.Version)
		}
	}
	if g := s.GPUDriver; g != nil {
		if g.Vendor == "" {
			add("gpu_driver.vendor", "missing; e.g. nvidia")
		}
		if g.Version == "" {
			add("gpu_driver.version", "missing; the driver version, e.g. 550.127.05")
		}
		if !kernelRe.MatchString(g.KernelVersion) {
			add("gpu_driver.kernel_version", "%q is not a kernel release; give the 'uname -r' of the kernel the driver modules were built for", g.KernelVersion)
		}
		if s.Kernel == nil {
			add("gpu_driver", "a GPU driver layer needs a kernel section: the build checks that the driver was built for that kernel")
		} else if g.KernelVersion != "" && s.Kernel.Version != "" && g.KernelVersion != s.Kernel.Version {
			add("gpu_driver.kernel_version", "driver %s %s was built for kernel %s but the image boots kernel %s; rebuild the driver for %s or set kernel.version to %s",
				g.Vendor, g.Version, g.KernelVersion, s.Kernel.Version, s.Kernel.Version, g.KernelVersion)
		}
		errs = append(errs, s.validateSource("gpu_driver", g.Source, true)...)
	}
	users := map[string]bool{}
	uids := map[int]string{}
	for i, u := range s.Users {
		p := fmt.Sprintf("users[%d]", i)
		if !userRe.MatchString(u.Name) {
			add(p+".name", "%q is not a user name; use lowercase letters, digits, '_' or '-', starting with a letter or '_'", u.Name)
		}
		if users[u.Name] {
			add(p+".name", "user %q is defined twice", u.Name)
		}
		users[u.Name] = true
		if u.UID < 0 || u.UID > 65534 {
			add(p+".uid", "%d is out of range 0-65534", u.UID)
		} else if other, dup := uids[u.UID]; dup {
			add(p+".uid", "uid %d is also used by %q", u.UID, other)
		}
		uids[u.UID] = u.Name
		if u.GID != nil && (*u.GID < 0 || *u.GID > 65534) {
			add(p+".gid", "%d is out of range 0-65534", *u.GID)
		}
		if u.Home != "" {
			errs = append(errs, s.validateImagePath(p+".home", u.Home)...)
		}
		if u.Shell != "" && !strings.HasPrefix(u.Shell, "/") {
			add(p+".shell", "%q must be an absolute path inside the image, e.g. /bin/bash", u.Shell)
		}
		for _, g := range u.Groups {
			if !userRe.MatchString(g) {
				add(p+".groups", "%q is not a group name", g)
			}
		}
		for j, k := range u.SSHAuthorizedKeys {
			if err := checkAuthorizedKey(k); err != nil {
				add(fmt.Sprintf("%s.ssh_authorized_keys[%d]", p, j), "%v", err)
			}
		}
		if strings.ContainsAny(u.PasswordHash, ":\n") {
			add(p+".password_hash", "must not contain ':' or newlines; give a crypt(3) hash or '!' for none")
		}
	}
	hooks := map[string]bool{}
	for i, h := range s.FirstBoot {
		p := fmt.Sprintf("first_boot[%d]", i)
		if !hookRe.MatchString(h.Name) {
			add(p+".name", "%q is not a hook name; use letters, digits, '.', '_' or '-' (hooks run in name order, e.g. 10-gpu-check)", h.Name)
		}
		if hooks[h.Name] {
			add(p+".name", "hook %q is defined twice", h.Name)
		}
		hooks[h.Name] = true
		if (h.Run == "") == (h.Script == "") {
			add(p, "set exactly one of run (inline script) or script (a file)")
		}
	}
	if s.Boot.Loader != "" && s.Boot.Loader != "systemd-boot" && s.Boot.Loader != "grub" {
		add("boot.loader", "%q is not supported; use systemd-boot or grub", s.Boot.Loader)
	}
	if s.Boot.Shim != "" && s.Boot.Loader != "grub" {
		add("boot.shim", "shim only goes in front of GRUB; set boot.loader: grub or remove boot.shim")
	}
	o := s.Outputs
	if o.Disk == nil && o.Squashfs == nil && o.Netboot == nil && o.ISO == nil {
		add("outputs", "no output formats; add at least one of disk, squashfs, netboot or iso")
	}
	if (o.Disk != nil || o.Netboot != nil || o.ISO != nil) && s.Kernel == nil {
		add("kernel", "disk, netboot and iso outputs boot a kernel; add a kernel section with at least version")
	}
	if d := o.Disk; d != nil {
		esp := d.ESPSize
		if esp == 0 {
			esp = DefaultESPSize
		}
		if d.ESPSize != 0 && d.ESPSize < minESPSize {
			add("outputs.disk.esp_size", "%s is too small for FAT32; use at least %s", d.ESPSize, minESPSize)
		}
		if c := d.CIDATASize; c != 0 && (c < minCIDATASize || c%(1<<20) != 0) {
			add("outputs.disk.cidata_size", "%s cannot hold the FAT32 NoCloud seed partition; use a whole number of MiB, at least %s", c, minCIDATASize)
		}
		fixed := esp + d.CIDATASize
		if d.Size == 0 {
			add("outputs.disk.size", "missing; the raw disk size, e.g. 4GiB")
		} else if d.Size < fixed+minRootSize+2<<20 {
			what := "the " + esp.String() + " ESP"
			if d.CIDATASize != 0 {
				what += " and the " + d.CIDATASize.String() + " CIDATA partition"
			}
			add("outputs.disk.size", "%s leaves no room for a root filesystem after %s; use at least %s", d.Size, what, fixed+minRootSize+2<<20)
		}
		if d.Size%512 != 0 {
			add("outputs.disk.size", "must be a multiple of 512 bytes")
		}
	}
	if q := o.Squashfs; q != nil {
		if q.Compression != "" && !oneOf(q.Compression, SquashfsCompressions) {
			add("outputs.squashfs.compression", "%q is not one of %s", q.Compression, strings.Join(SquashfsCompressions, ", "))
		}
		if q.BlockSize != 0 && (q.BlockSize < 4096 || q.BlockSize > 1<<20 || q.BlockSize&(q.BlockSize-1) != 0) {
			add("outputs.squashfs.block_size", "must be a power of two from 4KiB to 1MiB")
		}
	}
	if n := o.Netboot; n != nil && n.Compression != "" && !oneOf(n.Compression, NetbootCompressions) {
		add("outputs.netboot.compression", "%q is not one of %s", n.Compression, strings.Join(NetbootCompressions, ", "))
	}
	if i := o.ISO; i != nil && i.VolumeID != "" && !volIDRe.MatchString(i.VolumeID) {
		add("outputs.iso.volume_id", "%q must be 1-32 of A-Z, 0-9 and _", i.VolumeID)
	}
	return errs
}

func (s *Spec) validateSource(p string, src Source, required bool) Errors {
	var errs Errors
	switch n := src.count(); {
	case n == 0 && required:
		errs = append(errs, s.errAt(p, "set one of dir, tarball or oci"))
	case n > 1:
		errs = append(errs, s.errAt(p, "set only one of dir, tarball or oci (found %d)", n))
	}
	if o := src.OCI; o != nil {
		if (o.Layout == "") == (o.Tarball == "") {
			errs = append(errs, s.errAt(p+".oci", "set exactly one of layout (an OCI image layout directory) or tarball"))
		}
		if o.Platform != "" && !strings.Contains(o.Platform, "/") {
			errs = append(errs, s.errAt(p+".oci.platform", "%q is not os/arch, e.g. linux/amd64", o.Platform))
		}
	}
	return errs
}

// validateImagePath checks a path inside the image: absolute and clean.
func (s *Spec) validateImagePath(p, v string) Errors {
	if v == "" {
		return Errors{s.errAt(p, "missing; give an absolute path inside the image")}
	}
	if !strings.HasPrefix(v, "/") {
		return Errors{s.errAt(p, "%q must be an absolute path inside the image (start with /)", v)}
	}
	for _, el := range strings.Split(v, "/") {
		if el == ".." {
			return Errors{s.errAt(p, "%q escapes the image root with '..'; write the path without '..'", v)}
		}
	}
	if path.Clean(v) == "/" {
		return Errors{s.errAt(p, "%q is the image root; name a file", v)}
	}
	return nil
}

func checkAuthorizedKey(k string) error {
	f := strings.Fields(k)
	if strings.ContainsAny(k, "\n\r") {
		return fmt.Errorf("must be one line")
	}
	// options may come first; find the key type
	for i, w := range f {
		if strings.HasPrefix(w, "ssh-") || strings.HasPrefix(w, "ecdsa-") || strings.HasPrefix(w, "sk-") {
			if i+1 >= len(f) {
				return fmt.Errorf("key type %s has no key data after it", w)
			}
			return nil
		}
	}
	return fmt.Errorf("%.40q is not an OpenSSH public key line (want e.g. 'ssh-ed25519 AAAA... user@host')", k)
}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}
