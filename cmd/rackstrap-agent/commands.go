package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/agenttls"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/collect"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/firstboot"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpu"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/lldp"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/tasks"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// deps are what the commands reach outside the process through; tests
// replace them.
type deps struct {
	probeGPUs  func() gpu.Result
	minBackoff time.Duration
	maxBackoff time.Duration
	// taskMinPoll and taskMaxPoll bound the task poll interval (defaults 1s
	// and 10s); retryWait is the first wait before an image download is
	// resumed (default 1s).
	taskMinPoll, taskMaxPoll time.Duration
	retryWait                time.Duration
}

func defaultDeps() *deps {
	return &deps{probeGPUs: gpu.Probe}
}

func newRootCmd(d *deps) *cobra.Command {
	root := &cobra.Command{
		Use:           "rackstrap-agent",
		Short:         "Rackstrap's in-band agent: hardware inventory, check-in, imaging and burn-in",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInventoryCmd(d), newCheckinCmd(d), newRunCmd(d), newFirstbootCmd(d), newWriteImageCmd(), newVersionCmd())
	return root
}

func agentVersion() string { return "rackstrap-agent " + version }

// gather collects the inventory and the GPUs, listens for LLDP neighbours
// for up to lldpWait (0: not at all), and returns the collectors' notes.
func gather(ctx context.Context, d *deps, sysRoot string, lldpWait time.Duration) (inventory.Inventory, []string) {
	res := collect.Collect(ctx, collect.Options{Root: sysRoot, Collector: agentVersion()})
	inv, notes := res.Inventory, res.Notes
	if lldpWait > 0 {
		notes = append(notes, listenLLDP(ctx, inv.NICs, lldpWait)...)
	}
	g := d.probeGPUs()
	g.Apply(&inv)
	for _, n := range g.Notes {
		notes = append(notes, "gpu: "+n)
	}
	onBus := 0
	slots := map[string]string{}
	for _, p := range inv.PCI {
		if p.VendorID == "10de" && strings.HasPrefix(p.Class, "03") {
			onBus++
			slots[p.Address] = p.Slot
		}
	}
	if g.Unavailable != "" && onBus > 0 {
		inv.GPUDriverError = fmt.Sprintf("%s; %d NVIDIA GPUs are on the PCI bus", g.Unavailable, onBus)
	}
	for i := range inv.GPUs {
		if s := slots[inv.GPUs[i].PCIAddress]; s != "" && inv.GPUs[i].Slot == "" {
			inv.GPUs[i].Slot = s
		}
	}
	if g.Unavailable != "" {
		notes = append(notes, "gpu: "+inv.GPUDriverError)
	}
	return inv, notes
}

// listenLLDP listens on every NIC whose link is up, all at once, for up to
// wait, and sets each one's neighbour.
func listenLLDP(ctx context.Context, nics []inventory.NIC, wait time.Duration) []string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var (
		mu    sync.Mutex
		notes []string
		wg    sync.WaitGroup
	)
	for i := range nics {
		if !nics[i].LinkUp {
			continue
		}
		wg.Go(func() {
			n, err := lldp.Listen(ctx, nics[i].Name)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				nics[i].LLDP = n
			case errors.Is(err, context.DeadlineExceeded):
				notes = append(notes, fmt.Sprintf("lldp: %s: no neighbour within %v", nics[i].Name, wait))
			default:
				notes = append(notes, fmt.Sprintf("lldp: %s: %v", nics[i].Name, err))
			}
		})
	}
	wg.Wait()
	sort.Strings(notes)
	return notes
}

func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func newInventoryCmd(d *deps) *cobra.Command {
	var sysRoot, output string
	var lldpWait time.Duration
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Print this host's hardware inventory (JSON by default); notes go to stderr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "json" && output != "text" {
				return fmt.Errorf("unknown output %q; use json or text", output)
			}
			inv, notes := gather(cmd.Context(), d, sysRoot, lldpWait)
			printNotes(cmd.ErrOrStderr(), notes)
			if output == "text" {
				return printText(cmd.OutOrStdout(), &inv)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(inv)
		},
	}
	cmd.Flags().StringVar(&sysRoot, "sys-root", "/", "root directory below which /sys and /proc are read (a fixture tree in tests)")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json or text")
	cmd.Flags().DurationVar(&lldpWait, "lldp-wait", 0, "listen this long for LLDP neighbours on the NICs that are up (switches send every ~30s; 0: off)")
	return cmd
}

