package controller

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller/edge"
	imgstore "github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	boothttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/tftp"
)

// BootConfig runs Rackstrap's own network boot services beside the API.
type BootConfig struct {
	DHCP dhcp.Config
	// NoDHCP leaves DHCP to another server (relay it to us, or use proxy
	// mode in DHCP.Mode).
	NoDHCP bool
	TFTP   tftp.Config
	HTTP   boothttp.Config
	// BootBase is the boot HTTP server's URL as nodes reach it
	// (http://10.0.0.1:8081); it must name a fixed port.
	BootBase string
	// ArtifactDir holds iPXE binaries, kernels, initramfs and images.
	ArtifactDir string
	// Kernel and Initrd are the netboot agent's files under ArtifactDir.
	Kernel, Initrd string
	Cmdline        []string
}

// EdgeConfig drives real machines (or the lab's simulated ones over the
// same protocols).
type EdgeConfig struct {
	// Login is the BMC login of nodes that have none stored (stored logins
	// come from 'rackstrap discover --enroll' or the API, sealed at rest).
	Login edge.Login
	// Slurm, when set, receives handed-off nodes (nil: hand-off is refused).
	Slurm *slurm.Config
	// Image is the OS image file under Boot.ArtifactDir (unsigned: for
	// trials only); SignedImage, when set, replaces it.
	Image string
	// SignedImage is an image from the signed image store: the controller
	// refuses it unless its manifest is signed by a trusted key.
	SignedImage *SignedImage
	UEFI        bool
	// ProfileFiles are site profiles added to the bundled ones.
	ProfileFiles []string
	// AgentServer is the API URL as agents reach it (default: the API's
	// listen address).
	AgentServer string
}

// SignedImage names an image in an images/store directory.
type SignedImage struct {
	StoreDir      string
	Name, Version string
	Format        string // artifact format, default raw
	Trusted       []ed25519.PublicKey
}

// verifiedImage checks the image's signature against the trusted keys and
// places its verified bytes in the artifact dir, for the boot server.
func verifiedImage(si SignedImage, artifactDir, base string) (edge.Image, error) {
	if len(si.Trusted) == 0 {
		return edge.Image{}, errors.New("signed image: no trusted key given: pass --trusted-key with the public key the images are signed with")
	}
	st, err := imgstore.Open(si.StoreDir)
	if err != nil {
		return edge.Image{}, err
	}
	m, err := st.Manifest(si.Name, si.Version, si.Trusted...)
	if err != nil {
		return edge.Image{}, fmt.Errorf("refusing image %s:%s: %w; sign it with 'rackstrap image sign' using a key this controller trusts (--trusted-key)", si.Name, si.Version, err)
	}
	format := si.Format
	if format == "" {
		format = "raw"
	}
	a, ok := m.Artifact(format)
	if !ok {
		return edge.Image{}, fmt.Errorf("image %s:%s has no %s artifact", si.Name, si.Version, format)
	}
	digest := strings.TrimPrefix(a.Digest, "sha256:")
	dst := filepath.Join(artifactDir, a.Name)
	if d, n, err := fileDigest(dst); err != nil || d != digest || n != a.Size {
		// Export through the store's verifying reader: bytes that do not
		// match the signed digest never reach the boot server.
		r, err := st.OpenArtifact(a)
		if err != nil {
			return edge.Image{}, fmt.Errorf("image %s:%s: %w", si.Name, si.Version, err)
		}
		defer r.Close()
		tmp := dst + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return edge.Image{}, err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			os.Remove(tmp)
			return edge.Image{}, fmt.Errorf("image %s:%s: %w", si.Name, si.Version, err)
		}
		if err := f.Close(); err != nil {
			return edge.Image{}, err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return edge.Image{}, err
		}
	}
	return edge.Image{URL: base + "/" + a.Name, SHA256: digest, Size: a.Size}, nil
}

func fileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// describeImage hashes the image the agents will write.
func describeImage(dir, name, base string) (edge.Image, error) {
	if name == "" {
		return edge.Image{}, nil
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return edge.Image{}, fmt.Errorf("image %s: %w; put it in the artifact dir (--artifacts)", name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return edge.Image{}, fmt.Errorf("image %s: %w", name, err)
	}
	return edge.Image{URL: base + "/" + name, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}
