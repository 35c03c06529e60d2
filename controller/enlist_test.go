package controller

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/discover"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// enlistController runs a controller (simulated edge, no nodes) with the
// given features until the test ends.
func enlistController(t *testing.T, features ...Feature) *Controller {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &SimConfig{Nodes: 0}, Features: features}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Controller, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(enlistLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), func(c *Controller) { ready <- c })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	select {
	case c := <-ready:
		return c
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	return nil
}

type enlistLogWriter struct{ t *testing.T }

func (w enlistLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func enlistAck(mac string, ip netip.Addr) dhcp.Event {
	hw, _ := net.ParseMAC(mac)
	return dhcp.Event{Type: "ACK", At: time.Now(), Client: dhcp.Client{MAC: hw}, IP: ip}
}

// waitEnlisted polls the store until the BMC's enlistment has the status.
func waitEnlisted(t *testing.T, db *store.DB, mac, status string) store.BMCEnlistment {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := db.Enlistment(context.Background(), mac)
		if err == nil && e.Status == status {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("enlistment of %s = %+v, %v; want status %s", mac, e, err, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The enlistment feature driven by real dhcp.Event values against real
// simulated BMCs over loopback: unknown BMCs become Discovered nodes with
// their survey, BMCs a manifest or an existing node expects become that
// node, a mismatch is refused, a failing BMC is retried on a later lease,
// repeated leases are probed once, other subnets and message types are
// ignored, and everything is audited and listed by the API. The login
// that worked is stored sealed and the certificate pinned.
func TestEnlistFeature(t *testing.T) {
	t.Parallel()
	nodes := make([]redfishsim.Node, 5)
	for i := range nodes {
		nodes[i] = redfishsim.SampleNode(500 + i)
	}
	fleet, err := redfishsim.Start(redfishsim.Config{First: netip.MustParseAddr("127.14.0.1")}, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	sims := fleet.BMCs()
	mac := func(i int) string { return nodes[i].Hardware.BMC.MAC }
	serial := func(i int) string { return nodes[i].Hardware.System.Serial }

	e, err := NewEnlister(EnlistConfig{
		Subnets:     []netip.Prefix{netip.MustParsePrefix("127.14.0.0/24")},
		Credentials: []discover.Credential{{Username: "admin", Password: "not-this-one"}, {Username: "admin", Password: "password"}},
		Expected: []ExpectedBMC{
			{Node: model.Node{Name: "r1-n03", Identity: model.Identity{Rack: "r1", Slot: 3}, Profile: "hgx-h100-8gpu"}, BMCMAC: mac(2)},
			{Node: model.Node{Name: "r1-n04", Identity: model.Identity{Rack: "r1", Slot: 4, Serial: "SOMEONE-ELSE"}}, BMCMAC: strings.ToUpper(mac(3))},
		},
		Concurrency: 2, HostTimeout: 10 * time.Second, RetryAfter: 300 * time.Millisecond, ProbeDelay: time.Millisecond,
		HTTPSPort: sims[0].Addr().Port(), HTTPPort: 1, NoIPMI: true,
		Client: bmc.New(bmc.Config{Timeout: 5 * time.Second}),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := enlistController(t, e)
	ctx := context.Background()
	db := c.Store
	// Slot 2 was declared (rackstrap apply) with the serial of BMC 1.
	if _, _, err := db.CreateNode(ctx, model.Node{Name: "r1-n02", Identity: model.Identity{Rack: "r1", Slot: 2, Serial: strings.ToLower(serial(1))}}, "test"); err != nil {
		t.Fatal(err)
	}
	sims[4].SetFaults(redfishsim.Faults{Refuse: true})

	// Noise first: another subnet, an OFFER, a malformed MAC.
	e.DHCPEvent(enlistAck(mac(0), netip.MustParseAddr("10.0.0.9")))
	offer := enlistAck(mac(0), sims[0].Addr().Addr())
	offer.Type = "OFFER"
	e.DHCPEvent(offer)
	e.DHCPEvent(dhcp.Event{Type: "ACK", IP: sims[0].Addr().Addr(), Client: dhcp.Client{MAC: net.HardwareAddr{1, 2}}})
	pxe := enlistAck(mac(0), sims[0].Addr().Addr())
	pxe.Client.PXE, pxe.Client.HasArch = true, true // a host network-booting, not a BMC
	e.DHCPEvent(pxe)
	for i := range sims {
		for range 3 { // a lease and its renewals: one probe
			e.DHCPEvent(enlistAck(mac(i), sims[i].Addr().Addr()))
		}
	}

	got := waitEnlisted(t, db, mac(0), store.EnlistEnrolled)
	wantNode := "bmc-" + strings.ReplaceAll(mac(0), ":", "")
	if got.Node != wantNode || got.Serial != serial(0) || got.Vendor != "Rackstrap Sim" || got.Model != "RS-8GPU-H100" ||
		len(got.HostMACs) != 2 || got.UUID != nodes[0].Hardware.System.UUID || got.Firmware != "1.4.2" || got.Endpoint != sims[0].Endpoint() {
		t.Errorf("enlistment of an unknown BMC = %+v", got)
	}
	n, err := db.GetNode(ctx, wantNode)
	if err != nil {
		t.Fatal(err)
	}
	if n.Identity.Serial != serial(0) || n.Identity.BMC != sims[0].Endpoint() || !slices.Equal(n.Identity.MACs, got.HostMACs) {
		t.Errorf("node of an unknown BMC = %+v", n)
	}
	login, err := db.BMCLogin(ctx, wantNode)
	if err != nil || login.Username != "admin" || login.PasswordSealed == "" || strings.Contains(login.PasswordSealed, "password") || len(login.CertSHA256) != 64 {
		t.Errorf("stored login = %+v, %v; want the working login sealed and the certificate pinned", login, err)
	}

	if got := waitEnlisted(t, db, mac(1), store.EnlistEnrolled); got.Node != "r1-n02" {
		t.Errorf("BMC with a declared serial became node %q, want r1-n02", got.Node)
	}
	if n, _ := db.GetNode(ctx, "r1-n02"); n.Identity.BMC != sims[1].Endpoint() || n.Identity.UUID == "" || n.Identity.Rack != "r1" {
		t.Errorf("declared node after enlistment = %+v", n.Identity)
	}
	if got := waitEnlisted(t, db, mac(2), store.EnlistEnrolled); got.Node != "r1-n03" {
		t.Errorf("BMC the manifest expects by MAC became node %q, want r1-n03", got.Node)
	}
	if n, _ := db.GetNode(ctx, "r1-n03"); n.Identity.Serial != serial(2) || n.Identity.Slot != 3 || n.Profile != "hgx-h100-8gpu" {
		t.Errorf("manifest node after enlistment = %+v", n)
	}
	if got := waitEnlisted(t, db, mac(3), "mismatched"); got.Node != "" || !strings.Contains(got.Message, "SOMEONE-ELSE") {
		t.Errorf("mismatched BMC = %+v", got)
	}
	if _, err := db.GetNode(ctx, "r1-n04"); err == nil {
		t.Error("a node was made for a slot whose BMC reports another serial")
	}
	failed := waitEnlisted(t, db, mac(4), store.EnlistFailed)
	if failed.Class != bmc.ClassUnreachable {
		t.Errorf("failing BMC = %+v", failed)
	}

	// The failing BMC comes up; its next lease (after RetryAfter) enrols it.
	sims[4].SetFaults(redfishsim.Faults{})
	time.Sleep(400 * time.Millisecond)
	e.DHCPEvent(enlistAck(mac(4), sims[4].Addr().Addr()))
	if got := waitEnlisted(t, db, mac(4), store.EnlistEnrolled); got.Attempts != 2 {
		t.Errorf("retried BMC = %+v, want 2 attempts", got)
	}
	// Renewals of enrolled BMCs probe nothing.
	before := sims[0].Requests()
	e.DHCPEvent(enlistAck(mac(0), sims[0].Addr().Addr()))
	time.Sleep(200 * time.Millisecond)
	if after := sims[0].Requests(); after != before {
		t.Errorf("a renewal of an enrolled BMC sent %d requests", after-before)
	}
	if p := e.probes.Load(); p != 6 {
		t.Errorf("%d probes, want 6 (one per BMC, one retry)", p)
	}

	// The API lists them.
	resp, err := http.Get("http://" + c.API + "/api/v1/bmc-enlistments")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var list struct{ Enlistments []store.BMCEnlistment }
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list.Enlistments) != 5 {
		t.Errorf("GET /api/v1/bmc-enlistments = %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "password") {
		t.Error("the API shows a password")
	}
	entries, err := db.ListAudit(ctx, store.AuditFilter{Node: wantNode})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range entries {
		actions = append(actions, a.Action)
	}
	for _, a := range entries {
		if a.Action == "node.create" && !strings.Contains(string(a.Detail), `"state":"Discovered"`) {
			t.Errorf("node created as %s, want Discovered", a.Detail)
		}
	}
	for _, want := range []string{"node.create", "bmc.enlist", "bmc.cert.pin", "bmc.credentials.set"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit of %s has %v, want %s", wantNode, actions, want)
		}
	}
}

func TestNewEnlisterRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]EnlistConfig{
		"no subnet":   {},
		"ipv6 subnet": {Subnets: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}},
		"bad mac":     {Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Expected: []ExpectedBMC{{Node: model.Node{Name: "n"}, BMCMAC: "zz"}}},
	} {
		if _, err := NewEnlister(cfg); err == nil {
			t.Errorf("%s: NewEnlister accepted %+v", name, cfg)
		}
	}
}
