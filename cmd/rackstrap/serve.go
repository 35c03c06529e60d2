package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	imgstore "github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// serveOption is an optional controller feature's flags, declared from the
// feature's own file (serve_<feature>.go) in an init with addServeOption,
// so features never edit this file. bind adds the flags to one command
// tree's flag set (serve and demo each have one; tests build many at once)
// and returns what turns that tree's flag values into the
// controller.Feature they ask for, or nil when it is off. Flag values live
// in variables bind makes, never in package variables: parallel trees
// would share them.
type serveOption struct {
	bind func(fl *pflag.FlagSet) func() (controller.Feature, error)
}

var serveOptions []serveOption

func addServeOption(o serveOption) { serveOptions = append(serveOptions, o) }

// serveFlags are shared by serve and demo.
type serveFlags struct {
	dataDir, database, apiListen string
	logFormat, logLevel          string
	workers, rackLimit, attempts int
	maxInFlight                  int
	simulate                     int
	simRack, simDesired          string
	simBoot, simImage            time.Duration
	simFaults                    []string
	simChanged                   bool // --simulate given, even as 0

	// Real machines.
	artifacts, kernel, initrd, image string
	kernelCmdline                    []string
	bootListen, bootURL, tftpListen  string
	agentURL                         string
	bmcUser, bmcPasswordFile         string
	uefi, noDHCP                     bool
	dhcpListen, dhcpInterface        string
	dhcpSubnet, dhcpRange            string
	dhcpRouter                       string
	dhcpRelayPort                    uint16
	profileFiles                     []string
	slurmConf, slurmPartition        string
	imageStore                       string
	trustedKeys                      []string

	// features build the optional features from this tree's flags.
	features []func() (controller.Feature, error)
}

