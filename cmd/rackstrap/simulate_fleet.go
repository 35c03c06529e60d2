package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/test/fleet/realfleet"
)

// fleetRun is what one `simulate fleet` run measured.
type fleetRun struct {
	Nodes        int     `json:"nodes"`
	Racks        int     `json:"racks"`
	Store        string  `json:"store"`
	WallSeconds  float64 `json:"wallSeconds"`
	NodesPerSec  float64 `json:"nodesPerSecond"`
	CPUSeconds   float64 `json:"cpuSeconds"`
	PeakRSSMiB   float64 `json:"peakRssMiB"`
	Ready        int     `json:"ready"`
	Failed       int     `json:"failed"`
	Quarantined  int     `json:"quarantined"`
	Effects      int     `json:"sideEffects"`
	Replays      int     `json:"replays"`
	EnrollSecond float64 `json:"declareSeconds"`
}

type fleetFlags struct {
	nodes, rackSize      int
	dataDir, database    string
	apiListen            string
	workers, rackLimit   int
	streams              int
	stagger              time.Duration
	boot, image, burnIn  time.Duration
	latency, timeout     time.Duration
	cpuProfile, logLevel string
	relaxed              bool
	progressEvery        time.Duration
	desired              string
	protocols            string
	maxInFlight          int
}

