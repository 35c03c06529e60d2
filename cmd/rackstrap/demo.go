package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		f       serveFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Bootstrap a simulated rack of 8 machines on this computer, live",
		Long: `Run a controller on a fresh SQLite store in a temporary data dir with a
simulated rack, and show each machine's progress live until every one rests:
handed off to the cluster, or stopped by a fault a technician must see.

Two machines are given faults on purpose: one has a GPU at PCIe x8 (it is
quarantined with a finding), one has a flaky BMC (its first calls fail and
are retried). The data dir is kept so you can look at it afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("data-dir") {
				dir, err := os.MkdirTemp("", "rackstrap-demo-")
				if err != nil {
					return err
				}
				f.dataDir = dir
			}
			rack := f.simRack
			if !cmd.Flags().Changed("simulate-fault") {
				f.simFaults = []string{rack + "-n03=bad-gpu", rack + "-n05=flaky-bmc"}
			}
			log, err := newLogger(io.Discard, "text", "info")
			if err != nil {
				return err
			}
			if f.logFormat != "auto" || f.logLevel != "info" {
				// Asked for logs: they go to stderr beside the live view.
				if log, err = newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel); err != nil {
					return err
				}
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(contextOrBackground(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Rackstrap demo: %d simulated machines in rack %s (store: SQLite in %s)\n\n", f.simulate, rack, f.dataDir)

			done := make(chan error, 1)
			var ctl *controller.Controller
			ready := make(chan struct{})
			runCtx, stopRun := context.WithCancel(ctx)
			defer stopRun()
			go func() {
				done <- controller.Run(runCtx, cfg, log, func(c *controller.Controller) { ctl = c; close(ready) })
			}()
			select {
			case err := <-done:
				return err
			case <-ready:
			}
			fmt.Fprintf(out, "API: http://%s (try: rackstrap --server http://%s nodes list)\n\n", ctl.API, ctl.API)
			nodes, watchErr := watch(ctx, out, ctl.Store, isTerminal(out))
			stopRun()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			if watchErr != nil {
				return fmt.Errorf("demo did not finish: %w; its state is in %s", watchErr, f.dataDir)
			}
			// The controller closed its store on the way out; read it again.
			db, err := store.Open(context.Background(), "", f.dataDir, store.Options{})
			if err != nil {
				return err
			}
			defer db.Close()
			return summary(out, db, nodes, f.dataDir)
		},
	}
	f.register(cmd, 8)
	cmd.Flags().Lookup("simulate-desired").DefValue = "handed-off"
	f.simDesired = "handed-off"
	// Slow enough to watch; 'rackstrap serve --simulate' defaults are faster.
	for name, def := range map[string]string{"simulate-boot-time": "1.5s", "simulate-image-time": "2s"} {
		if err := cmd.Flags().Set(name, def); err != nil {
			panic(err) // a flag renamed without updating this list: a programming error
		}
		cmd.Flags().Lookup(name).DefValue = def
		cmd.Flags().Lookup(name).Changed = false
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up when the rack has not settled by then")
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
		return "validation found errors: see 'nodes show " + n.Name + "'"
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
		outcome := "handed off to the cluster"
		switch n.State {
		case model.Quarantined:
			outcome = "quarantined: " + hint(n)
		case model.Failed:
			outcome = fmt.Sprintf("failed (%s)", n.FailureClass)
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
	fmt.Fprintf(out, "  rackstrap serve --data-dir %s --simulate %d   # then: rackstrap nodes show %s\n", dataDir, len(nodes), nodes[0].Name)
	return nil
}

// hint pulls the first finding's hint for the technician.
func hint(n model.Node) string {
	s := string(n.Findings)
	if i := strings.Index(s, `"hint":"`); i >= 0 {
		rest := s[i+8:]
		if j := strings.Index(rest, `"`); j >= 0 {
			return rest[:j]
		}
	}
	return "see 'rackstrap nodes show " + n.Name + "'"
}
