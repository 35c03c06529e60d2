package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/test/fleet/realfleet"
)

// runRealFleet is `simulate fleet --protocols real`: the machines speak
// DHCP, TFTP, HTTP, Redfish and the agent's API to a real controller, from
// a second rackstrap process (the hidden `simulate machines`).
func runRealFleet(ctx context.Context, g *globals, f fleetFlags, log *slog.Logger, out, progress io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the machines' process: %w", err)
	}
	racks := (f.nodes + f.rackSize - 1) / f.rackSize
	if racks*f.rackSize != f.nodes {
		return fmt.Errorf("--protocols real: --nodes %d is not a whole number of racks of --rack-size %d", f.nodes, f.rackSize)
	}
	machines := exec.Command(self, "simulate", "machines")
	machines.Stderr = progress
	res, err := realfleet.Run(ctx, realfleet.Config{
		Racks: racks, PerRack: f.rackSize, Workers: f.workers, MaxInFlight: f.maxInFlight,
		Timeout: f.timeout, Dir: f.dataDir, Database: f.database, Machines: machines, Log: log,
		ProgressEvery: f.progressEvery,
		Progress: func(elapsed time.Duration, counts map[model.State]int) {
			fmt.Fprintf(progress, "%6.1fs %s\n", elapsed.Seconds(), stateLine(counts))
		},
	})
	if err != nil {
		return err
	}
	if err := render(out, g.output, res, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NODES\tRACKS\tWALL\tNODES/S\tCONTROLLER CPU\tCONTROLLER PEAK RSS\tMACHINES CPU\tMACHINES PEAK RSS\tREDFISH REQUESTS\tREADY\tFAILED\tQUARANTINED")
		fmt.Fprintf(w, "%d\t%d\t%.1fs\t%.1f\t%.1fs\t%.0f MiB\t%.1fs\t%.0f MiB\t%d\t%d\t%d\t%d\n", res.Nodes, res.Racks, res.WallSeconds, res.NodesPerSecond,
			res.CPUSeconds, res.PeakRSSMiB, res.SimCPUSeconds, res.SimPeakRSSMiB, res.RedfishRequests,
			res.Ready(), res.States[model.Failed], res.States[model.Quarantined])
	}); err != nil {
		return err
	}
	if res.Ready() != res.Nodes {
		return fmt.Errorf("%d of %d machines reached Ready within --timeout %s (machines by stage: %v; their last errors: %v)",
			res.Ready(), res.Nodes, f.timeout, res.HostStages, res.HostErrors)
	}
	return nil
}

// newSimulateMachinesCmd is the machines' process of `simulate fleet
// --protocols real`; it is started by that command, not by hand.
func newSimulateMachinesCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "machines",
		Short:  "The simulated machines of 'simulate fleet --protocols real' (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv(realfleet.MachinesEnv) == "" {
				return fmt.Errorf("this is the machines' process of 'rackstrap simulate fleet --protocols real'; run that instead")
			}
			return realfleet.ServeMachines(cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}