func newSimulateFleetCmd(g *globals) *cobra.Command {
	var f fleetFlags
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Provision N SIMULATED machines in racks through a real controller, and measure it",
		Long: `Run a controller (store, lifecycle engine, API) in this process with the
SIMULATED edge, declare N machines in racks of --rack-size, provision them all
from Discovered to Ready and report the wall time, the CPU time, the peak
memory (RSS) of the process and the side effects the simulated machines saw.

With --protocols real the controller runs its real edge (bmclib, DHCP, TFTP,
HTTP, the agent API) and the machines speak the real protocols from a second
process on loopback: a Redfish BMC simulator each, and a host that does DHCP
through its rack's relay (option 82 per slot), fetches its boot program over
TFTP and its script, kernel and initrd over HTTP, checks in as the agent with
its inventory, streams and hashes the signed image, and checks in after its
first boot. The report splits CPU and peak memory between the controller and
the machines. --nodes must then be whole racks.

The store is real: SQLite under --data-dir (synchronous=FULL), or the
PostgreSQL of --database. With --data-dir the run can be interrupted (even
with SIGKILL) and started again with the same flags: it resumes, and the
simulated machines keep their state in DIR/simulated-edge.journal.`,
		Example: `  rackstrap simulate fleet --nodes 1000
  rackstrap simulate fleet --nodes 1000 --protocols real
  rackstrap simulate fleet --nodes 10000 --rack-size 40 -o json
  rackstrap simulate fleet --nodes 1000 --data-dir /tmp/fleet --database postgres://rackstrap@127.0.0.1/rackstrap`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.nodes <= 0 || f.rackSize <= 0 {
				return errors.New("--nodes and --rack-size must be positive")
			}
			switch f.protocols {
			case "sim":
			case "real":
				if !cmd.Flags().Changed("workers") {
					f.workers = 64 // serve's default: the real edge's steps hold sockets
				}
			default:
				return fmt.Errorf("--protocols %q: give sim or real", f.protocols)
			}
			desired, err := model.ParseDesired(f.desired)
			if err != nil {
				return fmt.Errorf("--desired: %w", err)
			}
			log, err := newLogger(cmd.ErrOrStderr(), "text", f.logLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(contextOrBackground(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.dataDir == "" {
				dir, err := os.MkdirTemp("", "rackstrap-fleet-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				f.dataDir = dir
			}
			if f.cpuProfile != "" {
				pf, err := os.Create(f.cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if f.protocols == "real" {
				return runRealFleet(ctx, g, f, log, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			res, err := runFleet(ctx, f, desired, log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), g.output, res, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NODES\tRACKS\tSTORE\tWALL\tNODES/S\tCPU\tPEAK RSS\tREADY\tFAILED\tQUARANTINED\tEFFECTS\tREPLAYS")
				fmt.Fprintf(w, "%d\t%d\t%s\t%.1fs\t%.1f\t%.1fs\t%.0f MiB\t%d\t%d\t%d\t%d\t%d\n", res.Nodes, res.Racks, res.Store,
					res.WallSeconds, res.NodesPerSec, res.CPUSeconds, res.PeakRSSMiB, res.Ready, res.Failed, res.Quarantined, res.Effects, res.Replays)
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.nodes, "nodes", 1000, "how many simulated machines")
	fl.IntVar(&f.rackSize, "rack-size", 40, "machines per rack")
	fl.StringVar(&f.dataDir, "data-dir", "", "`DIR` for the store and the simulated machines' journal (default: a temporary directory, removed after); reuse it to resume a killed run")
	fl.StringVar(&f.database, "database", "", "PostgreSQL `URL` instead of SQLite")
	fl.StringVar(&f.apiListen, "api-listen", "127.0.0.1:0", "`ADDR` of the controller's API")
	fl.IntVar(&f.workers, "workers", 1024, "lifecycle steps running at once, all nodes together")
	fl.IntVar(&f.rackLimit, "rack-limit", 8, "BMC steps at once per rack")
	fl.IntVar(&f.streams, "rack-image-streams", 0, "image streams at once per rack; 0: --rack-limit")
	fl.DurationVar(&f.stagger, "power-on-stagger", 0, "least time between two power-ons in one rack")
	fl.DurationVar(&f.boot, "boot-time", time.Second, "simulated power-on to agent check-in (each machine takes 1-2x this)")
	fl.DurationVar(&f.image, "image-time", 2*time.Second, "simulated image stream")
	fl.DurationVar(&f.burnIn, "burn-in-time", 500*time.Millisecond, "simulated burn-in")
	fl.DurationVar(&f.latency, "reply-latency", 50*time.Millisecond, "simulated BMC answer delay after a side effect")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up after this long")
	fl.DurationVar(&f.progressEvery, "progress", 5*time.Second, "print a progress line this often (0: never)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to `FILE`")
	fl.StringVar(&f.logLevel, "log-level", "warn", "controller log level: debug, info, warn or error")
	fl.BoolVar(&f.relaxed, "relaxed-sync", false, "SQLite: synchronous=NORMAL while declaring the machines (the run itself is always FULL)")
	fl.StringVar(&f.desired, "desired", "ready", "what the machines are provisioned to: ready or handed-off")
	fl.StringVar(&f.protocols, "protocols", "sim", "sim: the simulated edge (no sockets); real: Redfish BMC simulators driven by bmclib and hosts doing DHCP through a relay per rack, TFTP, HTTP and the agent's API, in a second process")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 0, "nodes on their way to Ready at once (0: 16 per worker)")
	return cmd
}

// fleetNodeName names machine slot of rack r (both from 1).
func fleetNodeName(r, slot int) string { return fmt.Sprintf("fr%03d-n%02d", r, slot) }

func runFleet(ctx context.Context, f fleetFlags, desired model.Desired, log *slog.Logger, progress io.Writer) (fleetRun, error) {
	racks := (f.nodes + f.rackSize - 1) / f.rackSize
	res := fleetRun{Nodes: f.nodes, Racks: racks, Store: "sqlite"}
	if f.database != "" {
		res.Store = "postgres"
	}
	// Declare the machines (idempotent: a resumed run adds nothing).
	declared := time.Now()
	db, err := store.Open(ctx, f.database, f.dataDir, store.Options{RelaxedSync: f.relaxed})
	if err != nil {
		return res, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(128)
	for i := 0; i < f.nodes; i++ {
		r, slot := i/f.rackSize+1, i%f.rackSize+1
		g.Go(func() error {
			n := model.Node{
				Name:     fleetNodeName(r, slot),
				Identity: model.Identity{Rack: fmt.Sprintf("fr%03d", r), Slot: slot, BMC: fmt.Sprintf("sim-bmc-fr%03d-%02d", r, slot)},
				Profile:  "qemu-vm",
				Desired:  desired,
			}
			_, _, err := db.CreateNode(gctx, n, "simulate")
			return err
		})
	}
	err = g.Wait()
	db.Close()
	if err != nil {
		return res, fmt.Errorf("declare %d simulated machines: %w", f.nodes, err)
	}
	res.EnrollSecond = time.Since(declared).Seconds()

	journal := filepath.Join(f.dataDir, "simulated-edge.journal")
	cfg := controller.Config{
		DataDir: f.dataDir, Database: f.database, APIListen: f.apiListen,
		Engine: lifecycle.Config{
			Workers: f.workers, RackLimit: f.rackLimit, RackStreams: f.streams, PowerOnStagger: f.stagger,
			BackoffBase: 200 * time.Millisecond,
			Deadlines: map[string]time.Duration{
				lifecycle.StepWaitNetboot:   20*f.boot + time.Minute,
				lifecycle.StepWaitFirstBoot: 20*f.boot + time.Minute,
			},
		},
		Simulate: &controller.SimConfig{Nodes: 0, Desired: desired, Edge: simedge.Config{
			Journal: journal, BootTime: f.boot, ImageTime: f.image, BurnInTime: f.burnIn, ReplyLatency: f.latency,
		}},
	}
	runCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cpu0 := realfleet.CPUTime()
	start := time.Now()
	var (
		mu       sync.Mutex
		final    map[model.State]int
		finished bool
	)
	ready := func(c *controller.Controller) {
		go func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			lastPrint := time.Now()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
				}
				counts, err := c.Store.CountByState(runCtx)
				if err != nil {
					continue
				}
				rest := counts[model.Ready] + counts[model.HandedOff] + counts[model.Failed] + counts[model.Quarantined]
				if desired == model.WantHandedOff {
					rest -= counts[model.Ready]
				}
				if f.progressEvery > 0 && time.Since(lastPrint) >= f.progressEvery {
					lastPrint = time.Now()
					fmt.Fprintf(progress, "%6.1fs %s\n", time.Since(start).Seconds(), stateLine(counts))
				}
				if rest >= f.nodes {
					mu.Lock()
					final, finished = counts, true
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	err = controller.Run(runCtx, cfg, log, ready)
	wall := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	if !finished {
		if ctx.Err() != nil {
			return res, fmt.Errorf("interrupted after %s", wall.Round(time.Millisecond))
		}
		return res, fmt.Errorf("the fleet did not settle within --timeout %s; raise it or look at the controller log (--log-level info)", f.timeout)
	}
	res.WallSeconds = wall.Seconds()
	res.NodesPerSec = float64(f.nodes) / wall.Seconds()
	res.CPUSeconds = (realfleet.CPUTime() - cpu0).Seconds()
	res.PeakRSSMiB = realfleet.PeakRSSMiB()
	res.Ready, res.Failed, res.Quarantined = final[model.Ready]+final[model.HandedOff], final[model.Failed], final[model.Quarantined]
	effects, err := simedge.ReadJournal(journal)
	if err != nil {
		return res, err
	}
	res.Effects = len(effects)
	return res, nil
}

func stateLine(counts map[model.State]int) string {
	var b strings.Builder
	for _, s := range []model.State{model.Discovered, model.Enrolled, model.Inspecting, model.Validated, model.Imaging,
		model.FirstBoot, model.BurnIn, model.Ready, model.HandedOff, model.Failed, model.Quarantined} {
		if counts[s] > 0 {
			fmt.Fprintf(&b, " %s=%d", s, counts[s])
		}
	}
	return strings.TrimSpace(b.String())
}
