package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/bmc/discover"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/bundle"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/test/lab"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		dataDir, apiListen, logFormat, logLevel string
		slurmMode                               string
		nodes                                   int
		bootDelay, timeout                      time.Duration
		imageMiB                                int64
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Bootstrap a simulated rack of 8 machines on this computer, live, over real protocols",
		Long: `Run a controller on a fresh SQLite store in a temporary data dir, and a
simulated rack beside it on loopback: a Redfish BMC simulator per machine, and
simulated hosts that boot like real ones when their BMC powers them on.

The controller finds the BMCs by scanning their network (as 'rackstrap
discover'), then drives each machine exactly as it drives hardware: bmclib
over Redfish to set a one-time network boot and power on; its own DHCP
(through a rack relay with option 82), TFTP (the boot program) and HTTP (the
iPXE script, and the netboot kernel and initramfs its image builder made at
start); the agent's check-in with a one-time token; the OS image streamed
and verified.

Each machine's progress is shown live until every one rests. Two machines are
given faults on purpose: slot 3 has a GPU trained at PCIe x8 (validation
quarantines it with a finding), slot 6 writes a corrupt image (it fails with
image-verify-failed). The data dir is kept so you can look at it afterwards.

With --slurm auto (what 'make demo' runs) the rack goes one step further: a
private slurmctld and munged start in a network namespace of their own, and
every validated machine is handed off to them as a dynamic Slurm node with
the facts validation verified (CPUs, memory, GPUs as Gres, features naming
its profile and rack); the demo ends with 'scontrol show nodes'. That needs
root and Debian's slurmctld and munge: without them the demo says so and
the rack ends at Ready. The slurmctld, its namespace and its files are
removed when the demo ends, Ctrl-C included.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if dataDir == "" {
				dir, err := os.MkdirTemp("", "rackstrap-demo-")
				if err != nil {
					return err
				}
				dataDir = dir
			}
			log, err := newLogger(io.Discard, "text", "info")
			if err != nil {
				return err
			}
			if logFormat != "auto" || logLevel != "info" {
				// Asked for logs: they go to stderr beside the live view.
				if log, err = newLogger(cmd.ErrOrStderr(), logFormat, logLevel); err != nil {
					return err
				}
			}
			parent := contextOrBackground(cmd)
			sigCtx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
			defer stop()
			defer func() {
				// runs last: the rack, the controller and the slurmctld
				// have stopped by now
				if err != nil && sigCtx.Err() != nil && parent.Err() == nil {
					err = fmt.Errorf("demo interrupted; everything it started has stopped (%v); what it did is in %s", err, dataDir)
				}
			}()
			ctx, cancel := context.WithTimeout(sigCtx, timeout)
			defer cancel()
			if err := validDemoSlurmMode(slurmMode); err != nil {
				return err
			}
			// slurmctld starts while the rack is prepared
			sl, err := startDemoSlurm(ctx, slurmMode)
			if err != nil {
				return err
			}
			defer sl.Close()

			rack, err := lab.Prepare(lab.Config{Rack: "r1", Nodes: nodes, Dir: filepath.Join(dataDir, "artifacts"),
				Faults: map[int]lab.Fault{3: lab.FaultGPUx8, 6: lab.FaultImageCorrupt}, BootDelay: bootDelay, ImageSize: imageMiB << 20, Log: log})
			if err != nil {
				return err
			}
			defer rack.Close()
			// The site gets its artifacts the way a disconnected one does:
			// exported into a signed bundle and imported, verified, into a
			// fresh store that trusts only the signer.
			si := rack.Edge.SignedImage
			site, err := bundle.RoundTrip(ctx, bundle.RoundTripInput{BootDir: rack.Boot.ArtifactDir, ImageStore: si.StoreDir,
				Images: []string{si.Name + ":" + si.Version}, SigningKey: filepath.Join(si.StoreDir+".keys", "lab.key"),
				WorkDir: filepath.Join(dataDir, "site")})
			if err != nil {
				return fmt.Errorf("demo: export and import the bundle: %w", err)
			}
			slurmCfg, err := sl.wait(ctx)
			if err != nil {
				return err
			}
			if slurmCfg != nil {
				for i := range rack.Nodes {
					rack.Nodes[i].Desired = model.WantHandedOff
				}
			}
			boot, signed, edgeCfg := *rack.Boot, *si, *rack.Edge
			boot.ArtifactDir = site.Layout.BootDir()
			signed.StoreDir, signed.Trusted = site.Layout.ImageStore(), site.Trusted
			edgeCfg.SignedImage = &signed
			edgeCfg.Slurm = slurmCfg
			cfg := controller.Config{DataDir: dataDir, APIListen: apiListen, Edge: &edgeCfg, Boot: &boot,
				Engine: lifecycle.Config{MaxAttempts: 2, BackoffBase: 500 * time.Millisecond, Poll: 200 * time.Millisecond,
					Deadlines: map[string]time.Duration{lifecycle.StepWaitNetboot: time.Minute, lifecycle.StepWaitFirstBoot: time.Minute}}}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Rackstrap demo: %d simulated machines in rack r1 (store: SQLite in %s)\n", nodes, dataDir)
			fmt.Fprintf(out, "Imported signed bundle %s: %d files, signed by %s\n", site.Bundle, site.Result.Entries, site.Result.Signer[:min(19, len(site.Result.Signer))])
			sl.header(out)

			done := make(chan error, 1)
			ready := make(chan *controller.Controller, 1)
			runCtx, stopRun := context.WithCancel(ctx)
			defer stopRun()
			go func() {
				done <- controller.Run(runCtx, cfg, log, func(c *controller.Controller) { ready <- c })
			}()
			var ctl *controller.Controller
			select {
			case err := <-done:
				return err
			case ctl = <-ready:
			}
			// Find the rack the way a technician does: scan its BMC network.
			bmcNet, bmcPort := rack.BMCNetwork()
			found, err := discover.Scan(ctx, bmcNet, discover.Config{HTTPSPort: bmcPort, HTTPPort: bmcPort, NoIPMI: true,
				Credentials: []discover.Credential{{Username: "admin", Password: "password"}}})
			if err != nil {
				return fmt.Errorf("discover the demo rack's BMCs: %w", err)
			}
			bySlot := map[netip.Addr]model.Node{}
			for i, b := range rack.BMCs.BMCs() {
				bySlot[b.Addr().Addr()] = rack.Nodes[i]
			}
			enrolled := 0
			for _, f := range found {
				n, ok := bySlot[f.Address]
				if !ok || !f.Enrolled {
					continue
				}
				n.Identity.Serial, n.Identity.UUID = f.Survey.Serial, f.Survey.UUID
				if _, _, err := ctl.Store.CreateNode(ctx, n, "discover"); err != nil {
					return err
				}
				enrolled++
			}
			fmt.Fprintf(out, "Discovered %d Redfish BMCs on %s, enrolled %d\n", len(found), bmcNet, enrolled)
			if err := rack.Start(); err != nil {
				return err
			}
			b := rack.Boot
			fmt.Fprintf(out, "API http://%s   DHCP 127.0.0.1:%d   TFTP %s   boot HTTP %s   BMCs %s…\n\n",
				ctl.API, b.DHCP.Port, b.TFTP.Addr, b.BootBase, rack.Nodes[0].Identity.BMC)
			list, watchErr := watch(ctx, out, ctl.Store, isTerminal(out))
			stopRun()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			if watchErr != nil {
				return fmt.Errorf("demo did not finish: %w; its state is in %s", watchErr, dataDir)
			}
			// The controller closed its store on the way out; read it again.
			db, err := store.Open(context.Background(), "", dataDir, store.Options{})
			if err != nil {
				return err
			}
			defer db.Close()
			if err := summary(out, db, list, dataDir); err != nil {
				return err
			}
			if err := sl.summary(ctx, out); err != nil {
				return err
			}
			return demoFirmwareCompliance(ctx, out, rack.Nodes, "admin", "password")
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "", "`DIR` for the store and artifacts (default: a new temporary dir)")
	fl.StringVar(&apiListen, "api-listen", "127.0.0.1:0", "`ADDR` of the REST API (default: a free port)")
	fl.IntVar(&nodes, "nodes", 8, "machines in the simulated rack")
	fl.DurationVar(&bootDelay, "boot-delay", 400*time.Millisecond, "simulated firmware and kernel time per boot stage")
	fl.Int64Var(&imageMiB, "image-mib", 64, "size of the OS image each machine streams, in MiB")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "give up when the rack has not settled by then")
	fl.StringVar(&slurmMode, "slurm", demoSlurmOff, "hand the rack to a private slurmctld: `MODE` auto (when root with slurmctld and munge installed; else say why and end at Ready), on (fail without them) or off")
	fl.StringVar(&logFormat, "log-format", "auto", "controller logs on stderr: text or json (default: none, the live view only)")
	fl.StringVar(&logLevel, "log-level", "info", "log level when logs are shown: debug, info, warn or error")
	return cmd
}

// settled reports whether a node needs nothing more from the engine.
func settled(n model.Node) bool {
	switch n.State {
	case model.Failed, model.Quarantined:
		return true
	case model.Ready:
		return n.Desired == model.WantReady
	case model.HandedOff:
		return true
	}
	return false
}

// watch shows progress until every node has settled. On a terminal it
// redraws a table in place; otherwise it prints one line per state change.
func watch(ctx context.Context, out io.Writer, db *store.DB, tty bool) ([]model.Node, error) {
	start := time.Now()
	last := map[string]model.State{}
	drawn := 0
	for {
		nodes, err := db.ListNodes(ctx, store.NodeFilter{})
		if err != nil {
			return nil, err
		}
		if tty {
			if drawn > 0 {
				fmt.Fprintf(out, "\x1b[%dA\x1b[J", drawn)
			}
			drawn = drawTable(out, nodes, time.Since(start))
		} else {
			for _, n := range nodes {
				if last[n.Name] != n.State {
					fmt.Fprintf(out, "%6.1fs  %-14s %-15s %s\n", time.Since(start).Seconds(), n.Name, n.State, failureNote(n))
					last[n.Name] = n.State
				}
			}
		}
		all := len(nodes) > 0
		for _, n := range nodes {
			all = all && settled(n)
		}
		if all {
			return nodes, nil
		}
		select {
		case <-ctx.Done():
			return nodes, ctx.Err()
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// lifecycleBar is the happy path, for the progress bar.
var lifecycleBar = []model.State{model.Discovered, model.Enrolled, model.Inspecting, model.Validated, model.Imaging,
	model.FirstBoot, model.BurnIn, model.Ready, model.HandedOff}

func progress(s model.State) string {
	for i, st := range lifecycleBar {
		if st == s {
			return strings.Repeat("█", i+1) + strings.Repeat("·", len(lifecycleBar)-i-1)
		}
	}
	return strings.Repeat("!", len(lifecycleBar))
}

func failureNote(n model.Node) string {
	switch n.State {
	case model.Failed:
		return fmt.Sprintf("%s: %s", n.FailureClass, n.FailureMsg)
	case model.Quarantined:
		return "quarantined: " + hint(n)
	}
	return ""
}

func drawTable(out io.Writer, nodes []model.Node, elapsed time.Duration) int {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tSLOT\tSTATE\tPROGRESS\tNOTE\n")
	for _, n := range nodes {
		note := failureNote(n)
		if len(note) > 70 {
			note = note[:67] + "..."
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", n.Name, n.Identity.Slot, n.State, progress(n.State), note)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nelapsed %s\n", elapsed.Round(100*time.Millisecond))
	fmt.Fprint(out, b.String())
	return strings.Count(b.String(), "\n")
}

func summary(out io.Writer, db *store.DB, nodes []model.Node, dataDir string) error {
	ctx := context.Background()
	counts := map[model.State]int{}
	fmt.Fprintln(out, "\nSummary")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tSERIAL\tSTEPS\tRETRIES\tOUTCOME")
	for _, n := range nodes {
		counts[n.State]++
		tl, err := db.Timeline(ctx, n.Name)
		if err != nil {
			return err
		}
		retries := 0
		for _, s := range tl {
			if s.Outcome == model.FailedOut || s.Outcome == model.TimedOut {
				retries++
			}
		}
		outcome := "handed off to Slurm"
		switch n.State {
		case model.Failed:
			outcome = fmt.Sprintf("failed (%s)", n.FailureClass)
		case model.Quarantined:
			outcome = "quarantined: " + hint(n)
		case model.Ready:
			outcome = "ready"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", n.Name, n.State, n.Identity.Serial, len(tl), retries, outcome)
	}
	tw.Flush()
	var parts []string
	for _, s := range model.States {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	fmt.Fprintf(out, "\n%s\n", strings.Join(parts, ", "))
	res, err := db.VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	fmt.Fprintf(out, "Audit chain intact: %d entries, head %s\n", res.Entries, res.Head[:16])
	fmt.Fprintf(out, "\nData dir: %s\n", dataDir)
	fmt.Fprintf(out, "  rackstrap audit verify --data-dir %s\n", dataDir)
	return nil
}

// hint is the first error finding's hint for the technician.
func hint(n model.Node) string {
	var findings []struct{ Severity, Hint, Message string }
	if json.Unmarshal(n.Findings, &findings) == nil {
		for _, f := range findings {
			if f.Severity == "error" && f.Hint != "" {
				return f.Hint
			}
		}
	}
	return "see 'rackstrap nodes show " + n.Name + "'"
}
