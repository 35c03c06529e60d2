package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/pxe/artifact"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	boothttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/ipxe"
	"github.com/rackstrap/rackstrap/pxe/tftp"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// netSeq gives each harness its own 127.N.0.0/16 so parallel tests do not
// share addresses.
var netSeq atomic.Int32

// artifacts are the files the boot servers serve.
var artifacts = map[string]int{
	"undionly.kpxe": 70_000,
	"ipxe.efi":      1_000_000,
	"vmlinuz":       300_000,
	"initrd.gz":     200_000,
	"image.raw":     600_000,
}

// harness is a boot network on loopback: the real pxe/dhcp, pxe/tftp and
// pxe/http servers, a fake controller API, and one rack relay.
type harness struct {
	t       *testing.T
	net     netip.Prefix
	dir     string
	files   map[string][]byte
	dhcp    *dhcp.Server
	events  *dhcpEvents
	tftp    *tftp.Server
	boot    *boothttp.Server
	ctl     *controller
	rack    *Rack
	relay   netip.Addr
	bootURL string
	rackCfg Config // the first rack's configuration
}

type dhcpEvents struct {
	mu  sync.Mutex
	evs []dhcp.Event
}

func (d *dhcpEvents) DHCPEvent(e dhcp.Event) { d.mu.Lock(); d.evs = append(d.evs, e); d.mu.Unlock() }
func (d *dhcpEvents) acks(mac string) []dhcp.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []dhcp.Event
	for _, e := range d.evs {
		if e.Type == "ACK" && e.Client.MAC.String() == mac {
			out = append(out, e)
		}
	}
	return out
}

func freeUDPPort(t testing.TB, a netip.Addr) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

