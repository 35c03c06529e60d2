// Package store keeps built images in a content-addressed directory: every
// blob under blobs/sha256/<hex>, every image as a manifest (spec digest,
// inputs, outputs with digests, sizes and block maps, kernel and driver
// versions, build time) signed with ed25519. Reads verify digests and
// signatures; nothing unsigned or mis-signed is returned as good.
package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// ManifestVersion is the schema version of Manifest.
const ManifestVersion = 1

// Manifest describes one built image.
type Manifest struct {
	SchemaVersion int        `json:"schema_version"`
	Name          string     `json:"name"`
	Version       string     `json:"version"`
	SpecDigest    string     `json:"spec_digest"`
	Kernel        string     `json:"kernel,omitempty"`
	GPUDriver     string     `json:"gpu_driver,omitempty"`
	BuildTime     string     `json:"build_time"` // RFC 3339, from SOURCE_DATE_EPOCH
	Builder       string     `json:"builder"`
	Inputs        []Input    `json:"inputs"`
	Artifacts     []Artifact `json:"artifacts"`
}

// Input is one input of a build.
type Input struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"`
	Path   string `json:"path"`
	Digest string `json:"digest"`
}

// Artifact is one output file.
type Artifact struct {
	// Name is the file name, e.g. gpu-node.raw.
	Name string `json:"name"`
	// Format is raw, qcow2, squashfs, kernel, initramfs or iso.
	Format string `json:"format"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"` // sha256 of the uncompressed bytes
	// Stored is how the store holds it (zstd), filled in by Import.
	Stored *Stored `json:"stored,omitempty"`
	// BlockMap lists the non-zero ranges with their digests, so a writer can
	// skip zeros and verify as it goes. Filled in by Import.
	BlockMap *BlockMap `json:"block_map,omitempty"`
}

// Stored is the compressed blob holding an artifact.
type Stored struct {
	Compression string `json:"compression"` // zstd
	Digest      string `json:"digest"`
	Size        int64  `json:"size"`
}

// BlockMap is a bmap: fixed-size blocks, only the non-zero ones listed,
// adjacent non-zero blocks merged into ranges.
type BlockMap struct {
	BlockSize int64   `json:"block_size"`
	Ranges    []Range `json:"ranges"`
}

// Range is a run of non-zero blocks.
type Range struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Digest string `json:"digest"`
}

var (
	digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	verRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
	fileRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
)

// Formats an artifact may have.
var Formats = []string{"raw", "qcow2", "squashfs", "kernel", "initramfs", "iso"}

// ParseManifest decodes and validates a manifest strictly (unknown fields
// are errors). It is the one entry point for untrusted manifest bytes.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > 16<<20 {
		return nil, fmt.Errorf("manifest: %d bytes is too large", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the manifest's fields.
func (m *Manifest) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if m.SchemaVersion != ManifestVersion {
		bad("schema_version %d is not %d", m.SchemaVersion, ManifestVersion)
	}
	if !nameRe.MatchString(m.Name) {
		bad("name %q is invalid", m.Name)
	}
	if !verRe.MatchString(m.Version) {
		bad("version %q is invalid", m.Version)
	}
	if !digestRe.MatchString(m.SpecDigest) {
		bad("spec_digest %q is not sha256:<64 hex>", m.SpecDigest)
	}
	if len(m.Artifacts) == 0 {
		bad("no artifacts")
	}
	seen := map[string]bool{}
	for i, a := range m.Artifacts {
		if !fileRe.MatchString(a.Name) {
			bad("artifacts[%d].name %q is not a plain file name", i, a.Name)
		}
		if seen[a.Name] {
			bad("artifacts[%d].name %q repeats", i, a.Name)
		}
		seen[a.Name] = true
		if !contains(Formats, a.Format) {
			bad("artifacts[%d].format %q is not one of %s", i, a.Format, strings.Join(Formats, ", "))
		}
		if a.Size < 0 {
			bad("artifacts[%d].size is negative", i)
		}
		if !digestRe.MatchString(a.Digest) {
			bad("artifacts[%d].digest %q is not sha256:<64 hex>", i, a.Digest)
		}
		if s := a.Stored; s != nil {
			if s.Compression != "zstd" && s.Compression != "none" {
				bad("artifacts[%d].stored.compression %q is not zstd or none", i, s.Compression)
			}
			if !digestRe.MatchString(s.Digest) || s.Size < 0 {
				bad("artifacts[%d].stored has a bad digest or size", i)
			}
		}
		if bm := a.BlockMap; bm != nil {
			if bm.BlockSize <= 0 || bm.BlockSize%512 != 0 {
				bad("artifacts[%d].block_map.block_size %d is not a positive multiple of 512", i, bm.BlockSize)
			}
			var end int64
			for j, r := range bm.Ranges {
				if r.Offset < end || r.Length <= 0 || r.Offset+r.Length > a.Size || (bm.BlockSize > 0 && r.Offset%bm.BlockSize != 0) {
					bad("artifacts[%d].block_map.ranges[%d] is out of order, empty, misaligned or past the end", i, j)
					break
				}
				if !digestRe.MatchString(r.Digest) {
					bad("artifacts[%d].block_map.ranges[%d].digest is not sha256:<64 hex>", i, j)
					break
				}
				end = r.Offset + r.Length
			}
		}
	}
	for i, in := range m.Inputs {
		if !digestRe.MatchString(in.Digest) {
			bad("inputs[%d].digest %q is not sha256:<64 hex>", i, in.Digest)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("manifest %s:%s: %s", m.Name, m.Version, strings.Join(errs, "; "))
	}
	return nil
}

// Marshal is the canonical encoding that signatures cover.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Artifact returns the artifact with a format (the first) or name.
func (m *Manifest) Artifact(nameOrFormat string) (*Artifact, bool) {
	for i := range m.Artifacts {
		if m.Artifacts[i].Name == nameOrFormat || m.Artifacts[i].Format == nameOrFormat {
			return &m.Artifacts[i], true
		}
	}
	return nil, false
}

func contains(set []string, v string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}
