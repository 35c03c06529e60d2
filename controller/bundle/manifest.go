// Package bundle moves artifacts onto a disconnected site: `rackstrap
// bundle export` packs OS images (an images/store), iPXE binaries, kernels
// and initramfs, firmware packages, hardware profiles and firmware
// baselines into one tar (optionally zstd) with a manifest of every blob's
// sha256, signed with the site keyring's ed25519 key; `rackstrap bundle
// import` checks the signature against the local trust store and every
// blob's digest before anything enters the artifact store, and is
// idempotent and resumable. See docs/decisions/0014-keys-and-bundles.md.
package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// ManifestVersion is the schema version of Manifest.
const ManifestVersion = 1

// Limits on what an importer reads from an untrusted bundle.
const (
	MaxManifestSize  = 16 << 20
	MaxSignatureSize = 64 << 10
	MaxRotationsSize = 1 << 20
	MaxEntries       = 100000
	MaxEntrySize     = 1 << 40 // 1 TiB
)

// Kind is what an entry is; it decides the directory it lands in.
type Kind string

const (
	KindIPXE      Kind = "ipxe"       // boot/: iPXE binaries
	KindKernel    Kind = "kernel"     // boot/: netboot kernels
	KindInitramfs Kind = "initramfs"  // boot/: netboot initramfs
	KindImage     Kind = "image"      // images/: an images/store (manifests and blobs)
	KindFirmware  Kind = "firmware"   // firmware/: packages and their .sig
	KindProfile   Kind = "profile"    // profiles/: hardware profiles
	KindBaseline  Kind = "baseline"   // baselines/: firmware baselines
	KindFile      Kind = "boot-other" // boot/: any other file the boot server serves
)

// kindDirs maps each kind to the top directory of its entries.
var kindDirs = map[Kind]string{
	KindIPXE: "boot", KindKernel: "boot", KindInitramfs: "boot", KindFile: "boot",
	KindImage: "images", KindFirmware: "firmware", KindProfile: "profiles", KindBaseline: "baselines",
}

// ParseKind checks a kind name.
func ParseKind(s string) (Kind, error) {
	if _, ok := kindDirs[Kind(s)]; ok {
		return Kind(s), nil
	}
	return "", fmt.Errorf("unknown kind %q; one of ipxe, kernel, initramfs, boot-other, image, firmware, profile, baseline", s)
}

// Manifest lists a bundle's entries. Its canonical bytes are signed.
type Manifest struct {
	SchemaVersion int     `json:"schema_version"`
	Type          string  `json:"type"` // "rackstrap-bundle"
	Name          string  `json:"name"`
	Created       string  `json:"created"` // RFC 3339
	Entries       []Entry `json:"entries"`
}

// Entry is one file of a bundle, at Path under the artifact store.
type Entry struct {
	Path   string `json:"path"`
	Kind   Kind   `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

const manifestType = "rackstrap-bundle"

var (
	nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
	hexRe  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	partRe = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$`)
)

// ParseManifest decodes and checks a manifest strictly: unknown fields,
// trailing data, unsafe paths, duplicate paths and bad digests are errors.
// It is the one entry point for untrusted manifest bytes.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("bundle manifest: %d bytes is more than the %d allowed", len(data), MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle manifest: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("bundle manifest: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field; the error names each bad entry.
func (m *Manifest) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if m.SchemaVersion != ManifestVersion {
		bad("schema_version %d is not %d", m.SchemaVersion, ManifestVersion)
	}
	if m.Type != manifestType {
		bad("type %q is not %q", m.Type, manifestType)
	}
	if !nameRe.MatchString(m.Name) {
		bad("name %q is not a bundle name (letters, digits, . _ + -)", m.Name)
	}
	if _, err := time.Parse(time.RFC3339, m.Created); err != nil {
		bad("created %q is not an RFC 3339 time", m.Created)
	}
	if len(m.Entries) > MaxEntries {
		bad("%d entries is more than the %d allowed", len(m.Entries), MaxEntries)
	}
	seen := map[string]bool{}
	for i, e := range m.Entries {
		if len(errs) > 20 {
			bad("…")
			break
		}
		if err := checkPath(e.Path); err != nil {
			bad("entries[%d]: %v", i, err)
			continue
		}
		if seen[e.Path] {
			bad("entries[%d]: %s is listed twice", i, e.Path)
		}
		seen[e.Path] = true
		dir, ok := kindDirs[e.Kind]
		if !ok {
			bad("entries[%d] %s: unknown kind %q", i, e.Path, e.Kind)
		} else if top, _, _ := strings.Cut(e.Path, "/"); top != dir {
			bad("entries[%d] %s: a %s belongs under %s/", i, e.Path, e.Kind, dir)
		}
		if e.Size < 0 || e.Size > MaxEntrySize {
			bad("entries[%d] %s: size %d is out of range", i, e.Path, e.Size)
		}
		if !hexRe.MatchString(e.SHA256) {
			bad("entries[%d] %s: sha256 %q is not 64 lower-case hex digits", i, e.Path, e.SHA256)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bundle manifest: %s", strings.Join(errs, "; "))
	}
	return nil
}

// checkPath accepts a clean relative path of at most 8 safe components
// under one of the known top directories.
func checkPath(p string) error {
	if p == "" || len(p) > 1024 {
		return fmt.Errorf("path %q is empty or too long", p)
	}
	if path.Clean(p) != p || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return fmt.Errorf("path %q is not a clean relative path", p)
	}
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 8 {
		return fmt.Errorf("path %q must have 2 to 8 components", p)
	}
	for _, s := range parts {
		if s == "." || s == ".." || !partRe.MatchString(s) {
			return fmt.Errorf("path %q has an unsafe component %q", p, s)
		}
	}
	known := false
	for _, d := range kindDirs {
		known = known || parts[0] == d
	}
	if !known {
		return fmt.Errorf("path %q is not under boot/, images/, firmware/, profiles/ or baselines/", p)
	}
	return nil
}

// Marshal returns the canonical bytes that are signed.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// bundleStatement is what a bundle signature covers: the manifest under a
// domain label, so a bundle signature is never taken for an image or
// firmware signature made with the same key.
func bundleStatement(manifest []byte) []byte {
	return append([]byte("rackstrap-bundle/v1\n"), manifest...)
}

// ParseRotations decodes the rotations entry of a bundle strictly.
func ParseRotations(data []byte) ([]Rotation, error) {
	if len(data) > MaxRotationsSize {
		return nil, fmt.Errorf("bundle rotations: %d bytes is too large", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rots []Rotation
	if err := dec.Decode(&rots); err != nil {
		return nil, fmt.Errorf("bundle rotations: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("bundle rotations: trailing data")
	}
	return rots, nil
}

func hexDigest(sum []byte) string { return hex.EncodeToString(sum) }
