package bundle

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RoundTripInput is what a demo or a test built and wants served from an
// imported bundle, as a disconnected site would serve it.
type RoundTripInput struct {
	// BootDir's plain files (not hidden ones) are packed as iPXE binaries,
	// kernels, initramfs or other boot files, by name.
	BootDir string
	// ImageStore and Images: signed images to pack.
	ImageStore string
	Images     []string
	// SigningKey is the private key file that signed the images; the
	// exporting keyring adopts it, so one key signs images and the bundle.
	SigningKey string
	// WorkDir receives the exporter's keyring (factory-keys), the bundle
	// (bundle.tar.zst), the site's trust store (site-keys) and the site's
	// artifact store (artifacts).
	WorkDir string
}

// RoundTripOutput is the site's side after the import.
type RoundTripOutput struct {
	Layout Layout
	Bundle string
	Keys   *Keyring
	// Trusted are the site's trusted keys (for controller.SignedImage.Trusted).
	Trusted []ed25519.PublicKey
	Result  *Result
}

// RoundTrip exports in's artifacts into a signed, compressed bundle and
// imports it into a fresh artifact store whose trust store holds only the
// signer's public key. Serve from out.Layout.BootDir() and
// out.Layout.ImageStore() with out.Trusted.
func RoundTrip(ctx context.Context, in RoundTripInput) (*RoundTripOutput, error) {
	factory, err := OpenKeyring(filepath.Join(in.WorkDir, "factory-keys"))
	if err != nil {
		return nil, err
	}
	info, err := factory.Init(in.SigningKey)
	if err != nil {
		return nil, err
	}
	priv, rots, err := factory.Signer()
	if err != nil {
		return nil, err
	}
	var files []Source
	ents, err := os.ReadDir(in.BootDir)
	if err != nil {
		return nil, fmt.Errorf("bundle: boot files: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		files = append(files, Source{Kind: GuessBootKind(e.Name()), File: filepath.Join(in.BootDir, e.Name())})
	}
	out := &RoundTripOutput{Layout: Layout{filepath.Join(in.WorkDir, "artifacts")}, Bundle: filepath.Join(in.WorkDir, "bundle.tar.zst")}
	if _, err := ExportFile(ctx, out.Bundle, ExportOptions{Name: "demo", Created: time.Now(), Files: files,
		ImageStore: in.ImageStore, Images: in.Images, Signer: priv, Rotations: rots, Compress: true}); err != nil {
		return nil, err
	}
	if out.Keys, err = OpenKeyring(filepath.Join(in.WorkDir, "site-keys")); err != nil {
		return nil, err
	}
	pub, err := factory.publicKey(info.ID)
	if err != nil {
		return nil, err
	}
	if _, err := out.Keys.Trust(pub); err != nil {
		return nil, err
	}
	if out.Result, err = ImportFile(ctx, out.Bundle, ImportOptions{Dir: out.Layout.Dir, Keys: out.Keys}); err != nil {
		return nil, err
	}
	if out.Trusted, err = out.Keys.Trusted(); err != nil {
		return nil, err
	}
	return out, nil
}

// GuessBootKind tells a boot file's kind from its name.
func GuessBootKind(name string) Kind {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".kpxe") || strings.HasSuffix(n, ".efi") || strings.HasSuffix(n, ".pxe") || strings.HasSuffix(n, ".ipxe"):
		return KindIPXE
	case strings.HasPrefix(n, "vmlinuz") || strings.HasPrefix(n, "bzimage") || strings.Contains(n, "kernel") || strings.HasSuffix(n, ".vmlinuz"):
		return KindKernel
	case strings.HasPrefix(n, "initrd") || strings.HasPrefix(n, "initramfs") || strings.Contains(n, ".cpio"):
		return KindInitramfs
	}
	return KindFile
}
