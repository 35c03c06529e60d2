// Package controller assembles a Rackstrap controller: the store, the
// hardware edge, the lifecycle engine and the HTTP API, started in order
// and stopped together.
package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/netboot"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/pxe/artifact"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	boothttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/tftp"
)

// Config is everything `rackstrap serve` and `rackstrap demo` decide.
type Config struct {
	DataDir   string // SQLite store and local state
	Database  string // postgres://… selects PostgreSQL
	APIListen string // host:port of the API
	Engine    lifecycle.Config
	// Simulate, when set, drives simulated machines (the simulated edge).
	Simulate *SimConfig
	// Edge and Boot drive machines over their real protocols.
	Edge *EdgeConfig
	Boot *BootConfig
	// SecretKeyFile seals stored BMC passwords (default DataDir/secret.key,
	// made on first start; keep a backup).
	SecretKeyFile string
	// Features are the optional parts turned on (see Feature).
	Features []Feature
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
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(c.DataDir, "secret.key")
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

// service is one long-running part, started in order.
type service struct {
	name  string
	serve func(context.Context) error
	ready <-chan struct{} // nil: ready once started
}

// Run starts the controller and blocks until ctx ends or a part fails.
// ready, if not nil, is called once every service listens.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(*Controller)) error {
	cfg = cfg.withDefaults()
	if cfg.Simulate == nil && cfg.Edge == nil {
		return errors.New("no hardware edge configured: pass --simulate N for simulated machines, or --bmc-credentials and --artifacts for real ones (see 'rackstrap serve --help')")
	}
	db, err := store.Open(ctx, cfg.Database, cfg.DataDir, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	log.Info("store open", "engine", db.Engine(), "location", db.Location())

	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w; pick another --api-listen address or stop what uses it", cfg.APIListen, err)
	}
	defer ln.Close()
	apiURL := "http://" + ln.Addr().String()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	box, err := secrets.LoadOrCreate(cfg.SecretKeyFile)
	if err != nil {
		return err
	}

	var (
		hw       lifecycle.Edge
		services []service
		bmcs     *bmc.Client
		fan      = &fanout{}
	)
	switch {
	case cfg.Simulate != nil:
		sim, err := simedge.Open(cfg.Simulate.Edge)
		if err != nil {
			return err
		}
		defer sim.Close()
		if err := enrollSimulated(ctx, db, *cfg.Simulate); err != nil {
			return err
		}
		log.Info("simulated edge", "nodes", cfg.Simulate.Nodes, "rack", cfg.Simulate.Rack, "journal", cfg.Simulate.Edge.Journal)
		hw = sim
	default:
		hw, services, bmcs, err = realEdge(ctx, cfg, db, box, log, reg, apiURL, fan)
		if err != nil {
			return err
		}
	}

	eng, err := lifecycle.New(cfg.Engine, db, hw, log, lifecycle.NewMetrics(reg))
	if err != nil {
		return err
	}
	apiSrv, err := api.New(db, eng, log, reg, reg)
	if err != nil {
		return err
	}
	apiSrv.SetSecrets(box)
	rt := &Runtime{Config: cfg, Store: db, API: apiSrv, Engine: eng, Secrets: box, Registry: reg, Log: log, APIURL: apiURL, BMC: bmcs}
	if cfg.Simulate == nil { // the real edge's DHCP server reports to fan
		rt.dhcpObs = fan
	}
	for _, f := range cfg.Features {
		if err := f.Start(ctx, rt); err != nil {
			return fmt.Errorf("%s: %w", f.Name(), err)
		}
		log.Info("feature on", "feature", f.Name())
	}
	if rt.apiTLS != nil {
		ln = tls.NewListener(ln, rt.apiTLS)
		apiURL = "https://" + strings.TrimPrefix(apiURL, "http://")
	}
	hs := &http.Server{Handler: apiSrv, ReadHeaderTimeout: 10 * time.Second}
	services = append([]service{{name: "api", serve: func(ctx context.Context) error {
		// Requests end with the service: agents' long polls (up to 30 s)
		// answer at once when the controller stops.
		hs.BaseContext = func(net.Listener) context.Context { return ctx }
		go func() {
			<-ctx.Done()
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(shut)
		}()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}}}, services...)
	services = append(services, rt.services...)
	services = append(services, service{name: "lifecycle", serve: eng.Serve})
	log.Info("api listening", "addr", apiURL)

	// Start in order; the first to fail stops the others, and the error
	// names it.
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range services {
		g.Go(func() error {
			if err := s.serve(gctx); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			return nil
		})
		if s.ready != nil {
			select {
			case <-s.ready:
			case <-gctx.Done():
				return g.Wait()
			}
		}
	}
	if ready != nil {
		ready(&Controller{Store: db, API: ln.Addr().String()})
	}
	return g.Wait()
}

