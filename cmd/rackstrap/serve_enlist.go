package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/controller/model"
)

// enlistServeFlags turn on BMC DHCP enlistment.
type enlistServeFlags struct {
	subnets             []string
	desired             string
	credsFile, manifest string
	concurrency         int
	timeout, retry      time.Duration
	httpsPort, httpPort uint16
	ipmiPort            uint16
	noIPMI              bool
}

func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		f := &enlistServeFlags{}
		f.register(fl)
		return f.feature
	}})
}

func (f *enlistServeFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&f.subnets, "bmc-subnet", nil, "BMC enlistment: `PREFIX` of a BMC network the DHCP server leases on (repeatable); each BMC that takes a lease there is probed, surveyed and enrolled as a Discovered node")
	fl.StringVar(&f.credsFile, "bmc-enlist-credentials", "", "BMC enlistment: YAML `FILE` of BMC logins to try after the default login (as 'rackstrap discover --credentials')")
	fl.StringVar(&f.manifest, "bmc-enlist-manifest", "", "BMC enlistment: rack manifest `FILE` whose slots (serial, bmcMAC) enlisted BMCs are matched to")
	fl.StringVar(&f.desired, "bmc-enlist-desired", "enrolled", "BMC enlistment: what a node enlistment creates asks for: enrolled (parked until provisioned), ready or handed-off (manifest slots keep the manifest's)")
	fl.IntVar(&f.concurrency, "bmc-enlist-concurrency", 8, "BMC enlistment: BMCs probed at once")
	fl.DurationVar(&f.timeout, "bmc-enlist-timeout", 30*time.Second, "BMC enlistment: deadline of the probe and survey of one BMC")
	fl.DurationVar(&f.retry, "bmc-enlist-retry", 30*time.Second, "BMC enlistment: a BMC whose probe failed is probed again on its first lease after this")
	fl.Uint16Var(&f.httpsPort, "bmc-enlist-https-port", 443, "BMC enlistment: Redfish HTTPS port")
	fl.Uint16Var(&f.httpPort, "bmc-enlist-http-port", 80, "BMC enlistment: Redfish HTTP port")
	fl.Uint16Var(&f.ipmiPort, "bmc-enlist-ipmi-port", 623, "BMC enlistment: IPMI UDP port")
	fl.BoolVar(&f.noIPMI, "bmc-enlist-no-ipmi", false, "BMC enlistment: do not probe IPMI")
}

func (f *enlistServeFlags) feature() (controller.Feature, error) {
	if len(f.subnets) == 0 {
		if f.credsFile != "" || f.manifest != "" {
			return nil, fmt.Errorf("--bmc-enlist-credentials and --bmc-enlist-manifest need --bmc-subnet: the BMC network whose leases are enlisted")
		}
		return nil, nil
	}
	desired, err := model.ParseDesired(f.desired)
	if err != nil {
		return nil, fmt.Errorf("--bmc-enlist-desired: %w", err)
	}
	cfg := controller.EnlistConfig{Desired: desired, Concurrency: f.concurrency, HostTimeout: f.timeout, RetryAfter: f.retry,
		HTTPSPort: f.httpsPort, HTTPPort: f.httpPort, IPMIPort: f.ipmiPort, NoIPMI: f.noIPMI}
	for _, s := range f.subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--bmc-subnet %q: %w; give the BMC network, e.g. 10.0.12.0/24", s, err)
		}
		cfg.Subnets = append(cfg.Subnets, p)
	}
	if f.credsFile != "" {
		creds, err := loadCredentials(f.credsFile)
		if err != nil {
			return nil, fmt.Errorf("--bmc-enlist-credentials: %w", err)
		}
		cfg.Credentials = creds
	}
	if f.manifest != "" {
		m, err := manifest.Load(f.manifest)
		if err != nil {
			return nil, fmt.Errorf("--bmc-enlist-manifest: %w", err)
		}
		// Nodes() lists the manifest's nodes in manifest order: pair each
		// with the BMC MAC its entry expects.
		nodes, i := m.Nodes(), 0
		for _, r := range m.Racks {
			for _, n := range r.Nodes {
				cfg.Expected = append(cfg.Expected, controller.ExpectedBMC{Node: nodes[i], BMCMAC: n.BMCMAC})
				i++
			}
		}
	}
	return controller.NewEnlister(cfg)
}