func (f *serveFlags) register(cmd *cobra.Command, simDefault int) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/rackstrap", "`DIR` for the embedded SQLite store and local state")
	fl.StringVar(&f.database, "database", "", "PostgreSQL `URL` (postgres://user@host:port/db) instead of SQLite (several controllers may share it: give each a --controller-id)")
	fl.StringVar(&f.apiListen, "api-listen", "127.0.0.1:8080", "`ADDR` (host:port) of the REST API, /metrics and /healthz")
	fl.StringVar(&f.logFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.IntVar(&f.workers, "workers", 64, "lifecycle steps running at once, all nodes together")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 0, "nodes on their way to Ready at once (powered, booting, imaging); the rest wait, the furthest along first (0: 16 per worker)")
	fl.IntVar(&f.rackLimit, "rack-limit", 8, "BMC steps running at once per rack (image streams: --rack-image-streams; power-on spacing: --power-on-stagger)")
	fl.IntVar(&f.attempts, "max-attempts", 3, "attempts of a step before its node goes to Failed")
	fl.IntVar(&f.simulate, "simulate", simDefault, "drive `N` SIMULATED machines (the simulated edge) in one rack, for trials and tests")
	fl.StringVar(&f.simRack, "simulate-rack", "sim-r1", "rack name of the simulated machines")
	fl.StringVar(&f.simDesired, "simulate-desired", "ready", "what the simulated machines are provisioned to: ready or handed-off")
	fl.DurationVar(&f.simBoot, "simulate-boot-time", 300*time.Millisecond, "simulated time from power-on to agent check-in")
	fl.DurationVar(&f.simImage, "simulate-image-time", 500*time.Millisecond, "simulated time to stream an image")
	fl.StringSliceVar(&f.simFaults, "simulate-fault", nil, "make a simulated node misbehave: NODE=FAULT, FAULT one of bmc-unreachable, flaky-bmc, no-pxe, bad-gpu, image-corrupt (repeatable)")

	fl.StringVar(&f.artifacts, "artifacts", "", "real machines: `DIR` of boot programs (undionly.kpxe, ipxe.efi), netboot kernel/initramfs and OS images")
	fl.StringVar(&f.kernel, "kernel", "vmlinuz", "real machines: netboot kernel under --artifacts")
	fl.StringVar(&f.initrd, "initrd", "initrd.img", "real machines: netboot initramfs (with rackstrap-agent) under --artifacts")
	fl.StringSliceVar(&f.kernelCmdline, "kernel-cmdline", nil, "real machines: extra netboot kernel `PARAMS`, e.g. console=ttyS0,115200 (repeat or comma-separate)")
	fl.StringVar(&f.image, "image", "", "real machines: the OS image the agent writes: NAME:VERSION in --image-store (signed), or a file under --artifacts (unsigned: trials only)")
	fl.StringVar(&f.imageStore, "image-store", "", "real machines: signed image store `DIR` ('rackstrap image import'); images not signed by a --trusted-key are refused")
	fl.StringSliceVar(&f.trustedKeys, "trusted-key", nil, "real machines: public key `FILE` whose image signatures are trusted (repeatable)")
	fl.StringVar(&f.bootListen, "boot-listen", "0.0.0.0:8081", "real machines: `ADDR` of the HTTP boot server (scripts, kernels, images)")
	fl.StringVar(&f.bootURL, "boot-url", "", "real machines: the HTTP boot server's `URL` as nodes reach it, e.g. http://10.0.0.1:8081")
	fl.StringVar(&f.tftpListen, "tftp-listen", "0.0.0.0:69", "real machines: `ADDR` of the TFTP server")
	fl.StringVar(&f.agentURL, "agent-url", "", "real machines: the API's `URL` as agents reach it (default: derived from --boot-url's host and --api-listen's port)")
	fl.StringVar(&f.bmcUser, "bmc-username", "admin", "real machines: BMC user name")
	fl.StringVar(&f.bmcPasswordFile, "bmc-password-file", "", "real machines: `FILE` holding the BMC password (never on the command line)")
	fl.BoolVar(&f.uefi, "uefi", true, "real machines: set UEFI (not legacy BIOS) boot overrides")
	fl.BoolVar(&f.noDHCP, "no-dhcp", false, "real machines: do not serve DHCP (another server relays or points to us)")
	fl.StringVar(&f.dhcpListen, "dhcp-listen", "0.0.0.0:67", "real machines: `ADDR` of the DHCP server")
	fl.StringVar(&f.dhcpInterface, "dhcp-interface", "", "real machines: serve DHCP only on this interface")
	fl.StringVar(&f.dhcpSubnet, "dhcp-subnet", "", "real machines: provisioning `PREFIX`, e.g. 10.0.0.0/24")
	fl.StringVar(&f.dhcpRange, "dhcp-range", "", "real machines: leased addresses `FIRST-LAST`, e.g. 10.0.0.100-10.0.0.200")
	fl.StringVar(&f.dhcpRouter, "dhcp-router", "", "real machines: default gateway handed out (option 3)")
	fl.Uint16Var(&f.dhcpRelayPort, "dhcp-relay-port", 67, "real machines: UDP port replies to DHCP relays go to")
	fl.StringVar(&f.slurmConf, "slurm-conf", "", "hand nodes off to the Slurm cluster of this slurm.conf `FILE` (scontrol on PATH; dynamic nodes)")
	fl.StringVar(&f.slurmPartition, "slurm-partition", "", "Slurm partition handed-off nodes join (prefer Nodes=ALL or a NodeSet by feature)")
	fl.StringSliceVar(&f.profileFiles, "profile", nil, "site hardware profile `FILE`s added to the bundled ones (repeatable)")
	f.features = nil
	for _, o := range serveOptions {
		f.features = append(f.features, o.bind(fl))
	}
}