// realEdge builds the edge that drives machines over their real protocols,
// and the network boot services they boot from.
func realEdge(ctx context.Context, cfg Config, db *store.DB, box *secrets.Box, log *slog.Logger, reg prometheus.Registerer, apiURL string, fan *fanout) (lifecycle.Edge, []service, *bmc.Client, error) {
	ec, bc := cfg.Edge, cfg.Boot
	if bc == nil {
		return nil, nil, nil, errors.New("real machines need network boot: configure the boot services (--artifacts, --boot-url)")
	}
	catalog, err := profile.Bundled()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := catalog.LoadFiles(ec.ProfileFiles...); err != nil {
		return nil, nil, nil, err
	}
	agentURL := ec.AgentServer
	if agentURL == "" {
		agentURL = apiURL
	}
	var img edge.Image
	if ec.SignedImage != nil {
		img, err = verifiedImage(*ec.SignedImage, bc.ArtifactDir, bc.BootBase)
	} else {
		img, err = describeImage(bc.ArtifactDir, ec.Image, bc.BootBase)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	audit := newBMCAudit(db, log)
	cluster, err := newHandOff(cfg, db, log)
	if err != nil {
		return nil, nil, nil, err
	}
	learned, err := learnedQuirks(ctx, db)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bmc quirks learned earlier: %w", err)
	}
	bmcs := bmc.New(bmc.Config{Logger: log, OnOperation: audit.Record, Learned: learned, OnLearn: audit.Learn})
	hw, err := edge.New(edge.Config{
		BMC: bmcs, Credentials: logins(db, box, ec.Login), Catalog: catalog,
		Image: img, Server: agentURL, UEFI: ec.UEFI, Cluster: cluster,
		PinCert:  func(ctx context.Context, node, sha string) error { return db.PinBMCCert(ctx, node, sha, "controller") },
		ImageFor: RackCacheImage(db, log), Seed: ClusterSeeder(cfg, db),
	}, db, log)
	if err != nil {
		return nil, nil, nil, err
	}
	nb, err := netboot.New(netboot.Config{BootBase: bc.BootBase, Server: agentURL, Kernel: bc.Kernel, Initrd: bc.Initrd, Cmdline: bc.Cmdline}, db, log)
	if err != nil {
		return nil, nil, nil, err
	}
	files, err := artifact.NewDir(bc.ArtifactDir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("artifacts: %w", err)
	}
	var (
		dhcpSrv *dhcp.Server
		ids     boothttp.Identities
	)
	fan.add(nb)
	if !bc.NoDHCP {
		if dhcpSrv, err = dhcp.New(bc.DHCP, log, dhcp.Deps{Store: nb, Observer: fan}); err != nil {
			return nil, nil, nil, err
		}
		if err := dhcpSrv.Register(reg); err != nil {
			return nil, nil, nil, err
		}
		ids = dhcpSrv // the boot server's access log names nodes by their lease
	}
	httpSrv, err := boothttp.New(bc.HTTP, log, boothttp.Deps{Files: files, Scripts: nb, Identities: ids})
	if err != nil {
		return nil, nil, nil, err
	}
	tftpSrv, err := tftp.New(bc.TFTP, log, files)
	if err != nil {
		return nil, nil, nil, err
	}
	services := []service{
		{name: "pxe/http", serve: httpSrv.Serve, ready: httpSrv.Ready()},
		{name: "pxe/tftp", serve: tftpSrv.Serve, ready: tftpSrv.Ready()},
		{name: "netboot", serve: nb.Serve},
		{name: "bmc audit", serve: audit.Serve},
	}
	if dhcpSrv != nil {
		services = append(services, service{name: "pxe/dhcp", serve: dhcpSrv.Serve, ready: dhcpSrv.Ready()})
	}
	log.Info("real edge", "boot", bc.BootBase, "artifacts", bc.ArtifactDir, "image", img.URL, "agent server", agentURL)
	return hw, services, bmcs, nil
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

// logins gives each node its stored BMC login (opened from its sealed form)
// or the default, and the certificate pinned for its BMC.
func logins(db *store.DB, box *secrets.Box, def edge.Login) edge.Credentials {
	return func(ctx context.Context, n model.Node) (edge.Login, error) {
		l := def
		stored, err := db.BMCLogin(ctx, n.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return l, nil
		case err != nil:
			return l, err
		}
		l.CertSHA256 = stored.CertSHA256
		if stored.PasswordSealed != "" {
			pw, err := box.Open(stored.PasswordSealed, n.Name)
			if err != nil {
				return l, fmt.Errorf("stored BMC password of %s: %w; set it again with PUT /api/v1/nodes/%s/bmc-credentials", n.Name, err, n.Name)
			}
			l.Username, l.Password = stored.Username, pw
		}
		return l, nil
	}
}
