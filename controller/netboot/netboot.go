// Package netboot is the controller's side of network boot: it keeps the
// DHCP server's leases in the store, renders each node's iPXE script with a
// one-time enrolment token, and learns nodes' rack positions from DHCP relay
// information. It adapts the store to the interfaces pxe/ declares.
package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	boothttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/ipxe"
)

// Config says what a netbooting node is given.
type Config struct {
	// BootBase is the URL of the HTTP boot server (artifacts and scripts).
	BootBase string
	// Server is the controller API URL the agent checks in to.
	Server string
	// Kernel and Initrd are artifact paths under BootBase.
	Kernel, Initrd string
	// SiteInitrd, when set, is an artifact path under BootBase appended
	// after Initrd: the site initrd of controller/agenttls (the CA agents
	// trust and the controller's HTTPS URL). See also SetAgentTLS.
	SiteInitrd string
	// Cmdline are extra kernel parameters (console=…).
	Cmdline []string
	// TokenTTL bounds a netboot enrolment token (default 30 min).
	TokenTTL time.Duration
}

// Service implements dhcp.LeaseStore, dhcp.Observer and pxe/http.Scripts.
type Service struct {
	cfg    Config
	db     *store.DB
	log    *slog.Logger
	events chan dhcp.Event
	// Dropped counts DHCP events the observer queue had no room for.
	Dropped atomic.Int64
	// agentTLS, once set, overrides cfg.Server and cfg.SiteInitrd.
	agentTLS atomic.Pointer[agentTLS]
}

type agentTLS struct{ server, initrd string }

// SiteCAFile is where the site initrd puts the CA (controller/agenttls.CAFile).
const SiteCAFile = "etc/rackstrap/ca.crt"

// SetAgentTLS makes the scripts rendered from now on send agents to server
// (the controller's HTTPS API URL) and append siteInitrd (an artifact path
// under BootBase, made by agenttls.WriteSiteInitrd) after the netboot
// initrd, so that agents speak TLS to a controller whose CA they trust.
// Access control calls it once the local CA exists.
func (s *Service) SetAgentTLS(server, siteInitrd string) {
	s.agentTLS.Store(&agentTLS{server: server, initrd: strings.TrimPrefix(siteInitrd, "/")})
	s.log.Info("netboot: agents speak TLS", "server", server, "site initrd", siteInitrd)
}

var (
	_ dhcp.LeaseStore  = (*Service)(nil)
	_ dhcp.Observer    = (*Service)(nil)
	_ boothttp.Scripts = (*Service)(nil)
)

// New validates the configuration.
func New(cfg Config, db *store.DB, log *slog.Logger) (*Service, error) {
	if cfg.BootBase == "" || cfg.Server == "" || cfg.Kernel == "" {
		return nil, errors.New("netboot: BootBase, Server and Kernel are required")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 30 * time.Minute
	}
	cfg.BootBase = strings.TrimSuffix(cfg.BootBase, "/")
	return &Service{cfg: cfg, db: db, log: log, events: make(chan dhcp.Event, 4096)}, nil
}

// Load returns the stored leases.
func (s *Service) Load(ctx context.Context) ([]dhcp.Lease, error) {
	rows, err := s.db.LoadLeases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dhcp.Lease, 0, len(rows))
	for _, r := range rows {
		ip, err := netip.ParseAddr(r.IP)
		if err != nil {
			return nil, fmt.Errorf("stored lease has a bad address %q: %w", r.IP, err)
		}
		out = append(out, dhcp.Lease{IP: ip, MAC: r.MAC, Hostname: r.Hostname, State: dhcp.LeaseState(r.State), Expires: r.Expires, Updated: r.Updated})
	}
	return out, nil
}

// Commit stores a batch of leases durably (one transaction).
func (s *Service) Commit(ctx context.Context, leases []dhcp.Lease) error {
	rows := make([]store.LeaseRow, len(leases))
	for i, l := range leases {
		rows[i] = store.LeaseRow{IP: l.IP.String(), MAC: l.MAC, Hostname: l.Hostname, State: string(l.State), Expires: l.Expires, Updated: l.Updated}
	}
	return s.db.CommitLeases(ctx, rows)
}

// discovered records a machine that network-booted before anyone declared
// it (idempotent by name, so a retrying ROM makes one node).
func (s *Service) discovered(ctx context.Context, mac string) (string, error) {
	n := model.Node{Name: "unknown-" + strings.ReplaceAll(mac, ":", ""), Desired: model.WantEnrolled,
		Identity: model.Identity{MACs: []string{mac}}}
	got, created, err := s.db.CreateNode(ctx, n, "netboot")
	if err != nil {
		return "", err
	}
	if created {
		s.log.Info("netboot: unknown machine booted; recorded for discovery", "node", got.Name, "mac", mac)
	}
	return got.Name, nil
}

// DHCPEvent queues an event without blocking the packet path.
func (s *Service) DHCPEvent(e dhcp.Event) {
	select {
	case s.events <- e:
	default:
		s.Dropped.Add(1)
	}
}

// Serve records what DHCP events teach (nodes' MACs seen, rack positions
// from option 82) until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.events:
			s.record(ctx, e)
		}
	}
}

