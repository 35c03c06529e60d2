package rootfs

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func ociImage(t *testing.T) v1.Image {
	t.Helper()
	mk := func(b []byte) v1.Layer {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l1 := mk(tarBytes(t,
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "etc/old", Typeflag: tar.TypeReg, Mode: 0o644},
	))
	l2 := mk(tarBytes(t,
		tar.Header{Name: "etc/.wh.old", Typeflag: tar.TypeReg},
		tar.Header{Name: "usr/bin/app", Typeflag: tar.TypeReg, Mode: 0o755},
	))
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestAddOCI(t *testing.T) {
	t.Parallel()
	img := ociImage(t)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(empty.Image, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "other"})); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.invalid/base:v1")
	tb := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(tb, tag, img); err != nil {
		t.Fatal(err)
	}
	want := []string{".", "etc", "etc/os-release", "usr", "usr/bin", "usr/bin/app"}
	wantDigest, _ := img.Digest()
	for name, src := range map[string]OCI{"layout": {Layout: filepath.Join(dir, "layout"), Ref: "v1"}, "tarball": {Tarball: tb}} {
		tr := New()
		d, _, err := tr.AddOCI(src, "base", t.TempDir())
		if err != nil {
			t.Fatalf("%s: AddOCI() = %v", name, err)
		}
		if diff := cmp.Diff(want, paths(tr)); diff != "" {
			t.Errorf("%s: entries (-want +got):\n%s", name, diff)
		}
		if d != wantDigest.String() {
			t.Errorf("%s: digest = %s, want %s", name, d, wantDigest)
		}
	}
	_, _, err = New().AddOCI(OCI{Layout: filepath.Join(dir, "layout")}, "base", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "set oci.ref to pick one") {
		t.Errorf("AddOCI(two images, no ref) = %v", err)
	}
	_, _, err = New().AddOCI(OCI{Layout: filepath.Join(dir, "layout"), Ref: "nope"}, "base", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `has no image "nope"; it holds v1`) {
		t.Errorf("AddOCI(unknown ref) = %v", err)
	}
}