// printText is a technician's summary.
func printText(w io.Writer, inv *inventory.Inventory) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "system\t%s %s\tserial %s\tuuid %s\n", inv.System.Vendor, inv.System.Model, inv.System.Serial, inv.System.UUID)
	fmt.Fprintf(tw, "bios\t%s %s\t%s\n", inv.BIOS.Vendor, inv.BIOS.Version, inv.BIOS.Date)
	for _, c := range inv.CPUs {
		fmt.Fprintf(tw, "cpu %s\t%s\t%d cores, %d threads\n", c.Socket, c.Model, c.Cores, c.Threads)
	}
	fmt.Fprintf(tw, "memory\t%d GiB\t%d DIMMs populated\n", inv.Memory.TotalBytes>>30, len(inv.Memory.PopulatedDIMMs()))
	for _, n := range inv.NICs {
		fmt.Fprintf(tw, "nic %s\t%s\t%s %d Mb/s\n", n.Name, n.MAC, n.Driver, n.SpeedMbps)
	}
	for _, b := range inv.Disks {
		fmt.Fprintf(tw, "disk %s\t%s %s\t%d GB\n", b.Name, b.Model, b.Serial, b.SizeBytes/1e9)
	}
	for _, g := range inv.GPUs {
		fmt.Fprintf(tw, "gpu %d\t%s %s\tPCIe gen %d x%d, NVLink %d/%d, ECC %s\n", g.Index, g.Name, g.PCIAddress, g.PCIeGen, g.PCIeWidth, g.NVLinkUp, g.NVLinkTotal, g.ECC)
	}
	if inv.GPUDriverError != "" {
		fmt.Fprintf(tw, "gpus\t%s\n", inv.GPUDriverError)
	}
	fmt.Fprintf(tw, "pci\t%d functions\n", len(inv.PCI))
	return tw.Flush()
}

// checkinFlags are the flags checkin and run share.
type checkinFlags struct {
	lldpWait time.Duration
	sysRoot  string
	deadline time.Duration
	timeout  time.Duration
}

func (f *checkinFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.sysRoot, "sys-root", "/", "root directory below which /sys and /proc are read")
	cmd.Flags().DurationVar(&f.deadline, "deadline", 30*time.Minute, "give up retrying after this long (0: one attempt)")
	cmd.Flags().DurationVar(&f.timeout, "request-timeout", 30*time.Second, "bound on one attempt")
	cmd.Flags().DurationVar(&f.lldpWait, "lldp-wait", 0, "listen this long for LLDP neighbours before checking in (0: off)")
}

// doCheckin collects and checks in, retrying until accepted, a final
// refusal, or the deadline.
func doCheckin(ctx context.Context, d *deps, f *checkinFlags, cfg checkin.Config, phase checkin.Phase, stdout, stderr io.Writer, extra ...string) (checkin.Response, *checkin.Client, error) {
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	cfg.RequestTimeout = f.timeout
	cfg.MinBackoff, cfg.MaxBackoff = d.minBackoff, d.maxBackoff
	client, err := checkin.New(cfg)
	if err != nil {
		return checkin.Response{}, nil, err
	}
	inv, notes := gather(ctx, d, f.sysRoot, f.lldpWait)
	notes = append(notes, extra...)
	printNotes(stderr, notes)
	req := checkin.Request{Phase: phase, AgentVersion: agentVersion(), Inventory: inv, Notes: notes}
	var resp checkin.Response
	if f.deadline <= 0 {
		resp, err = client.CheckIn(ctx, req)
	} else {
		ctx, cancel := context.WithTimeout(ctx, f.deadline)
		defer cancel()
		resp, _, err = client.Run(ctx, req)
	}
	if err != nil {
		return resp, nil, err
	}
	fmt.Fprintf(stdout, "checked in as node %s (%s, %s)\n", resp.Node, phase, client.Endpoint())
	return resp, client, nil
}