// record puts a DHCP answer to a known node on its audit timeline (what it
// was told to boot, from which address) and learns its rack position from
// option 82 the first time.
func (s *Service) record(ctx context.Context, e dhcp.Event) {
	if e.Type != "ACK" && e.Type != "PROXY-ACK" && e.Type != "NAK" {
		return
	}
	mac := e.Client.MAC.String()
	node, err := s.db.NodeByMAC(ctx, mac)
	if err != nil {
		if e.Client.Location != nil {
			s.log.Info("dhcp: unknown machine", "mac", mac, "rack", e.Client.Location.Rack, "slot", e.Client.Location.Slot)
		}
		return
	}
	boot := e.Boot.File
	if e.Boot.None || boot == "" {
		boot = "local disk"
	}
	detail := map[string]any{"mac": mac, "ip": e.IP.String(), "boot": boot, "ipxe": e.Client.IPXE}
	if e.Client.HasArch {
		detail["arch"] = e.Client.Arch.String()
	}
	if loc := e.Client.Location; loc != nil {
		detail["relay"], detail["circuitID"], detail["remoteID"] = loc.Relay.String(), loc.CircuitID, loc.RemoteID
	}
	if err := s.db.Audit(ctx, store.AuditInput{Actor: "dhcp", Action: "dhcp." + strings.ToLower(e.Type), Node: node, Outcome: "ok", Detail: detail}); err != nil {
		s.log.Error("dhcp: record answer", "node", node, "err", err)
	}
	loc := e.Client.Location
	if loc == nil || loc.Rack == "" || e.Type != "ACK" {
		return
	}
	n, err := s.db.GetNode(ctx, node)
	switch {
	case err != nil:
		s.log.Error("dhcp: read node", "node", node, "err", err)
	case n.Identity.Rack == "":
		// First sighting: this is how a node's position is learned.
		if _, _, err := s.db.Apply(ctx, store.Change{Node: node, FromSeq: -1, Rack: loc.Rack, Slot: loc.Slot,
			Actor: "dhcp", Action: "node.located"}); err != nil {
			s.log.Error("dhcp: record location", "node", node, "err", err)
		}
	case n.Identity.Rack != loc.Rack || n.Identity.Slot != loc.Slot:
		s.log.Warn("dhcp: node answers from another position than recorded: check the cabling or the manifest", "node", node,
			"recorded", fmt.Sprintf("%s/%d", n.Identity.Rack, n.Identity.Slot), "seen", fmt.Sprintf("%s/%d", loc.Rack, loc.Slot))
	}
}

// Script renders a node's iPXE script. A node being inspected or imaged
// boots the agent with a fresh one-time token (a node rebooted mid-image
// gets its image task again); any other known node boots its disk. An
// unknown machine gets the discovery boot: it is recorded as a Discovered
// node named after its MAC, and its agent checks in its inventory; it waits
// there until its BMC is known (rack manifest or 'rackstrap discover').
func (s *Service) Script(ctx context.Context, hw net.HardwareAddr) ([]byte, error) {
	mac := hw.String()
	name, err := s.db.NodeByMAC(ctx, mac)
	if errors.Is(err, store.ErrNotFound) {
		name, err = s.discovered(ctx, mac)
	}
	if err != nil {
		return nil, err
	}
	n, err := s.db.GetNode(ctx, name)
	if err != nil {
		return nil, err
	}
	discovery := n.State == model.Discovered && n.Identity.BMC == ""
	if !discovery && n.State != model.Inspecting && n.State != model.Validated && n.State != model.Imaging {
		return ipxe.Render(ipxe.Script{Node: n.Name, MAC: mac, Action: ipxe.LocalDisk})
	}
	token, err := s.db.IssueToken(ctx, n.Name, "netboot", s.cfg.TokenTTL, "netboot")
	if err != nil {
		return nil, err
	}
	var cl ipxe.Cmdline
	for _, p := range s.cfg.Cmdline {
		k, v, ok := strings.Cut(p, "=")
		cl = append(cl, ipxe.Param{Key: k, Value: v, HasValue: ok})
	}
	server, site := s.cfg.Server, s.cfg.SiteInitrd
	if at := s.agentTLS.Load(); at != nil {
		server, site = at.server, at.initrd
	}
	cl = append(cl,
		ipxe.Param{Key: "rackstrap.server", Value: server, HasValue: true},
		ipxe.Param{Key: "rackstrap.token", Value: token, HasValue: true},
		ipxe.Param{Key: "rackstrap.phase", Value: "netboot", HasValue: true},
		ipxe.Param{Key: "rackstrap.node", Value: n.Name, HasValue: true},
	)
	if site != "" {
		// The site initrd puts the CA there: agents that know no more
		// than rackstrap.ca= still trust only the controller's CA.
		cl = append(cl, ipxe.Param{Key: "rackstrap.ca", Value: "/" + SiteCAFile, HasValue: true})
	}
	sc := ipxe.Script{Node: n.Name, MAC: mac, Action: ipxe.Boot, Kernel: s.cfg.BootBase + "/" + s.cfg.Kernel, Cmdline: cl}
	if s.cfg.Initrd != "" {
		sc.Initrds = []string{s.cfg.BootBase + "/" + s.cfg.Initrd}
	}
	if site != "" {
		// The kernel unpacks every initrd over the one before: the site's
		// CA and HTTPS URL land in the netboot image's /etc/rackstrap.
		sc.Initrds = append(sc.Initrds, s.cfg.BootBase+"/"+strings.TrimPrefix(site, "/"))
	}
	return ipxe.Render(sc)
}
