package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/cache"
)

// Multi-controller operation: rack ownership through leases in the shared
// store (controller.RackOwnership), bound to each command tree's flag set.
func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		var o controller.RackOwnership
		fl.StringVar(&o.ID, "controller-id", "", "share the store (PostgreSQL) with other controllers: this controller's unique `NAME`; each rack is then driven by one controller at a time, holding a lease, and a survivor takes the racks of one that dies")
		fl.DurationVar(&o.TTL, "rack-lease-ttl", 15*time.Second, "with --controller-id: how long a rack lease lasts unrenewed (a dead controller's racks are taken after 1 to 1⅓ times this)")
		return func() (controller.Feature, error) {
			if o.ID == "" {
				return nil, nil
			}
			return o, nil
		}
	}})
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		var l controller.RackLimits
		fl.IntVar(&l.Streams, "rack-image-streams", 0, "image streams at once per rack (the rack uplink); 0: --rack-limit")
		fl.DurationVar(&l.Stagger, "power-on-stagger", 0, "least time between two power-ons in one rack (inrush, PDU limits), e.g. 2s; 0: none")
		return func() (controller.Feature, error) {
			if l.Streams < 0 || l.Stagger < 0 {
				return nil, fmt.Errorf("--rack-image-streams %d, --power-on-stagger %s: give zero or more", l.Streams, l.Stagger)
			}
			if l.Streams == 0 && l.Stagger == 0 {
				return nil, nil
			}
			return l, nil
		}
	}})
	// The fleet API (rack leases, rack cache registrations) is always on.
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		return func() (controller.Feature, error) { return controller.FleetAPI{}, nil }
	}})
	// serve --role rack-cache: only on the serve command (demo has no roles).
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		if fl.Name() != "serve" {
			return func() (controller.Feature, error) { return nil, nil }
		}
		role := fl.String("role", "controller", "what this serve is: controller, or rack-cache (an image cache for one rack's nodes: --upstream, --cache-*; the controller flags are then ignored)")
		fl.String("upstream", "", "rack-cache: the controller's HTTP boot server `URL` (its --boot-url) to fetch image blobs from")
		fl.String("cache-dir", "/var/cache/rackstrap", "rack-cache: `DIR` of the verified blobs, kept across restarts")
		fl.String("cache-listen", "0.0.0.0:8090", "rack-cache: `ADDR` the rack's nodes fetch from")
		fl.String("cache-url", "", "rack-cache: the cache's `URL` as the rack's nodes reach it, e.g. http://10.1.0.5:8090 (registered with the controller)")
		fl.String("cache-rack", "", "rack-cache: the `RACK` whose nodes use this cache; it registers itself with the controller of --server (a token with the admin role: --token) while it runs")
		fl.Duration("cache-ttl", 30*time.Second, "rack-cache: how long the registration lasts unrenewed (renewed every third of it); after that the rack's nodes fetch from the controller again")
		return func() (controller.Feature, error) {
			switch *role {
			case "controller", "", "rack-cache":
				// rack-cache never gets here: serve runs it (runServeRole)
				// before it builds a controller.
				return nil, nil
			default:
				return nil, fmt.Errorf("--role %q: use controller or rack-cache", *role)
			}
		}
	}})
}

// rackCacheFlags are serve's --role rack-cache settings.
type rackCacheFlags struct {
	upstream, dir, listen, url, rack string
	ttl                              time.Duration
}

func readRackCacheFlags(fl *pflag.FlagSet) (rackCacheFlags, error) {
	var (
		f    rackCacheFlags
		errs []error
	)
	get := func(name string, dst *string) {
		v, err := fl.GetString(name)
		errs = append(errs, err)
		*dst = v
	}
	get("upstream", &f.upstream)
	get("cache-dir", &f.dir)
	get("cache-listen", &f.listen)
	get("cache-url", &f.url)
	get("cache-rack", &f.rack)
	ttl, err := fl.GetDuration("cache-ttl")
	f.ttl = ttl
	errs = append(errs, err)
	return f, errors.Join(errs...)
}

