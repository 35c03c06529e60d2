package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/discover"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// EnlistConfig configures BMC DHCP enlistment: BMCs that take a lease from
// the controller's DHCP server on a BMC subnet are probed (Redfish service
// root, IPMI), surveyed with the first login that works, and enrolled as
// Discovered nodes.
type EnlistConfig struct {
	// Subnets are the BMC networks: only leases in them are probed.
	Subnets []netip.Prefix
	// Credentials are tried after the controller's default BMC login
	// (EdgeConfig.Login), in order. Keep the list short: BMCs lock an
	// account after a few failed logins.
	Credentials []discover.Credential
	// Expected are a manifest's slots: a BMC whose serial or MAC one of
	// them expects becomes that node.
	Expected []ExpectedBMC
	// Concurrency bounds the BMCs probed at once (default 8).
	Concurrency int
	// HostTimeout bounds the probe and survey of one BMC (default 30s).
	HostTimeout time.Duration
	// RetryAfter is how long a BMC whose probe failed is left alone; the
	// first lease event after it probes it again (default 30s).
	RetryAfter time.Duration
	// ProbeDelay is how long after its lease a BMC is first probed: it
	// needs a moment to put the address on its interface (default 2s).
	ProbeDelay time.Duration
	// QueueSize bounds the lease events waiting (default 1024); beyond it
	// events are dropped and counted (a later lease brings the BMC back).
	QueueSize int
	// MaxBMCs bounds the BMCs remembered for deduplication (default 65536).
	MaxBMCs int
	// HTTPSPort, HTTPPort and IPMIPort are where BMCs are probed (defaults
	// 443, 80, 623); NoIPMI leaves IPMI out.
	HTTPSPort, HTTPPort, IPMIPort uint16
	NoIPMI                        bool
	// Desired is what the nodes enlistment creates itself are left asking
	// for (default model.WantEnrolled: enrolled and parked until an operator
	// provisions them); a manifest slot's node keeps the manifest's.
	Desired model.Desired
	// Client drives the BMCs (default: the controller's, Runtime.BMC, or
	// a new one).
	Client *bmc.Client
}

// ExpectedBMC is one slot of a manifest as enlistment matches it: the node
// the slot declares and the BMC MAC it expects (the serial is the node's).
type ExpectedBMC struct {
	Node   model.Node
	BMCMAC string
}

func (c EnlistConfig) withDefaults() EnlistConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.HostTimeout <= 0 {
		c.HostTimeout = 30 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 30 * time.Second
	}
	if c.Desired == "" {
		c.Desired = model.WantEnrolled
	}
	if c.ProbeDelay <= 0 {
		c.ProbeDelay = 2 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.MaxBMCs <= 0 {
		c.MaxBMCs = 65536
	}
	return c
}

// Enlister is the BMC DHCP enlistment Feature.
type Enlister struct {
	cfg   EnlistConfig
	queue chan dhcp.Event

	// set by Start
	db     *store.DB
	box    *secrets.Box
	log    *slog.Logger
	client *bmc.Client
	login  edge.Login

	mu   sync.Mutex
	bmcs map[string]*enlistState // by BMC MAC

	storeMu sync.Mutex // one enlistment's store work at a time

	dropped atomic.Int64
	probes  atomic.Int64
}

// enlistState is what the Enlister remembers of one BMC, to probe it once
// per address and not again while a probe runs.
type enlistState struct {
	ip       netip.Addr
	running  bool
	enrolled bool // the last probe at ip enrolled it
	tried    time.Time
}

const enlistActor = "bmc-enlist"

