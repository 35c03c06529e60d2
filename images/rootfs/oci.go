package rootfs

import (
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI names a container image on disk: an OCI image layout directory or an
// image tarball (docker save). No registry is contacted.
type OCI struct {
	Layout, Tarball string
	// Ref selects an image of a layout by its ref.name annotation or digest.
	Ref string
	// Platform selects one image of a multi-platform index (default linux/amd64).
	Platform string
}

// AddOCI overlays every layer of the image onto the tree, in order, applying
// whiteouts. It returns the image's manifest digest.
func (t *Tree) AddOCI(src OCI, layer, scratch string) (string, Skipped, error) {
	var sk Skipped
	img, err := openOCI(src)
	if err != nil {
		return "", sk, fmt.Errorf("layer %s: %w", layer, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", sk, fmt.Errorf("layer %s: %w", layer, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return "", sk, fmt.Errorf("layer %s: read image layers: %w", layer, err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return "", sk, fmt.Errorf("layer %s: image layer %d: %w", layer, i, err)
		}
		s, err := t.AddTar(rc, layer, scratch)
		rc.Close()
		sk.Devices += s.Devices
		if err != nil {
			return "", sk, fmt.Errorf("layer %s: image layer %d: %w", layer, i, err)
		}
	}
	return d.String(), sk, nil
}

func openOCI(src OCI) (v1.Image, error) {
	if src.Tarball != "" {
		img, err := tarball.ImageFromPath(src.Tarball, nil)
		if err != nil {
			return nil, fmt.Errorf("OCI tarball %s: %w; it must hold exactly one image (docker save or crane pull)", src.Tarball, err)
		}
		return img, nil
	}
	idx, err := layout.ImageIndexFromPath(src.Layout)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", src.Layout, err)
	}
	plat := src.Platform
	if plat == "" {
		plat = "linux/amd64"
	}
	return pick(idx, src, plat, 0)
}

func pick(idx v1.ImageIndex, src OCI, plat string, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("OCI index nesting is too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", src.Layout, err)
	}
	var cands []v1.Descriptor
	var names []string
	for _, d := range m.Manifests {
		name := d.Annotations["org.opencontainers.image.ref.name"]
		names = append(names, fmt.Sprintf("%s (%s)", name, d.Digest))
		if src.Ref == "" || depth > 0 || src.Ref == name || src.Ref == d.Digest.String() {
			cands = append(cands, d)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("OCI layout %s has no image %q; it holds %s", src.Layout, src.Ref, strings.Join(names, ", "))
	}
	if len(cands) > 1 && depth == 0 {
		// several images: a platform match decides, else ask for a ref
		var plats []v1.Descriptor
		for _, d := range cands {
			if d.Platform != nil && platformString(d.Platform) == plat {
				plats = append(plats, d)
			}
		}
		if len(plats) != 1 {
			return nil, fmt.Errorf("OCI layout %s holds %d images (%s); set oci.ref to pick one", src.Layout, len(cands), strings.Join(names, ", "))
		}
		cands = plats
	}
	if depth > 0 {
		for _, d := range cands {
			if d.Platform == nil || platformString(d.Platform) == plat {
				cands = []v1.Descriptor{d}
				break
			}
		}
	}
	d := cands[0]
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		sub, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pick(sub, src, plat, depth+1)
	}
	return idx.Image(d.Digest)
}

func platformString(p *v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