func (f *serveFlags) config() (controller.Config, error) {
	cfg := controller.Config{DataDir: f.dataDir, Database: f.database, APIListen: f.apiListen}
	cfg.Engine.Workers, cfg.Engine.RackLimit, cfg.Engine.MaxAttempts = f.workers, f.rackLimit, f.attempts
	cfg.Engine.MaxInFlight = f.maxInFlight
	if f.simulate > 0 || f.simChanged {
		desired, err := model.ParseDesired(f.simDesired)
		if err != nil {
			return cfg, fmt.Errorf("--simulate-desired: %w", err)
		}
		faults := map[string]simedge.Fault{}
		for _, kv := range f.simFaults {
			node, fault, ok := strings.Cut(kv, "=")
			switch simedge.Fault(fault) {
			case simedge.FaultBMCUnreachable, simedge.FaultFlakyBMC, simedge.FaultNoPXE, simedge.FaultBadGPU, simedge.FaultImageCorrupt:
			default:
				ok = false
			}
			if !ok {
				return cfg, fmt.Errorf("--simulate-fault %q: use NODE=FAULT with FAULT one of bmc-unreachable, flaky-bmc, no-pxe, bad-gpu, image-corrupt", kv)
			}
			faults[node] = simedge.Fault(fault)
		}
		cfg.Simulate = &controller.SimConfig{Nodes: f.simulate, Rack: f.simRack, Desired: desired,
			Edge: simedge.Config{BootTime: f.simBoot, ImageTime: f.simImage, ReplyLatency: 150 * time.Millisecond, Faults: faults}}
		// Simulated waits fail fast: a silent simulated node is a fault, not a slow boot.
		cfg.Engine.Deadlines = map[string]time.Duration{"wait-netboot-checkin": 20*f.simBoot + 5*time.Second, "wait-firstboot-checkin": 20*f.simBoot + 5*time.Second}
		cfg.Engine.BackoffBase = 200 * time.Millisecond
		cfg.Engine.Poll = 200 * time.Millisecond
	}
	if cfg.Simulate == nil && f.artifacts != "" {
		if err := f.realConfig(&cfg); err != nil {
			return cfg, err
		}
	}
	for _, feature := range f.features {
		feat, err := feature()
		if err != nil {
			return cfg, err
		}
		if feat != nil {
			cfg.Features = append(cfg.Features, feat)
		}
	}
	return cfg, nil
}

// realConfig maps the real-machine flags onto the edge and boot services.
func (f *serveFlags) realConfig(cfg *controller.Config) error {
	if f.bootURL == "" {
		return errors.New("--boot-url is required with --artifacts: the URL nodes use to reach the HTTP boot server, e.g. http://10.0.0.1:8081")
	}
	if f.bmcPasswordFile == "" {
		return errors.New("--bmc-password-file is required with --artifacts: a file holding the BMC password (kept off the command line)")
	}
	pw, err := os.ReadFile(f.bmcPasswordFile)
	if err != nil {
		return fmt.Errorf("--bmc-password-file: %w", err)
	}
	password := strings.TrimRight(string(pw), "\r\n")
	user := f.bmcUser
	boot := &controller.BootConfig{BootBase: f.bootURL, ArtifactDir: f.artifacts, Kernel: f.kernel, Initrd: f.initrd, NoDHCP: f.noDHCP, Cmdline: f.kernelCmdline}
	if boot.HTTP.Addr, err = netip.ParseAddrPort(f.bootListen); err != nil {
		return fmt.Errorf("--boot-listen %q: %w", f.bootListen, err)
	}
	if boot.TFTP.Addr, err = netip.ParseAddrPort(f.tftpListen); err != nil {
		return fmt.Errorf("--tftp-listen %q: %w", f.tftpListen, err)
	}
	if !f.noDHCP {
		d, err := f.dhcpConfig()
		if err != nil {
			return err
		}
		boot.DHCP = d
	}
	agent := f.agentURL
	if agent == "" {
		u, err := url.Parse(f.bootURL)
		if err != nil {
			return fmt.Errorf("--boot-url %q: %w", f.bootURL, err)
		}
		_, port, err := net.SplitHostPort(f.apiListen)
		if err != nil {
			return fmt.Errorf("--api-listen %q: %w", f.apiListen, err)
		}
		agent = "http://" + net.JoinHostPort(u.Hostname(), port)
	}
	cfg.Boot = boot
	var sl *slurm.Config
	if f.slurmConf != "" {
		sl = &slurm.Config{Conf: f.slurmConf, Partition: f.slurmPartition, Features: []string{"rackstrap"}}
	}
	var signed *controller.SignedImage
	if f.imageStore != "" {
		ref, err := imgstore.ParseRef(f.image)
		if err != nil {
			return fmt.Errorf("--image %q: %w; with --image-store give NAME:VERSION ('rackstrap image list' shows them)", f.image, err)
		}
		signed = &controller.SignedImage{StoreDir: f.imageStore, Name: ref.Name, Version: ref.Version}
		for _, k := range f.trustedKeys {
			pub, err := imgstore.LoadPublicKey(k)
			if err != nil {
				return fmt.Errorf("--trusted-key %s: %w", k, err)
			}
			signed.Trusted = append(signed.Trusted, pub)
		}
	}
	cfg.Edge = &controller.EdgeConfig{
		SignedImage:  signed,
		Slurm:        sl,
		Login:        edge.Login{Username: user, Password: password},
		Image:        f.image,
		UEFI:         f.uefi,
		ProfileFiles: f.profileFiles,
		AgentServer:  agent,
	}
	return nil
}