type harnessOptions struct {
	slots     int // Locations for slots 1..slots
	bootDelay time.Duration
	slowRate  int64
	locations []dhcp.Location // more option 82 mappings
	tftpMax   int             // TFTP MaxTransfers
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	n := 70 + netSeq.Add(1)
	h := &harness{t: t, net: netip.MustParsePrefix(fmt.Sprintf("127.%d.0.0/16", n)), dir: t.TempDir(), files: map[string][]byte{}, events: &dhcpEvents{}}
	h.relay = netip.MustParseAddr(fmt.Sprintf("127.%d.0.1", n))
	server := netip.MustParseAddr(fmt.Sprintf("127.%d.0.254", n))
	for name, size := range artifacts {
		b := make([]byte, size)
		rand.Read(b)
		h.files[name] = b
		if err := os.WriteFile(filepath.Join(h.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := artifact.NewDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	log := testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	serve := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}

	h.tftp, err = tftp.New(tftp.Config{Addr: netip.AddrPortFrom(server, 0), MaxTransfers: o.tftpMax}, log, src)
	if err != nil {
		t.Fatal(err)
	}
	serve("tftp", h.tftp.Serve)
	<-h.tftp.Ready()

	h.ctl = newController(t)
	h.boot, err = boothttp.New(boothttp.Config{Addr: netip.AddrPortFrom(server, 0)}, log, boothttp.Deps{Files: src, Scripts: h.ctl})
	if err != nil {
		t.Fatal(err)
	}
	serve("http", h.boot.Serve)
	<-h.boot.Ready()
	h.bootURL = "http://" + h.boot.Addr().String()
	h.ctl.bootURL = h.bootURL
	h.ctl.image = h.files["image.raw"]

	relayPort := freeUDPPort(t, h.relay)
	var locs []dhcp.Location
	for s := 1; s <= o.slots; s++ {
		locs = append(locs, Location("r01", s, h.relay))
	}
	h.dhcp, err = dhcp.New(dhcp.Config{
		Addr: server, Port: freeUDPPort(t, server), RelayPort: relayPort,
		Subnets: []dhcp.Subnet{{
			Prefix:     h.net,
			Pools:      []dhcp.Range{{Start: netip.MustParseAddr(fmt.Sprintf("127.%d.1.10", n)), End: netip.MustParseAddr(fmt.Sprintf("127.%d.7.250", n))}},
			NextServer: server,
		}},
		Locations: append(locs, o.locations...),
		Boot:      dhcp.Boot{BIOS: "undionly.kpxe", UEFIx64: "ipxe.efi", ScriptURL: h.bootURL + "/ipxe?mac={mac}"},
	}, log, dhcp.Deps{Store: &dhcp.MemStore{}, Observer: h.events})
	if err != nil {
		t.Fatal(err)
	}
	serve("dhcp", h.dhcp.Serve)
	<-h.dhcp.Ready()

	h.rackCfg = Config{
		DHCPServer: netip.AddrPortFrom(server, h.dhcp.Port()),
		RelayAddr:  h.relay, RelayPort: relayPort,
		TFTPPort:    h.tftp.Addr().Port(),
		BootDelay:   o.bootDelay,
		DHCPTimeout: 500 * time.Millisecond,
		Poll:        20 * time.Millisecond,
		SlowRate:    o.slowRate,
		Log:         log,
	}
	h.rack, err = NewRack(h.rackCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.rack.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// machine makes a BMC for SampleNode(i) and attaches its host.
func (h *harness) machine(i int, opt HostOptions) (*redfishsim.BMC, *Host) {
	h.t.Helper()
	b, err := redfishsim.New(redfishsim.SampleNode(i), redfishsim.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	host := h.rack.Attach(b, opt)
	h.ctl.enrol(host.MAC().String(), fmt.Sprintf("node-%d", i))
	return b, host
}

// redfish sends one request to b's Redfish handler and returns the status.
func redfish(t testing.TB, b *redfishsim.BMC, method, path string, body any) {
	t.Helper()
	js, _ := json.Marshal(body)
	req := httptest.NewRequest(method, path, strings.NewReader(string(js)))
	req.SetBasicAuth("admin", "password")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		t.Fatalf("%s %s = %d %s", method, path, rec.Code, rec.Body)
	}
}

// pxeOnce sets a one-time PXE boot in mode ("Legacy" or "UEFI").
func pxeOnce(t testing.TB, b *redfishsim.BMC, mode string) {
	redfish(t, b, "PATCH", "/redfish/v1/Systems/1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": mode,
	}})
}

func reset(t testing.TB, b *redfishsim.BMC, kind string) {
	redfish(t, b, "POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", map[string]string{"ResetType": kind})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; %s", d, what, state())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// controller is a fake of the controller's agent API (controller/api) and
// of its iPXE scripts: enrolment tokens are single use, a netboot check-in
// queues an image task, a first-boot check-in a burn-in task.
type controller struct {
	t       *testing.T
	srv     *httptest.Server
	bootURL string
	image   []byte

	mu       sync.Mutex
	nodes    map[string]string // mac → node
	tokens   map[string]token  // enrolment tokens
	sessions map[string]string // session → node
	tasks    map[string][]*ctlTask
	checkIns []checkIn
	results  map[string]ctlResult // by task key
	seq      int

	// unavailable answers this many agent requests with 503 (a controller
	// restarting); redeliver hands each task out once more after its first
	// result (a controller that lost the result in a crash).
	unavailable atomic.Int32
	redeliver   atomic.Bool
	// imageURL, when set before hosts boot, gives a node's image URL (the
	// controller's RackCacheImage: its rack's cache); it must not block.
	imageURL func(node, url, sha256 string) string
}

type token struct {
	node, phase string
	used        bool
}

type ctlTask struct {
	agentTask
	done   bool
	handed int
}

type checkIn struct {
	Node, Phase, Token string
	Inventory          inventory.Inventory
	Remote             string
}

type ctlResult struct {
	Node, Kind string
	OK         bool
	Message    string
	Result     json.RawMessage
	Reports    int
}

func newController(t *testing.T) *controller {
	c := &controller{t: t, nodes: map[string]string{}, tokens: map[string]token{}, sessions: map[string]string{},
		tasks: map[string][]*ctlTask{}, results: map[string]ctlResult{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/agent/checkin", c.checkIn)
	mux.HandleFunc("GET /api/v1/agent/task", c.task)
	mux.HandleFunc("POST /api/v1/agent/task/result", c.result)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.unavailable.Add(-1) >= 0 {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		c.unavailable.Store(0)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *controller) enrol(mac, node string) {
	c.mu.Lock()
	c.nodes[mac] = node
	c.mu.Unlock()
}

func (c *controller) newToken(node, phase string) string {
	c.seq++
	tok := fmt.Sprintf("%s-%s-%d", phase, node, c.seq)
	c.tokens[tok] = token{node: node, phase: phase}
	return tok
}

// Script renders the node's netboot script with a fresh enrolment token
// (unknown MACs wait, as the controller's scripts do).
func (c *controller) Script(_ context.Context, mac net.HardwareAddr) ([]byte, error) {
	c.mu.Lock()
	node, ok := c.nodes[mac.String()]
	var tok string
	if ok {
		tok = c.newToken(node, "netboot")
	}
	c.mu.Unlock()
	if !ok {
		return ipxe.Render(ipxe.Script{MAC: mac.String(), Action: ipxe.Wait, Chain: c.bootURL + "/ipxe?mac=" + mac.String(), Retry: time.Second})
	}
	return ipxe.Render(ipxe.Script{
		Node: node, MAC: mac.String(), Action: ipxe.Boot,
		Kernel:  c.bootURL + "/vmlinuz",
		Initrds: []string{c.bootURL + "/initrd.gz"},
		Cmdline: ipxe.Cmdline{}.Set("console", "ttyS0,115200").Flag("quiet").
			Set("rackstrap.server", c.srv.URL).Set("rackstrap.token", tok).Set("rackstrap.phase", "netboot"),
	})
}

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}

func (c *controller) checkIn(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Phase        string          `json:"phase"`
		AgentVersion string          `json:"agentVersion"`
		Inventory    json.RawMessage `json:"inventory"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	inv, err := inventory.Parse(in.Inventory)
	if err != nil {
		http.Error(w, "inventory: "+err.Error(), http.StatusBadRequest)
		return
	}
	tok := bearer(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	tk, ok := c.tokens[tok]
	switch {
	case !ok || tk.used:
		http.Error(w, "token invalid or used", http.StatusUnauthorized)
		return
	case tk.phase != in.Phase:
		http.Error(w, "wrong phase", http.StatusConflict)
		return
	}
	tk.used = true
	c.tokens[tok] = tk
	c.checkIns = append(c.checkIns, checkIn{Node: tk.node, Phase: in.Phase, Token: tok, Inventory: *inv, Remote: r.RemoteAddr})
	c.seq++
	session := fmt.Sprintf("session-%s-%d", tk.node, c.seq)
	c.sessions[session] = tk.node
	key := fmt.Sprintf("%s/%s/%d", tk.node, in.Phase, c.seq)
	switch in.Phase {
	case "netboot":
		sum := sha256.Sum256(c.image)
		url := c.bootURL + "/image.raw"
		if c.imageURL != nil {
			url = c.imageURL(tk.node, url, hex.EncodeToString(sum[:]))
		}
		payload, _ := json.Marshal(map[string]any{
			"url": url, "sha256": hex.EncodeToString(sum[:]), "size": len(c.image),
			"server": c.srv.URL, "firstBootToken": c.newToken(tk.node, "firstboot"),
		})
		c.tasks[tk.node] = append(c.tasks[tk.node], &ctlTask{agentTask: agentTask{Key: key + "/image", Node: tk.node, Kind: "image", Payload: payload}})
	case "firstboot":
		payload, _ := json.Marshal(map[string]any{"checks": []string{"gpu-burn", "memtest"}})
		c.tasks[tk.node] = append(c.tasks[tk.node], &ctlTask{agentTask: agentTask{Key: key + "/burn-in", Node: tk.node, Kind: "burn-in", Payload: payload}})
	}
	json.NewEncoder(w).Encode(map[string]any{"node": tk.node, "accepted": true, "session": session})
}

func (c *controller) task(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	node, ok := c.sessions[bearer(r)]
	if !ok {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	for _, t := range c.tasks[node] {
		if !t.done {
			t.handed++
			json.NewEncoder(w).Encode(map[string]any{"key": t.Key, "node": t.Node, "kind": t.Kind, "payload": t.Payload, "status": "taken"})
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *controller) result(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Key     string          `json:"key"`
		OK      bool            `json:"ok"`
		Message string          `json:"message"`
		Result  json.RawMessage `json:"result"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	node, ok := c.sessions[bearer(r)]
	if !ok {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	for _, t := range c.tasks[node] {
		if t.Key != in.Key {
			continue
		}
		prev := c.results[in.Key]
		t.done = !c.redeliver.Load() || prev.Reports > 0
		c.results[in.Key] = ctlResult{Node: node, Kind: t.Kind, OK: in.OK, Message: in.Message, Result: in.Result, Reports: prev.Reports + 1}
		io.WriteString(w, `{"recorded":true}`)
		return
	}
	http.Error(w, "no such task", http.StatusNotFound)
}

// resultOf returns the node's result of the task of kind, if reported.
func (c *controller) resultOf(node, kind string) (ctlResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.results {
		if r.Node == node && r.Kind == kind {
			return r, true
		}
	}
	return ctlResult{}, false
}

func (c *controller) checkInsOf(node string) []checkIn {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []checkIn
	for _, ci := range c.checkIns {
		if ci.Node == node {
			out = append(out, ci)
		}
	}
	return out
}
