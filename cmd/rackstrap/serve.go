package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
)

// serveFlags are shared by serve and demo.
type serveFlags struct {
	dataDir, database, apiListen string
	logFormat, logLevel          string
	workers, rackLimit, attempts int
	simulate                     int
	simRack, simDesired          string
	simBoot, simImage            time.Duration
	simFaults                    []string
}

func (f *serveFlags) register(cmd *cobra.Command, simDefault int) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/rackstrap", "`DIR` for the embedded SQLite store and local state")
	fl.StringVar(&f.database, "database", "", "PostgreSQL `URL` (postgres://user@host:port/db) instead of SQLite; several controllers can share it")
	fl.StringVar(&f.apiListen, "api-listen", "127.0.0.1:8080", "`ADDR` (host:port) of the REST API, /metrics and /healthz")
	fl.StringVar(&f.logFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.IntVar(&f.workers, "workers", 64, "lifecycle steps running at once, all nodes together")
	fl.IntVar(&f.rackLimit, "rack-limit", 8, "BMC and image-stream steps running at once per rack (power-on stagger)")
	fl.IntVar(&f.attempts, "max-attempts", 3, "attempts of a step before its node goes to Failed")
	fl.IntVar(&f.simulate, "simulate", simDefault, "drive `N` SIMULATED machines (the simulated edge) in one rack, for trials and tests")
	fl.StringVar(&f.simRack, "simulate-rack", "sim-r1", "rack name of the simulated machines")
	fl.StringVar(&f.simDesired, "simulate-desired", "ready", "what the simulated machines are provisioned to: ready or handed-off")
	fl.DurationVar(&f.simBoot, "simulate-boot-time", 300*time.Millisecond, "simulated time from power-on to agent check-in")
	fl.DurationVar(&f.simImage, "simulate-image-time", 500*time.Millisecond, "simulated time to stream an image")
	fl.StringSliceVar(&f.simFaults, "simulate-fault", nil, "make a simulated node misbehave: NODE=FAULT, FAULT one of bmc-unreachable, flaky-bmc, no-pxe, bad-gpu, image-corrupt (repeatable)")
}

func (f *serveFlags) config() (controller.Config, error) {
	cfg := controller.Config{DataDir: f.dataDir, Database: f.database, APIListen: f.apiListen}
	cfg.Engine.Workers, cfg.Engine.RackLimit, cfg.Engine.MaxAttempts = f.workers, f.rackLimit, f.attempts
	if f.simulate > 0 {
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
	return cfg, nil
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

This build drives simulated machines (--simulate N); the real BMC, PXE and
imaging edge plugs into the same engine.`,
		Example: `  rackstrap serve --data-dir /tmp/rs --simulate 8
  rackstrap serve --database postgres://rackstrap@db:5432/rackstrap --simulate 50 --api-listen 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
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
