package build

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuildFromOCITarball builds a netboot image whose base is a container
// image tarball (docker save format), read without any registry.
func TestBuildFromOCITarball(t *testing.T) {
	t.Parallel()
	need(t, "cpio")
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range map[string]string{"etc/os-release": "ID=oci\n", "boot/vmlinuz-" + kver: "fake kernel"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		io.WriteString(tw, body)
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.invalid/base:1")
	if err := tarball.WriteToFile(filepath.Join(dir, "base.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "image.yaml"), `api_version: rackstrap.io/image/v1
name: oci
version: "1"
base: {oci: {tarball: base.tar}}
kernel: {version: `+kver+`}
outputs:
  netboot: {compression: none}
`, 0o644)
	res := build(t, dir, filepath.Join(dir, "out"))
	d, _ := img.Digest()
	if res.Manifest.Inputs[0].Kind != "oci" || res.Manifest.Inputs[0].Digest != d.String() {
		t.Errorf("inputs = %+v, want the image digest %s", res.Manifest.Inputs, d)
	}
	list := run(t, "cpio", "-t", "--quiet", "-F", res.Files["oci.initramfs.cpio"])
	if !strings.Contains(list, "etc/os-release") {
		t.Errorf("cpio -t:\n%s", list)
	}
}
