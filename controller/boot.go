package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller/edge"
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
	// Image is the OS image file under Boot.ArtifactDir.
	Image string
	UEFI  bool
	// ProfileFiles are site profiles added to the bundled ones.
	ProfileFiles []string
	// AgentServer is the API URL as agents reach it (default: the API's
	// listen address).
	AgentServer string
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

func fixedPort(a netip.AddrPort) bool { return a.Port() != 0 }
