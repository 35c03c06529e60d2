// Package lab runs a SIMULATED rack on this machine's loopback: Redfish BMC
// simulators (bmc/redfishsim) and simulated hosts (test/fleet) that speak
// real DHCP through a relay, TFTP, HTTP and the agent API to a real
// controller. The controller drives them exactly as it drives hardware:
// bmclib over Redfish, its own DHCP/TFTP/HTTP services, agent check-ins.
// `rackstrap demo` and end-to-end tests use it.
package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/images/build"
	"github.com/rackstrap/rackstrap/images/spec"
	imgstore "github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	boothttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/tftp"
	"github.com/rackstrap/rackstrap/test/fleet"
)

// Fault makes one slot's machine misbehave.
type Fault string

const (
	// FaultGPUx8: one GPU trained at PCIe x8 (validation quarantines it).
	FaultGPUx8 Fault = "gpu-x8"
	// FaultImageCorrupt: the written image does not verify.
	FaultImageCorrupt Fault = "image-corrupt"
	// FaultNoPXE: the host never network-boots.
	FaultNoPXE Fault = "no-pxe"
	// FaultBMCDown: the BMC refuses every connection.
	FaultBMCDown Fault = "bmc-down"
)

// Config describes the simulated rack.
type Config struct {
	Rack      string
	Nodes     int
	Dir       string // artifacts and scratch files
	Faults    map[int]Fault
	BootDelay time.Duration // simulated firmware/kernel time per boot stage
	ImageSize int64         // bytes of the OS image the agents stream
	Desired   model.Desired
	// Password of every BMC (default "password"; user "admin").
	Password string
	Log      *slog.Logger
}

// Lab is a prepared simulated rack.
type Lab struct {
	cfg      Config
	BMCs     *redfishsim.Fleet
	rack     *fleet.Rack
	relay    netip.AddrPort
	bmcNet   netip.Prefix
	dhcpPort uint16
	tftpPort uint16
	httpPort uint16
	// Boot and Edge configure the controller to drive this rack.
	Boot *controller.BootConfig
	Edge *controller.EdgeConfig
	// Nodes are the rack's node records, for the store.
	Nodes []model.Node
}

// Prepare writes the artifacts, starts the BMC simulators and returns the
// controller configuration that drives them. Start the hosts with Start once
// the controller's DHCP server listens.
func Prepare(cfg Config) (*Lab, error) {
	if cfg.Rack == "" {
		cfg.Rack = "lab-r1"
	}
	if cfg.ImageSize <= 0 {
		cfg.ImageSize = 64 << 20
	}
	if cfg.Desired == "" {
		cfg.Desired = model.WantReady
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Password == "" {
		cfg.Password = "password"
	}
	l := &Lab{cfg: cfg}
	var err error
	if l.dhcpPort, err = freeUDP(); err != nil {
		return nil, err
	}
	if l.tftpPort, err = freeUDP(); err != nil {
		return nil, err
	}
	relayPort, err := freeUDP()
	if err != nil {
		return nil, err
	}
	if l.httpPort, err = freeTCP(); err != nil {
		return nil, err
	}
	// Each lab takes its own relay address, so two labs (two tests) can
	// run on one machine.
	relayAddr := netip.AddrFrom4([4]byte{127, 21 + byte(relayPort>>8)%64, byte(relayPort), 1})
	l.relay = netip.AddrPortFrom(relayAddr, relayPort)
	if err := writeArtifacts(cfg.Dir); err != nil {
		return nil, err
	}
	signed, err := signedOSImage(cfg.Dir+".images", cfg.ImageSize)
	if err != nil {
		return nil, err
	}

	var nodes []redfishsim.Node
	for slot := 1; slot <= cfg.Nodes; slot++ {
		n := redfishsim.SampleNode(slot)
		n.Username, n.Password = "admin", cfg.Password
		if cfg.Faults[slot] == FaultGPUx8 && len(n.Hardware.GPUs) > 4 {
			n.Hardware.GPUs[4].PCIeWidth = 8
		}
		nodes = append(nodes, n)
	}
	// The BMCs sit at the start of their own /24 (a "BMC network" to scan).
	l.bmcNet = netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 22 + byte(relayPort>>8)%64, byte(relayPort), 0}), 24)
	l.BMCs, err = redfishsim.Start(redfishsim.Config{First: l.bmcNet.Addr().Next()}, nodes...)
	if err != nil {
		return nil, fmt.Errorf("lab: start BMC simulators: %w", err)
	}
	for i, b := range l.BMCs.BMCs() {
		slot := i + 1
		if cfg.Faults[slot] == FaultBMCDown {
			b.SetFaults(redfishsim.Faults{Refuse: true})
		}
		l.Nodes = append(l.Nodes, model.Node{
			Name:     fmt.Sprintf("%s-n%02d", cfg.Rack, slot),
			Identity: model.Identity{BMC: b.Endpoint(), Rack: cfg.Rack, Slot: slot},
			Profile:  "hgx-h100-8gpu",
			Desired:  cfg.Desired,
		})
	}

	loop := netip.MustParseAddr("127.0.0.1")
	bootBase := fmt.Sprintf("http://127.0.0.1:%d", l.httpPort)
	var locations []dhcp.Location
	for slot := 1; slot <= cfg.Nodes; slot++ {
		locations = append(locations, fleet.Location(cfg.Rack, slot, relayAddr))
	}
	l.Boot = &controller.BootConfig{
		DHCP: dhcp.Config{
			Addr: loop, Port: l.dhcpPort, RelayPort: relayPort, ProxyPort: 0,
			Subnets: []dhcp.Subnet{{
				Prefix:     netip.PrefixFrom(relayAddr, 24).Masked(),
				Pools:      []dhcp.Range{{Start: hostAddr(relayAddr, 10), End: hostAddr(relayAddr, 250)}},
				NextServer: loop,
			}},
			Locations: locations,
			Boot:      dhcp.Boot{BIOS: "undionly.kpxe", UEFIx64: "ipxe.efi", ScriptURL: bootBase + "/ipxe?mac={mac}"},
		},
		TFTP:        tftp.Config{Addr: netip.AddrPortFrom(loop, l.tftpPort)},
		HTTP:        boothttp.Config{Addr: netip.AddrPortFrom(loop, l.httpPort)},
		BootBase:    bootBase,
		ArtifactDir: cfg.Dir,
		Kernel:      "vmlinuz",
		Initrd:      "initrd.img",
		Cmdline:     []string{"console=ttyS0"},
	}
	l.Edge = &controller.EdgeConfig{
		Login:       edge.Login{Username: "admin", Password: cfg.Password},
		SignedImage: signed,
	}
	return l, nil
}