func (f *serveFlags) dhcpConfig() (dhcp.Config, error) {
	var d dhcp.Config
	ap, err := netip.ParseAddrPort(f.dhcpListen)
	if err != nil {
		return d, fmt.Errorf("--dhcp-listen %q: %w", f.dhcpListen, err)
	}
	d.Addr, d.Port, d.Interface, d.RelayPort = ap.Addr(), ap.Port(), f.dhcpInterface, f.dhcpRelayPort
	prefix, err := netip.ParsePrefix(f.dhcpSubnet)
	if err != nil {
		return d, fmt.Errorf("--dhcp-subnet %q: %w; give the provisioning network, e.g. 10.0.0.0/24 (or --no-dhcp)", f.dhcpSubnet, err)
	}
	first, last, ok := strings.Cut(f.dhcpRange, "-")
	lo, err1 := netip.ParseAddr(strings.TrimSpace(first))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(last))
	if !ok || err1 != nil || err2 != nil {
		return d, fmt.Errorf("--dhcp-range %q: use FIRST-LAST, e.g. 10.0.0.100-10.0.0.200", f.dhcpRange)
	}
	sub := dhcp.Subnet{Prefix: prefix, Pools: []dhcp.Range{{Start: lo, End: hi}}}
	if f.dhcpRouter != "" {
		r, err := netip.ParseAddr(f.dhcpRouter)
		if err != nil {
			return d, fmt.Errorf("--dhcp-router %q: %w", f.dhcpRouter, err)
		}
		sub.Routers = []netip.Addr{r}
	}
	d.Subnets = []dhcp.Subnet{sub}
	base := strings.TrimSuffix(f.bootURL, "/")
	d.Boot = dhcp.Boot{BIOS: "undionly.kpxe", UEFIx64: "ipxe.efi", ScriptURL: base + "/ipxe?mac={mac}"}
	return d, nil
}

func newServeCmd(g *globals) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: lifecycle engine, store and REST API",
		Long: `Run the Rackstrap controller until interrupted.

The store is SQLite under --data-dir unless --database names a PostgreSQL.
A controller killed at any moment resumes where it stopped: every side effect
was recorded before it happened and is replayed with the same idempotency key.

Machines are driven either
  - for real (--artifacts …): BMCs over Redfish/IPMI with the credentials of
    --bmc-username/--bmc-password-file, network boot from Rackstrap's own
    DHCP (--dhcp-*), TFTP and HTTP servers, the agent checking in with a
    one-time token; nodes come from 'rackstrap apply rack.yaml'; or
  - simulated (--simulate N): N in-memory machines (--simulate 0: only those
    declared with 'rackstrap apply'), for trials and tests.`,
		Example: `  rackstrap serve --data-dir /var/lib/rackstrap --artifacts /srv/rackstrap \
      --image-store /srv/rackstrap/images --image gpu-node:2026.11.1 --trusted-key /etc/rackstrap/signing.pub \
      --boot-url http://10.0.0.1:8081 --bmc-password-file /etc/rackstrap/bmc.pass \
      --dhcp-subnet 10.0.0.0/24 --dhcp-range 10.0.0.100-10.0.0.200 --dhcp-interface eth1
  rackstrap serve --data-dir /tmp/rs --simulate 8
  rackstrap serve --database postgres://rackstrap@db:5432/rackstrap --simulate 50 --api-listen 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			if ran, err := runServeRole(cmd, g, log); ran {
				return err // another role than the controller (a rack cache)
			}
			f.simChanged = cmd.Flags().Changed("simulate")
			cfg, err := f.config()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return controller.Run(ctx, cfg, log, nil)
		},
	}
	f.register(cmd, 0)
	return cmd
}

// contextOrBackground lets tests call RunE without Execute.
func contextOrBackground(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