func newCheckinCmd(d *deps) *cobra.Command {
	var f checkinFlags
	var server, token, tokenFile, phase, ca string
	cmd := &cobra.Command{
		Use:   "checkin",
		Short: "Collect the inventory and check in with the controller",
		Long: "Collect the inventory and POST it to SERVER" + checkin.Path + " with the node's one-time token.\n" +
			"The token is read from --token-file, then $RACKSTRAP_TOKEN, then --token (visible to 'ps': avoid).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ph, err := checkin.ParsePhase(phase)
			if err != nil {
				return fmt.Errorf("--phase: %w", err)
			}
			tok := token
			if v := os.Getenv("RACKSTRAP_TOKEN"); v != "" {
				tok = v
			}
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				tok = strings.TrimSpace(string(b))
			}
			cfg := checkin.Config{Server: server, Token: tok, CAFile: ca}
			_, _, err = doCheckin(cmd.Context(), d, &f, cfg, ph, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&server, "server", "", "controller base URL, e.g. https://10.0.0.1:8443 (required)")
	cmd.Flags().StringVar(&token, "token", "", "one-time enrolment token")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the one-time enrolment token")
	cmd.Flags().StringVar(&phase, "phase", "", "netboot or firstboot (required)")
	cmd.Flags().StringVar(&ca, "ca", "", "PEM CA bundle that signs the controller's certificate (default: system roots)")
	_ = cmd.MarkFlagRequired("server")
	_ = cmd.MarkFlagRequired("phase")
	return cmd
}

func newRunCmd(d *deps) *cobra.Command {
	var f checkinFlags
	var tf taskFlags
	var cmdlinePath, siteRoot string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Check in with the settings on the kernel command line, then run the controller's tasks (image, burn-in)",
		Long: "Check in with the settings on the kernel command line (rackstrap.server=, rackstrap.token=,\n" +
			"rackstrap.phase=, rackstrap.ca=, rackstrap.disk=), then poll the controller for the node's tasks and\n" +
			"run them until --tasks-for passes (the controller reboots the machine when it is done with it).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(cmdlinePath)
			if err != nil {
				return fmt.Errorf("read kernel command line: %w", err)
			}
			p, err := checkin.ParseCmdline(string(data))
			if err != nil {
				return err
			}
			// The site initrd (serve --agent-tls) brings the controller's CA:
			// trust it when the command line names none.
			site, err := agenttls.Load(siteRoot)
			if err != nil {
				return err
			}
			if site != nil && p.CAFile == "" {
				p.CAFile = site.CAFile
			}
			cfg := checkin.Config{Server: p.Server, Token: p.Token, CAFile: p.CAFile}
			if p.LLDPWait > 0 && !cmd.Flags().Changed("lldp-wait") {
				f.lldpWait = p.LLDPWait
			}
			if tf.disk == "" {
				tf.disk = p.Disk
			}
			var caPEM []byte
			if p.CAFile != "" {
				if caPEM, err = os.ReadFile(p.CAFile); err != nil {
					return fmt.Errorf("rackstrap.ca=: %w", err)
				}
			}
			resp, client, err := doCheckin(cmd.Context(), d, &f, cfg, p.Phase, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if resp.Session == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "the controller gave no session: no tasks to fetch")
				return nil
			}
			hc := client.HTTP()
			if site != nil {
				// A client certificate bound to this node (mutual TLS); the
				// session token over TLS when the controller gives none.
				hc = site.Mutual(cmd.Context(), resp.Session, resp.Node, hc, cmd.ErrOrStderr())
			}
			handlers := map[string]tasks.Handler{
				"image":   imageHandler(d, &tf, f.sysRoot, hc, caPEM, cmd.ErrOrStderr()),
				"burn-in": burninHandler(d, &tf, f.sysRoot),
			}
			return runTasks(cmd.Context(), d, &tf, p.Server, resp.Session, hc, handlers, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.register(cmd)
	tf.register(cmd, "/run/rackstrap-agent/tasks.json", 0)
	cmd.Flags().StringVar(&tf.disk, "disk", "", "block device (or file) image tasks write to; default rackstrap.disk=, else the only non-removable disk that is not the boot medium")
	cmd.Flags().StringVar(&tf.firstbootFile, "firstboot-file", "", "where the installed OS's first-boot record (server, first-boot token, CA) goes; default: the tail of the target disk, or TARGET.firstboot.json beside a target file")
	cmd.Flags().StringVar(&cmdlinePath, "cmdline", "/proc/cmdline", "file holding the kernel command line")
	cmd.Flags().StringVar(&siteRoot, "site-root", "/", "root directory below which the site initrd's files are read (etc/rackstrap/ca.crt; a fixture tree in tests)")
	return cmd
}