// BMCNetwork is the prefix the rack's BMCs answer in, and their HTTPS port:
// what a technician would scan with 'rackstrap discover'.
func (l *Lab) BMCNetwork() (netip.Prefix, uint16) { return l.bmcNet, l.BMCs.Port() }

// TrustedKey is the public key file the lab's OS image is signed with.
func (l *Lab) TrustedKey() string { return l.Edge.SignedImage.StoreDir + ".keys/lab.pub" }

// Start attaches the simulated hosts: from now on a BMC power-on makes its
// host boot.
func (l *Lab) Start() error {
	var err error
	l.rack, err = fleet.NewRack(fleet.Config{
		DHCPServer: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l.dhcpPort),
		RelayAddr:  l.relay.Addr(), RelayPort: l.relay.Port(), TFTPPort: l.tftpPort,
		BootDelay: l.cfg.BootDelay, Log: l.cfg.Log,
	})
	if err != nil {
		return fmt.Errorf("lab: start the rack's relay: %w", err)
	}
	for i, b := range l.BMCs.BMCs() {
		slot := i + 1
		var f fleet.Fault
		switch l.cfg.Faults[slot] {
		case FaultImageCorrupt:
			f = fleet.FaultImageCorrupt
		case FaultNoPXE:
			f = fleet.FaultNoPXE
		}
		l.rack.Attach(b, fleet.HostOptions{Rack: l.cfg.Rack, Slot: slot, Fault: f})
	}
	return nil
}

// Hosts are the rack's simulated hosts (nil before Start).
func (l *Lab) Hosts() []*fleet.Host {
	if l.rack == nil {
		return nil
	}
	return l.rack.Hosts()
}

// Grants lists every DHCP lease the rack's hosts were given (nil before
// Start).
func (l *Lab) Grants() []fleet.LeaseGrant {
	if l.rack == nil {
		return nil
	}
	return l.rack.Grants()
}

// Stages counts hosts per boot stage (for progress displays).
func (l *Lab) Stages() map[fleet.Stage]int {
	if l.rack == nil {
		return nil
	}
	return l.rack.Stages()
}

// Close stops the hosts and the BMC simulators.
func (l *Lab) Close() error {
	var errs []error
	if l.rack != nil {
		errs = append(errs, l.rack.Close())
	}
	if l.BMCs != nil {
		errs = append(errs, l.BMCs.Close())
	}
	return errors.Join(errs...)
}