// runServeRole runs serve's --role when it is not the controller, and says
// whether it did. serve's RunE calls it first:
//
//	if ran, err := runServeRole(cmd, g, log); ran {
//		return err
//	}
func runServeRole(cmd *cobra.Command, g *globals, log *slog.Logger) (bool, error) {
	role, err := cmd.Flags().GetString("role")
	if err != nil || role != "rack-cache" {
		return false, nil
	}
	f, err := readRackCacheFlags(cmd.Flags())
	if err != nil {
		return true, err
	}
	if f.upstream == "" {
		return true, errors.New("--role rack-cache needs --upstream: the controller's HTTP boot server URL (its --boot-url), e.g. http://10.0.0.1:8081")
	}
	addr, err := netip.ParseAddrPort(f.listen)
	if err != nil {
		return true, fmt.Errorf("--cache-listen %q: %w; give host:port, e.g. 0.0.0.0:8090", f.listen, err)
	}
	if f.rack != "" && f.url == "" {
		return true, errors.New("--cache-rack needs --cache-url: the URL the rack's nodes reach this cache at, e.g. http://10.1.0.5:8090")
	}
	if f.rack != "" && (f.ttl < controller.MinCacheTTL || f.ttl > controller.MaxCacheTTL) {
		return true, fmt.Errorf("--cache-ttl %s: give %s to %s", f.ttl, controller.MinCacheTTL, controller.MaxCacheTTL)
	}
	if f.url != "" {
		if u, err := url.Parse(f.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" {
			return true, fmt.Errorf("--cache-url %q: give http://host:port as the rack's nodes reach this cache", f.url)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := cache.New(cache.Config{Upstream: f.upstream, Dir: f.dir, Addr: addr, Log: log, Metrics: reg})
	if err != nil {
		return true, err
	}
	if err := c.Register(reg); err != nil {
		return true, err
	}
	ctx, stop := signal.NotifyContext(contextOrBackground(cmd), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	select {
	case <-c.Ready():
	case err := <-served:
		return true, err
	}
	var registered chan struct{}
	if f.rack != "" {
		cl, err := g.client()
		if err != nil {
			cancel()
			<-served
			return true, err
		}
		registered = make(chan struct{})
		go func() {
			defer close(registered)
			registerCache(ctx, cl, f, log)
		}()
	}
	err = <-served
	cancel()
	if registered != nil {
		<-registered
	}
	return true, err
}

// registerCache keeps the cache registered for its rack until ctx ends,
// then removes the registration so the rack's nodes go back to the
// controller at once.
func registerCache(ctx context.Context, cl *api.Client, f rackCacheFlags, log *slog.Logger) {
	path := "/api/v1/rack-caches/" + url.PathEscape(f.rack)
	body := controller.CacheRegistration{URL: f.url, TTLSeconds: f.ttl.Seconds()}
	failing, first := false, true
	t := time.NewTicker(f.ttl / 3)
	defer t.Stop()
	for {
		err := cl.Do(ctx, http.MethodPut, path, body, nil)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("rack cache: cannot register with the controller; retrying (the rack's nodes fetch from the controller meanwhile)", "rack", f.rack, "err", err)
			failing = true
		case err == nil && (failing || first):
			log.Info("rack cache: registered with the controller; the rack's nodes fetch their image here", "rack", f.rack, "url", f.url, "ttl", f.ttl)
			failing, first = false, false
		}
		select {
		case <-ctx.Done():
			rm, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := cl.Do(rm, http.MethodDelete, path, nil, nil); err != nil {
				log.Warn("rack cache: could not remove the registration; it lapses by itself", "rack", f.rack, "after", f.ttl, "err", err)
			}
			return
		case <-t.C:
		}
	}
}
