package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Resolve maps a host path in the spec to a path on the build host: relative
// paths are relative to the spec file's directory.
func (s *Spec) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}

// InImage reports whether a kernel.*, boot.* path names a file inside the
// image (absolute) rather than on the build host (relative to the spec).
func InImage(p string) bool { return strings.HasPrefix(p, "/") }

// Digest is the sha256 of the spec's canonical JSON form with defaults filled
// in: formatting, comments and key order do not change it. Builders derive
// every UUID of an image from it.
func (s *Spec) Digest() string {
	b, err := json.Marshal(s.WithDefaults())
	if err != nil {
		panic(err) // only plain types: cannot fail
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// HostPath is one host path the spec refers to, with its key path and whether
// it must be a directory.
type HostPath struct {
	Key  string
	Path string
	Dir  bool
	// Either means a directory or a file (tarball) is fine.
	Either bool
}

// HostPaths lists every build-host path the spec refers to.
func (s *Spec) HostPaths() []HostPath {
	var out []HostPath
	src := func(p string, so Source) {
		if so.Dir != "" {
			out = append(out, HostPath{Key: p + ".dir", Path: so.Dir, Dir: true})
		}
		if so.Tarball != "" {
			out = append(out, HostPath{Key: p + ".tarball", Path: so.Tarball})
		}
		if o := so.OCI; o != nil {
			if o.Layout != "" {
				out = append(out, HostPath{Key: p + ".oci.layout", Path: o.Layout, Dir: true})
			}
			if o.Tarball != "" {
				out = append(out, HostPath{Key: p + ".oci.tarball", Path: o.Tarball})
			}
		}
	}
	src("base", s.Base)
	for i, l := range s.Layers {
		p := fmt.Sprintf("layers[%d]", i)
		src(p, l.Source)
		for j, f := range l.Files {
			if f.Source != "" {
				out = append(out, HostPath{Key: fmt.Sprintf("%s.files[%d].source", p, j), Path: f.Source})
			}
		}
		if l.Packages != nil && l.Packages.Dir != "" {
			out = append(out, HostPath{Key: p + ".packages.dir", Path: l.Packages.Dir, Dir: true})
		}
	}
	if k := s.Kernel; k != nil {
		for _, x := range []struct{ key, v string }{{"kernel.image", k.Image}, {"kernel.initrd", k.Initrd}} {
			if x.v != "" && !InImage(x.v) {
				out = append(out, HostPath{Key: x.key, Path: x.v})
			}
		}
		if k.Modules != "" {
			out = append(out, HostPath{Key: "kernel.modules", Path: k.Modules, Either: true})
		}
	}
	if g := s.GPUDriver; g != nil {
		src("gpu_driver", g.Source)
	}
	for i, h := range s.FirstBoot {
		if h.Script != "" {
			out = append(out, HostPath{Key: fmt.Sprintf("first_boot[%d].script", i), Path: h.Script})
		}
	}
	if s.Agent != "" {
		out = append(out, HostPath{Key: "agent", Path: s.Agent})
	}
	for _, x := range []struct{ key, v string }{{"boot.efi", s.Boot.EFI}, {"boot.isolinux", s.Boot.ISOLinux}, {"boot.ldlinux", s.Boot.LDLinux}} {
		if x.v != "" && !InImage(x.v) {
			out = append(out, HostPath{Key: x.key, Path: x.v})
		}
	}
	return out
}

// Lint parses data and reports every error and warning: everything Parse
// checks, plus whether each host path exists and is of the right kind, plus
// advice. A spec with only warnings builds.
func Lint(data []byte, file, dir string) Errors {
	s, err := Parse(data, file)
	if err != nil {
		var es Errors
		if errors.As(err, &es) {
			return es
		}
		return Errors{{File: file, Msg: err.Error()}}
	}
	s.Dir = dir
	return s.Lint()
}

// Lint checks a parsed spec against the build host (paths) and for advice.
func (s *Spec) Lint() Errors {
	var out Errors
	for _, hp := range s.HostPaths() {
		full := s.Resolve(hp.Path)
		fi, err := os.Stat(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, s.errAt(hp.Key, "%s does not exist (resolved to %s); fix the path, relative paths are relative to the spec file", hp.Path, full))
		case err != nil:
			out = append(out, s.errAt(hp.Key, "%v", err))
		case hp.Either:
		case hp.Dir && !fi.IsDir():
			out = append(out, s.errAt(hp.Key, "%s is not a directory", hp.Path))
		case !hp.Dir && fi.IsDir():
			out = append(out, s.errAt(hp.Key, "%s is a directory; name a file", hp.Path))
		}
	}
	warn := func(path, format string, args ...any) {
		e := s.errAt(path, format, args...)
		e.Warning = true
		out = append(out, e)
	}
	if s.SourceDateEpoch == nil {
		warn("", "no source_date_epoch: timestamps come from $SOURCE_DATE_EPOCH or 0; pin it in the spec so rebuilds elsewhere are identical")
	}
	if s.Outputs.Netboot != nil && s.Agent == "" {
		warn("outputs.netboot", "no agent: the netboot image will not check in; set agent to the rackstrap-agent binary")
	}
	hasKey := false
	for _, u := range s.Users {
		if len(u.SSHAuthorizedKeys) > 0 {
			hasKey = true
		}
	}
	if len(s.Users) > 0 && !hasKey {
		warn("users", "no user has ssh_authorized_keys: nobody can log in over SSH")
	}
	if k := s.Kernel; k != nil && k.Modules == "" && s.GPUDriver != nil {
		warn("kernel.modules", "not set: the kernel's modules must already be in the base at /lib/modules/%s", k.Version)
	}
	return out.sorted()
}

// HasErrors reports whether any finding is an error rather than a warning.
func (es Errors) HasErrors() bool {
	for _, e := range es {
		if !e.Warning {
			return true
		}
	}
	return false
}