func freeUDP() (uint16, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("lab: pick a UDP port: %w", err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

func freeTCP() (uint16, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("lab: pick a TCP port: %w", err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// hostAddr is address host of a's /24.
func hostAddr(a netip.Addr, host byte) netip.Addr {
	b := a.As4()
	b[3] = host
	return netip.AddrFrom4(b)
}

// writeArtifacts puts the boot programs and the netboot kernel/initramfs in
// dir. Where Debian's ipxe package is installed, its real iPXE binaries are
// served; otherwise labelled stand-ins (the simulated hosts only download
// and hash them).
func writeArtifacts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: artifacts: %w", err)
	}
	for name, real := range map[string]string{"undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe", "ipxe.efi": "/usr/lib/ipxe/ipxe.efi"} {
		data, err := os.ReadFile(real)
		if err != nil {
			data = standIn("RACKSTRAP LAB STAND-IN FOR "+name, 96<<10)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("lab: artifacts: %w", err)
		}
	}
	if err := buildNetboot(dir); err != nil {
		return err
	}
	return nil
}

// signedOSImage puts the OS image in a signed image store, as a site
// imports a built image from a signed bundle: the controller refuses it
// unless the manifest verifies with a key it trusts.
func signedOSImage(storeDir string, size int64) (*controller.SignedImage, error) {
	src := storeDir + ".src"
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, fmt.Errorf("lab: OS image: %w", err)
	}
	defer os.RemoveAll(src)
	path := filepath.Join(src, "lab-os.raw")
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("lab: OS image: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(&counter{seed: []byte("RACKSTRAP LAB OS IMAGE")}, size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: OS image: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("lab: OS image: %w", err)
	}
	keyDir := storeDir + ".keys"
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: signing key: %w", err)
	}
	pub, err := imgstore.GenerateKey(filepath.Join(keyDir, "lab.key"), filepath.Join(keyDir, "lab.pub"))
	if err != nil {
		return nil, fmt.Errorf("lab: signing key: %w", err)
	}
	priv, err := imgstore.LoadPrivateKey(filepath.Join(keyDir, "lab.key"))
	if err != nil {
		return nil, fmt.Errorf("lab: signing key: %w", err)
	}
	st, err := imgstore.Open(storeDir)
	if err != nil {
		return nil, fmt.Errorf("lab: image store: %w", err)
	}
	spec := sha256.Sum256([]byte("lab-os 1.0.0"))
	m := &imgstore.Manifest{SchemaVersion: imgstore.ManifestVersion, Name: "lab-os", Version: "1.0.0",
		SpecDigest: "sha256:" + hex.EncodeToString(spec[:]), BuildTime: "2026-11-24T00:00:00Z", Builder: "rackstrap lab",
		Artifacts: []imgstore.Artifact{{Name: "lab-os.raw", Format: "raw", Size: size, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}}}
	if _, err := st.Import(m, map[string]string{"lab-os.raw": path}, priv); err != nil {
		return nil, fmt.Errorf("lab: import the OS image: %w", err)
	}
	return &controller.SignedImage{StoreDir: storeDir, Name: "lab-os", Version: "1.0.0", Trusted: []ed25519.PublicKey{pub}}, nil
}

// netbootSpec is the lab's netboot image: a small root built by the image
// builder (images/build) into a kernel and a zstd newc initramfs, exactly as
// a site builds its agent image. The kernel is a labelled stand-in (the
// simulated hosts only download and hash it).
const netbootSpec = `api_version: rackstrap.io/image/v1
name: lab-netboot
version: 1.0.0
source_date_epoch: 1764000000
base:
  dir: root
kernel:
  version: 6.1.0-lab
  image: /boot/vmlinuz-6.1.0-lab
  cmdline: console=ttyS0
outputs:
  netboot:
    compression: zstd
`

func buildNetboot(dir string) error {
	work := filepath.Join(dir, ".netboot")
	files := map[string][]byte{
		"root/etc/os-release":            []byte("NAME=\"Rackstrap lab netboot\"\nID=rackstrap-lab\n"),
		"root/etc/hostname":              []byte("rackstrap-agent\n"),
		"root/boot/vmlinuz-6.1.0-lab":    standIn("RACKSTRAP LAB STAND-IN KERNEL 6.1.0-lab", 4<<20),
		"root/usr/share/rackstrap/NOTES": []byte("This initramfs was built by rackstrap's image builder for the lab.\n"),
	}
	for name, data := range files {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("lab: netboot image: %w", err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("lab: netboot image: %w", err)
		}
	}
	s, err := spec.Parse([]byte(netbootSpec), filepath.Join(work, "netboot.yaml"))
	if err != nil {
		return fmt.Errorf("lab: netboot spec: %w", err)
	}
	s.Dir = work
	res, err := build.Build(context.Background(), s, build.Options{OutDir: filepath.Join(work, "out")})
	if err != nil {
		return fmt.Errorf("lab: build the netboot image: %w", err)
	}
	for artifact, name := range map[string]string{"lab-netboot.vmlinuz": "vmlinuz", "lab-netboot.initramfs.cpio.zst": "initrd.img"} {
		src, ok := res.Files[artifact]
		if !ok {
			return fmt.Errorf("lab: the netboot build made no %s (made %v)", artifact, res.Files)
		}
		if err := os.Rename(src, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("lab: netboot image: %w", err)
		}
	}
	return os.RemoveAll(work)
}

// standIn is deterministic filler with a label at its start.
func standIn(label string, size int64) []byte {
	var b bytes.Buffer
	b.WriteString(label + "\n")
	io.Copy(&b, io.LimitReader(&counter{seed: []byte(label)}, size-int64(b.Len())))
	return b.Bytes()
}

// counter is a deterministic byte stream: sha256 of seed||n for n = 0, 1, …
type counter struct {
	seed []byte
	n    uint64
	buf  []byte
}

func (c *counter) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if len(c.buf) == 0 {
			h := sha256.Sum256(append(append([]byte{}, c.seed...), byte(c.n), byte(c.n>>8), byte(c.n>>16), byte(c.n>>24)))
			c.buf = h[:]
			c.n++
		}
		k := copy(p, c.buf)
		c.buf, p, total = c.buf[k:], p[k:], total+k
	}
	return total, nil
}
