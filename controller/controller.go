// Package controller assembles a Rackstrap controller: the store, the
// hardware edge, the lifecycle engine and the HTTP API, started in order
// and stopped together.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Config is everything `rackstrap serve` and `rackstrap demo` decide.
type Config struct {
	DataDir   string // SQLite store and local state
	Database  string // postgres://… selects PostgreSQL
	APIListen string // host:port of the API
	Engine    lifecycle.Config
	// Simulate, when set, drives simulated machines (the simulated edge).
	Simulate *SimConfig
}

// SimConfig describes a simulated rack.
type SimConfig struct {
	Nodes   int
	Rack    string
	Desired model.Desired
	Edge    simedge.Config // Journal defaults to DataDir/simulated-edge.journal
}

func (c Config) withDefaults() Config {
	if c.APIListen == "" {
		c.APIListen = "127.0.0.1:8080"
	}
	if s := c.Simulate; s != nil {
		cp := *s
		if cp.Rack == "" {
			cp.Rack = "sim-r1"
		}
		if cp.Desired == "" {
			cp.Desired = model.WantReady
		}
		if cp.Edge.Journal == "" {
			cp.Edge.Journal = filepath.Join(c.DataDir, "simulated-edge.journal")
		}
		c.Simulate = &cp
	}
	return c
}

// Controller is a running controller's parts, for the demo's live view.
type Controller struct {
	Store *store.DB
	API   string // the address the API listens on
}

// Run starts the controller and blocks until ctx ends or a part fails.
// ready, if not nil, is called once the API listens.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(*Controller)) error {
	cfg = cfg.withDefaults()
	if cfg.Simulate == nil {
		return errors.New("no hardware edge configured: this build drives simulated machines only; pass --simulate N (see 'rackstrap serve --help')")
	}
	db, err := store.Open(ctx, cfg.Database, cfg.DataDir, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	log.Info("store open", "engine", db.Engine(), "location", db.Location())

	edge, err := simedge.Open(cfg.Simulate.Edge)
	if err != nil {
		return err
	}
	defer edge.Close()
	if err := enrollSimulated(ctx, db, *cfg.Simulate); err != nil {
		return err
	}
	log.Info("simulated edge", "nodes", cfg.Simulate.Nodes, "rack", cfg.Simulate.Rack, "journal", cfg.Simulate.Edge.Journal)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	eng, err := lifecycle.New(cfg.Engine, db, edge, log, lifecycle.NewMetrics(reg))
	if err != nil {
		return err
	}
	apiSrv, err := api.New(db, eng, log, reg, reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w; pick another --api-listen address or stop what uses it", cfg.APIListen, err)
	}
	log.Info("api listening", "addr", "http://"+ln.Addr().String())
	hs := &http.Server{Handler: apiSrv, ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(shut)
	})
	g.Go(func() error { return eng.Serve(gctx) })
	if ready != nil {
		ready(&Controller{Store: db, API: ln.Addr().String()})
	}
	return g.Wait()
}

// enrollSimulated creates the simulated rack's nodes once: re-running with
// the same store adds nothing.
func enrollSimulated(ctx context.Context, db *store.DB, s SimConfig) error {
	for i := 1; i <= s.Nodes; i++ {
		n := model.Node{
			Name:     fmt.Sprintf("%s-n%02d", s.Rack, i),
			Identity: model.Identity{Rack: s.Rack, Slot: i, BMC: fmt.Sprintf("sim-bmc-%s-%02d", s.Rack, i)},
			Profile:  "qemu-vm",
			Desired:  s.Desired,
		}
		if _, _, err := db.CreateNode(ctx, n, "simulate"); err != nil {
			return err
		}
	}
	return nil
}