// NewEnlister checks cfg and returns the Feature.
func NewEnlister(cfg EnlistConfig) (*Enlister, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Subnets) == 0 {
		return nil, errors.New("bmc enlistment: no BMC subnet; give --bmc-subnet CIDR (the network the BMCs lease addresses on)")
	}
	for i, p := range cfg.Subnets {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("bmc enlistment: BMC subnet %q: want an IPv4 prefix such as 10.0.12.0/24 (DHCP is IPv4)", p)
		}
		cfg.Subnets[i] = p.Masked()
	}
	if _, err := model.ParseDesired(string(cfg.Desired)); err != nil {
		return nil, fmt.Errorf("bmc enlistment: %w", err)
	}
	for _, e := range cfg.Expected {
		if e.BMCMAC == "" {
			continue
		}
		if _, err := model.NormalizeMAC(e.BMCMAC); err != nil {
			return nil, fmt.Errorf("bmc enlistment: node %s: BMC MAC: %w", e.Node.Name, err)
		}
	}
	return &Enlister{cfg: cfg, queue: make(chan dhcp.Event, cfg.QueueSize), bmcs: map[string]*enlistState{}}, nil
}

// Name is the Feature's name.
func (e *Enlister) Name() string { return "bmc-enlist" }

// Start observes the controller's DHCP server, serves the enlistment loop
// and GET /api/v1/bmc-enlistments.
func (e *Enlister) Start(ctx context.Context, rt *Runtime) error {
	if b := rt.Config.Boot; b != nil {
		if b.NoDHCP {
			return errors.New("--bmc-subnet needs the controller's own DHCP server, and --no-dhcp turns it off; drop one of them")
		}
		for _, p := range e.cfg.Subnets {
			if !slices.ContainsFunc(b.DHCP.Subnets, func(s dhcp.Subnet) bool { return s.Prefix.Overlaps(p) }) {
				return fmt.Errorf("BMC subnet %s is none of the DHCP server's subnets: add it with --dhcp-subnet/--dhcp-range so its BMCs get leases", p)
			}
		}
	}
	e.db, e.box, e.log = rt.Store, rt.Secrets, rt.Log.With("feature", e.Name())
	if rt.Config.Edge != nil {
		e.login = rt.Config.Edge.Login
	}
	e.client = e.cfg.Client
	if e.client == nil {
		e.client = rt.BMC
	}
	if e.client == nil {
		e.client = bmc.New(bmc.Config{Logger: rt.Log})
	}
	if rt.Config.Simulate != nil {
		e.log.Warn("bmc enlistment: the simulated edge runs no DHCP server; only lease events given to the feature are enlisted")
	}
	rt.ObserveDHCP(e)
	rt.Go("bmc enlist", e.serve)
	if rt.API == nil {
		return nil
	}
	err := rt.API.Extend(api.Extension{Name: e.Name(), OpenAPI: []byte(enlistOpenAPI), Routes: []api.Route{{
		Method: "GET", Path: "/api/v1/bmc-enlistments", Perm: api.PermRead,
		Handle: func(w http.ResponseWriter, r *http.Request) error {
			list, err := e.db.Enlistments(r.Context())
			if err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, map[string]any{"enlistments": list})
		},
	}}})
	if err != nil {
		return err
	}
	return rt.API.CheckOpenAPI()
}

const enlistOpenAPI = `{"paths":{"/api/v1/bmc-enlistments":{"get":{
  "summary":"BMCs that took a lease on a BMC subnet, what their survey found and the node each became",
  "operationId":"listBMCEnlistments","tags":["bmc"],
  "responses":{"200":{"description":"the enlistments, by BMC MAC","content":{"application/json":{"schema":{
    "type":"object","properties":{"enlistments":{"type":"array","items":{"$ref":"#/components/schemas/BMCEnlistment"}}}}}}}}}}},
 "components":{"schemas":{"BMCEnlistment":{"type":"object","required":["bmcMAC","ip","status","attempts","firstSeen","lastSeen"],"properties":{
  "bmcMAC":{"type":"string"},"ip":{"type":"string"},"endpoint":{"type":"string"},"node":{"type":"string"},
  "status":{"type":"string","enum":["enrolled","failed","mismatched"]},
  "vendor":{"type":"string"},"model":{"type":"string"},"serial":{"type":"string"},"uuid":{"type":"string"},
  "bmcFirmware":{"type":"string"},"hostMACs":{"type":"array","items":{"type":"string"}},
  "quirks":{"type":"array","items":{"type":"string"}},"message":{"type":"string"},"failureClass":{"type":"string"},
  "attempts":{"type":"integer"},"firstSeen":{"type":"string","format":"date-time"},"lastSeen":{"type":"string","format":"date-time"}}}}}}`