func newFirstbootCmd(d *deps) *cobra.Command {
	var f checkinFlags
	var tf taskFlags
	var statePath, growRoot string
	cmd := &cobra.Command{
		Use:   "firstboot",
		Short: "On the installed OS's first boot: check in with the record the imaging left (--state), then run the controller's burn-in tasks",
		Long: "Read the first-boot record (controller URL, one-time first-boot token, CA) that the netboot agent\n" +
			"saved with the image, check in with phase firstboot, save the session in the record in place of\n" +
			"the spent token, then run the controller's tasks (burn-in) until the controller says the node\n" +
			"needs no more (it is Ready or handed off) or none comes for --idle-exit.\n" +
			"Run again after a reboot, it carries on with the saved session.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if statePath == "auto" {
				p, err := findFirstbootDisk(f.sysRoot)
				if err != nil {
					return err
				}
				statePath = p
				fmt.Fprintf(cmd.ErrOrStderr(), "first-boot record found on %s\n", p)
			}
			rec, err := firstboot.Load(statePath)
			if err != nil {
				return err
			}
			var hc *http.Client
			if rec.Session == "" {
				// the root grown into its partition, the UEFI entry booted:
				// notes for the check-in
				grow := growRoot
				if grow == "auto" {
					grow = ""
					if fi, err := os.Stat(statePath); err == nil && fi.Mode()&fs.ModeDevice != 0 {
						grow = "/" // the record was on the disk: this is the installed OS
					}
				}
				extra := firstBootHost(cmd.Context(), f.sysRoot, grow)
				cfg := checkin.Config{Server: rec.Server, Token: rec.Token, CAPEM: []byte(rec.CA)}
				resp, client, err := doCheckin(cmd.Context(), d, &f, cfg, checkin.Firstboot, cmd.OutOrStdout(), cmd.ErrOrStderr(), extra...)
				if err != nil {
					return err
				}
				rec.Token, rec.Session, rec.Node, rec.CheckedInAt = "", resp.Session, resp.Node, time.Now().UTC()
				if err := firstboot.Save(statePath, rec, 0); err != nil {
					return fmt.Errorf("checked in as node %s, but could not save the session in the first-boot record: %w", resp.Node, err)
				}
				if resp.Session == "" {
					fmt.Fprintln(cmd.OutOrStdout(), "the controller gave no session: no tasks to fetch")
					return nil
				}
				hc = client.HTTP()
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "already checked in as node %s at %s; carrying on with its session\n", rec.Node, rec.CheckedInAt.Format(time.RFC3339))
				if hc, err = checkin.HTTPClient([]byte(rec.CA)); err != nil {
					return fmt.Errorf("first-boot record: CA: %w", err)
				}
			}
			handlers := map[string]tasks.Handler{"burn-in": burninHandler(d, &tf, f.sysRoot)}
			return runTasks(cmd.Context(), d, &tf, rec.Server, rec.Session, hc, handlers, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.register(cmd)
	tf.register(cmd, "/var/lib/rackstrap-agent/tasks.json", 5*time.Minute)
	cmd.Flags().StringVar(&statePath, "state", "", "the first-boot record: a file, the disk whose tail holds it, or auto (the one whole disk that holds one) (required)")
	cmd.Flags().StringVar(&growRoot, "grow-root", "auto", "before checking in, grow the ext2/3/4 filesystem mounted here into its partition with resize2fs (auto: / when the record was on a disk; '': never)")
	cmd.Flags().StringVar(&tf.disk, "disk", "", "device (or file) the disk burn-in check reads; default every whole disk")
	_ = cmd.MarkFlagRequired("state")
	return cmd
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := map[string]any{
				"version":  version,
				"go":       runtime.Version(),
				"platform": runtime.GOOS + "/" + runtime.GOARCH,
				"nvml":     gpu.NVMLSupported,
			}
			switch output {
			case "json":
				return json.NewEncoder(cmd.OutOrStdout()).Encode(info)
			case "text":
				nv := "with NVML"
				if !gpu.NVMLSupported {
					nv = "without NVML"
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "rackstrap-agent %s (%s, %s, %s)\n", version, runtime.Version(), info["platform"], nv)
				return err
			}
			return errors.New("unknown output " + output + "; use json or text")
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
