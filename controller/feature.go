package controller

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// Feature is an optional part of a controller: firmware runs, hand-off
// webhooks, access control, BMC enlistment. Each lives in its own file or
// package and is chosen by serve's flags (Config.Features), so the core in
// this file set stays the same whichever are on.
type Feature interface {
	// Name names the feature in logs and errors.
	Name() string
	// Start wires the feature into rt before any service serves: it may
	// mount API routes (rt.API.Extend), add lifecycle gates
	// (rt.Engine.AddGate), observe DHCP (rt.ObserveDHCP) and start
	// background loops (rt.Go). An error stops the controller from starting.
	Start(ctx context.Context, rt *Runtime) error
}

// Runtime is what a Feature may use of a starting controller.
type Runtime struct {
	Config   Config
	Store    *store.DB
	API      *api.Server
	Engine   *lifecycle.Engine
	Secrets  *secrets.Box
	Registry prometheus.Registerer
	Log      *slog.Logger
	// APIURL is the API's own base URL (http://host:port).
	APIURL string
	// BMC is the client that drives real BMCs; nil with the simulated edge.
	BMC *bmc.Client

	services []service
	dhcpObs  *fanout
	apiTLS   *tls.Config
}

// ServeAPIWithTLS makes the API listener speak TLS with conf (for mutual
// TLS set conf.ClientAuth; agents without a certificate still need
// tls.VerifyClientCertIfGiven or weaker). The last call wins; APIURL says
// https:// from then on, for the features started after it.
func (rt *Runtime) ServeAPIWithTLS(conf *tls.Config) {
	rt.apiTLS = conf
	rt.APIURL = "https://" + strings.TrimPrefix(rt.APIURL, "http://")
}

// Go runs serve for the controller's lifetime, started after the
// built-in services; an error it returns stops the controller.
func (rt *Runtime) Go(name string, serve func(context.Context) error) {
	rt.services = append(rt.services, service{name: name, serve: serve})
}

// ObserveDHCP adds o to the observers of the controller's DHCP server (a
// no-op when it runs none: simulated edge or --no-dhcp).
func (rt *Runtime) ObserveDHCP(o dhcp.Observer) {
	if rt.dhcpObs != nil {
		rt.dhcpObs.add(o)
	}
}

// fanout passes each DHCP event to every observer, in order.
type fanout struct {
	mu  sync.RWMutex
	obs []dhcp.Observer
}

func (f *fanout) add(o dhcp.Observer) {
	f.mu.Lock()
	f.obs = append(f.obs, o)
	f.mu.Unlock()
}

func (f *fanout) DHCPEvent(ev dhcp.Event) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, o := range f.obs {
		o.DHCPEvent(ev)
	}
}