// DHCPEvent queues a lease on a BMC subnet; it never blocks the packet path.
// A client that network-boots (PXE, iPXE, UEFI HTTP boot: it sent an
// architecture) is a host, not a BMC, and is left to the boot services.
func (e *Enlister) DHCPEvent(ev dhcp.Event) {
	c := ev.Client
	if ev.Type != "ACK" || len(c.MAC) != 6 || !e.bmcSubnet(ev.IP) || c.HasArch || c.PXE || c.IPXE || c.HTTPBoot {
		return
	}
	select {
	case e.queue <- ev:
	default:
		e.dropped.Add(1)
	}
}

func (e *Enlister) bmcSubnet(ip netip.Addr) bool {
	ip = ip.Unmap()
	return slices.ContainsFunc(e.cfg.Subnets, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// serve probes the BMCs leases announce, at most Concurrency at once,
// until ctx ends (and the probes under way return).
func (e *Enlister) serve(ctx context.Context) error {
	sem := make(chan struct{}, e.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var ev dhcp.Event
		select {
		case <-ctx.Done():
			if n := e.dropped.Load(); n > 0 {
				e.log.Warn("bmc enlistment: lease events dropped (queue full)", "dropped", n)
			}
			return nil
		case ev = <-e.queue:
		}
		mac := ev.Client.MAC.String()
		ip := ev.IP.Unmap()
		if !e.claim(mac, ip) {
			continue
		}
		// One goroutine per BMC claimed (claim dedupes, MaxBMCs bounds
		// them); Concurrency of them probe at once.
		wg.Add(1)
		go func() {
			defer wg.Done()
			enrolled := false
			defer func() { e.release(mac, enrolled) }()
			t := time.NewTimer(e.cfg.ProbeDelay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			enrolled = e.enlist(ctx, mac, ip)
		}()
	}
}

// claim says whether a lease of ip by mac calls for a probe: not while one
// runs, not again for an address the BMC was enrolled at, and for a BMC
// that failed not before RetryAfter.
func (e *Enlister) claim(mac string, ip netip.Addr) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.bmcs[mac]
	if st == nil {
		if len(e.bmcs) >= e.cfg.MaxBMCs {
			e.log.Warn("bmc enlistment: too many BMCs remembered; lease ignored", "bmc_mac", mac, "max", e.cfg.MaxBMCs)
			return false
		}
		st = &enlistState{}
		e.bmcs[mac] = st
	}
	switch {
	case st.running:
		return false
	case st.ip == ip && st.enrolled:
		return false
	case st.ip == ip && time.Since(st.tried) < e.cfg.RetryAfter:
		return false
	}
	st.ip, st.running, st.enrolled, st.tried = ip, true, false, time.Now()
	return true
}

func (e *Enlister) release(mac string, enrolled bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.bmcs[mac]; st != nil {
		st.running, st.enrolled = false, enrolled
	}
}

// credentials are the logins to try: the controller's default first.
func (e *Enlister) credentials() []discover.Credential {
	var out []discover.Credential
	if e.login.Username != "" {
		out = append(out, discover.Credential{Username: e.login.Username, Password: e.login.Password})
	}
	for _, c := range e.cfg.Credentials {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// enlist probes and surveys the BMC at ip and records the outcome. It
// reports whether the BMC was enrolled.
func (e *Enlister) enlist(ctx context.Context, mac string, ip netip.Addr) bool {
	e.probes.Add(1)
	hctx, cancel := context.WithTimeout(ctx, e.cfg.HostTimeout)
	defer cancel()
	rec := store.BMCEnlistment{MAC: mac, IP: ip.String(), Status: store.EnlistFailed}
	creds := e.credentials()
	f, found := discover.Probe(hctx, ip, discover.Config{
		Client: e.client, Credentials: creds, HostTimeout: min(e.cfg.HostTimeout, 5*time.Second),
		HTTPSPort: e.cfg.HTTPSPort, HTTPPort: e.cfg.HTTPPort, IPMIPort: e.cfg.IPMIPort, NoIPMI: e.cfg.NoIPMI,
	})
	// The store work of one enlistment at a time: probes run concurrently,
	// node creation and matching do not race each other (two BMCs of one
	// manifest slot, a serial seen twice).
	e.storeMu.Lock()
	defer e.storeMu.Unlock()
	err := e.enroll(hctx, f, found, creds, &rec)
	if err != nil {
		if rec.Message == "" {
			rec.Message = err.Error()
		}
		e.log.Warn("bmc enlistment failed; retried on a later lease", "bmc_mac", mac, "ip", ip, "class", rec.Class, "err", err)
	} else {
		e.log.Info("bmc enlisted", "bmc_mac", mac, "ip", ip, "node", rec.Node, "serial", rec.Serial, "vendor", rec.Vendor, "model", rec.Model)
	}
	// The outcome is recorded even when ctx ended, on a short deadline of its own.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if rerr := e.db.RecordEnlistment(rctx, rec, enlistActor); rerr != nil {
		e.log.Error("bmc enlistment: record outcome", "bmc_mac", mac, "err", rerr)
		return false
	}
	return err == nil && rec.Status == store.EnlistEnrolled
}

// enroll turns a probe's findings into a node (rec says what happened).
func (e *Enlister) enroll(ctx context.Context, f discover.Found, found bool, creds []discover.Credential, rec *store.BMCEnlistment) error {
	switch {
	case !found:
		rec.Class = bmc.ClassUnreachable
		return fmt.Errorf("nothing at %s answers Redfish or IPMI (yet): the BMC may still be starting", rec.IP)
	case f.Redfish == nil:
		rec.Class = bmc.ClassUnsupported
		return fmt.Errorf("the BMC at %s answers IPMI only: enrol it with 'rackstrap discover --cidr %s/32 --enroll'", rec.IP, rec.IP)
	}
	rec.Vendor = f.Redfish.Vendor
	if len(creds) == 0 {
		rec.Class = bmc.ClassAuth
		return errors.New("no BMC login to try: give the controller a default login (--bmc-password-file) or --bmc-enlist-credentials")
	}
	if !f.Enrolled {
		rec.Class, rec.Message = f.AuthClass, f.AuthError
		return fmt.Errorf("survey of %s: %s", rec.IP, f.AuthError)
	}
	s := f.Survey
	rec.Endpoint, rec.Vendor, rec.Model, rec.Serial, rec.UUID, rec.Firmware = f.Endpoint.Address, enlistFirst(s.Manufacturer, s.Vendor), s.Model, s.Serial, s.UUID, s.BMCFirmware
	for _, m := range s.HostMACs {
		if norm, err := model.NormalizeMAC(m); err == nil {
			rec.HostMACs = append(rec.HostMACs, norm)
		}
	}
	for _, q := range s.Quirks {
		rec.Quirks = append(rec.Quirks, string(q))
	}
	node, why, err := e.nodeFor(ctx, rec)
	if err != nil {
		return err
	}
	if why != "" {
		rec.Status, rec.Message = "mismatched", why
		return errors.New(why)
	}
	rec.Node = node
	id := model.Identity{Serial: rec.Serial, UUID: rec.UUID, BMC: rec.Endpoint, MACs: rec.HostMACs}
	if _, err := e.db.FillIdentity(ctx, node, id, "", enlistActor); err != nil {
		return err
	}
	if prev, err := e.db.Enlistment(ctx, rec.MAC); err == nil && prev.Node == node {
		if _, err := e.db.MoveEnlistedBMC(ctx, node, prev.Endpoint, rec.Endpoint, enlistActor); err != nil {
			return err
		}
	}
	if n, err := e.db.GetNode(ctx, node); err == nil && n.Identity.BMC != rec.Endpoint {
		rec.Message = fmt.Sprintf("node %s keeps its BMC %s; this BMC leased %s", node, n.Identity.BMC, rec.Endpoint)
	}
	if err := e.db.PinBMCCert(ctx, node, f.Endpoint.CertSHA256, enlistActor); err != nil {
		return err
	}
	if f.Endpoint.Username != e.login.Username || f.Endpoint.Password != e.login.Password {
		// Not the default login: store the one that worked, sealed.
		sealed, err := e.box.Seal(f.Endpoint.Password, node)
		if err != nil {
			return fmt.Errorf("seal the BMC login of %s: %w", node, err)
		}
		if err := e.db.SetBMCLogin(ctx, node, f.Endpoint.Username, sealed, enlistActor); err != nil {
			return err
		}
	}
	rec.Status, rec.Class = store.EnlistEnrolled, ""
	return nil
}

// nodeFor finds or creates the node an enrolled BMC is: the one it was
// before, the manifest's slot expecting its serial or its MAC, the node a
// host MAC belongs to (a machine that network-booted first), or a new
// Discovered node named after the BMC MAC. why is set, and no node chosen,
// when a manifest slot expects this BMC MAC with another serial.
func (e *Enlister) nodeFor(ctx context.Context, rec *store.BMCEnlistment) (node, why string, err error) {
	exists := func(name string) bool { _, err := e.db.GetNode(ctx, name); return err == nil }
	if prev, err := e.db.Enlistment(ctx, rec.MAC); err == nil && prev.Node != "" && exists(prev.Node) {
		return prev.Node, "", nil
	}
	if rec.Serial != "" {
		if n, err := e.db.NodeBySerial(ctx, rec.Serial); err == nil {
			return n, "", nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", "", err
		}
	}
	for _, x := range e.cfg.Expected {
		if rec.Serial != "" && strings.EqualFold(x.Node.Identity.Serial, rec.Serial) {
			return e.create(ctx, x.Node, rec)
		}
	}
	for _, x := range e.cfg.Expected {
		if norm, _ := model.NormalizeMAC(x.BMCMAC); norm == "" || norm != rec.MAC {
			continue
		}
		if s := x.Node.Identity.Serial; s != "" && rec.Serial != "" && !strings.EqualFold(s, rec.Serial) {
			return "", fmt.Sprintf("manifest slot %s expects BMC %s with serial %s; the BMC reports serial %s: check the cabling or the manifest", x.Node.Name, rec.MAC, s, rec.Serial), nil
		}
		return e.create(ctx, x.Node, rec)
	}
	for _, m := range rec.HostMACs {
		if n, err := e.db.NodeByMAC(ctx, m); err == nil {
			return n, "", nil
		}
	}
	return e.create(ctx, model.Node{Name: "bmc-" + strings.ReplaceAll(rec.MAC, ":", ""), Desired: e.cfg.Desired}, rec)
}

// create makes node n (a manifest's, or a new one) with what the survey
// found filled in at once, so that nothing reads it half-known.
func (e *Enlister) create(ctx context.Context, n model.Node, rec *store.BMCEnlistment) (string, string, error) {
	id := &n.Identity
	id.Serial, id.UUID, id.BMC = enlistFirst(id.Serial, rec.Serial), enlistFirst(id.UUID, rec.UUID), enlistFirst(id.BMC, rec.Endpoint)
	if len(id.MACs) == 0 {
		id.MACs = rec.HostMACs
	}
	got, _, err := e.db.CreateNode(ctx, n, enlistActor)
	if err != nil {
		return "", "", err
	}
	return got.Name, "", nil
}

// enlistFirst is the first non-empty string.
func enlistFirst(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
