//go:build conformance

package bmc

// Conformance of the Redfish client code with the DMTF public-rackmount1
// mockup, served read-only from ../shared/testdata/redfish (never copied
// into the project). Run with `make conformance`. The server below answers
// GETs from the mockup's index.json files and keeps PATCHes and the effects
// of Reset/InsertMedia/EjectMedia in memory, as DMTF's Redfish-Mockup-Server
// does, so that writes can be read back.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// mockupDir finds the DMTF mockup: $RACKSTRAP_REDFISH_MOCKUP, or
// ../shared/testdata/redfish next to the repository root; either the
// directory holding public-rackmount1 or the mockup itself.
func mockupDir(t *testing.T) string {
	t.Helper()
	base, from := os.Getenv("RACKSTRAP_REDFISH_MOCKUP"), "$RACKSTRAP_REDFISH_MOCKUP"
	if base == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("Redfish mockup: cannot find the repository root: %v; set RACKSTRAP_REDFISH_MOCKUP to the DMTF mockup directory", err)
		}
		base, from = filepath.Join(root, "..", "shared", "testdata", "redfish"), "the default ../shared/testdata/redfish"
	}
	var tried []string
	for _, dir := range []string{filepath.Join(base, "public-rackmount1"), base} {
		tried = append(tried, filepath.Join(dir, "index.json"))
		if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
			return dir
		}
	}
	t.Fatalf("Redfish mockup not found: looked for %s (from %s); set RACKSTRAP_REDFISH_MOCKUP to the directory of the DMTF public-rackmount1 mockup (or the directory holding it)", strings.Join(tried, " and "), from)
	return ""
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// mockupServer serves a mockup directory with in-memory writes.
type mockupServer struct {
	dir     string
	mu      sync.Mutex
	overlay map[string]map[string]any
	actions []string
}

func (m *mockupServer) load(p string) (map[string]any, bool) {
	if doc, ok := m.overlay[p]; ok {
		return doc, true
	}
	rel := strings.TrimPrefix(p, "/redfish/v1")
	if strings.Contains(rel, "..") {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(m.dir, filepath.FromSlash(rel), "index.json"))
	if err != nil {
		return nil, false
	}
	var doc map[string]any
	if json.Unmarshal(data, &doc) != nil {
		return nil, false
	}
	return doc, true
}

func (m *mockupServer) set(p string, change map[string]any) {
	doc, _ := m.load(p)
	doc = maps.Clone(doc)
	if doc == nil {
		doc = map[string]any{}
	}
	for k, v := range change {
		if sub, ok := v.(map[string]any); ok {
			old, _ := doc[k].(map[string]any)
			merged := maps.Clone(old)
			if merged == nil {
				merged = map[string]any{}
			}
			maps.Copy(merged, sub)
			v = merged
		}
		doc[k] = v
	}
	m.overlay[p] = doc
}

func (m *mockupServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := path.Clean(r.URL.Path)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req map[string]any
	_ = json.Unmarshal(body, &req)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		doc, ok := m.load(p)
		if !ok {
			http.Error(w, `{"error":{"code":"Base.1.8.ResourceNotFound","message":"not found"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	case http.MethodPost:
		m.actions = append(m.actions, fmt.Sprintf("%s %s", p, body))
		switch {
		case p == "/redfish/v1/SessionService/Sessions":
			w.Header().Set("X-Auth-Token", "conformance-token")
			w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/1234567890ABCDEF")
			w.WriteHeader(http.StatusCreated)
			return
		case strings.HasSuffix(p, "/Actions/ComputerSystem.Reset"):
			sys := strings.TrimSuffix(p, "/Actions/ComputerSystem.Reset")
			switch req["ResetType"] {
			case "On", "ForceOn":
				m.set(sys, map[string]any{"PowerState": "On"})
			case "ForceOff", "GracefulShutdown":
				m.set(sys, map[string]any{"PowerState": "Off"})
			}
		case strings.HasSuffix(p, "/Actions/VirtualMedia.InsertMedia"):
			m.set(strings.TrimSuffix(p, "/Actions/VirtualMedia.InsertMedia"), map[string]any{"Image": req["Image"], "Inserted": true})
		case strings.HasSuffix(p, "/Actions/VirtualMedia.EjectMedia"):
			m.set(strings.TrimSuffix(p, "/Actions/VirtualMedia.EjectMedia"), map[string]any{"Image": nil, "Inserted": false})
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		m.actions = append(m.actions, fmt.Sprintf("PATCH %s %s", p, body))
		m.set(p, req)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func serveMockup(t *testing.T) (*mockupServer, Endpoint) {
	t.Helper()
	m := &mockupServer{dir: mockupDir(t), overlay: map[string]map[string]any{}}
	srv := httptest.NewTLSServer(m)
	t.Cleanup(srv.Close)
	return m, Endpoint{Address: srv.URL, Username: "admin", Password: "mockup"}
}

func conformanceClient(t *testing.T) *Client {
	return New(Config{Timeout: 20 * time.Second, SettleTimeout: 3 * time.Second, PollInterval: 20 * time.Millisecond, Logger: testLogger(t)})
}

func TestConformanceInventory(t *testing.T) {
	t.Parallel()
	_, ep := serveMockup(t)
	inv, err := conformanceClient(t).Inventory(context.Background(), ep)
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	want := inventory.System{Vendor: "Contoso", Model: "3500", SKU: "8675309", Serial: "437XR1138R2", UUID: "38947555-7742-3448-3784-823347823834"}
	if d := cmp.Diff(want, inv.System); d != "" {
		t.Errorf("system (-want +got):\n%s", d)
	}
	if inv.BIOS.Version != "P79 v1.45 (12/06/2017)" {
		t.Errorf("BIOS = %+v", inv.BIOS)
	}
	if inv.BMC.FirmwareVersion != "1.45.455b66-rev4" || inv.BMC.Model != "Joo Janta 200" || inv.BMC.MAC != "23:11:8a:33:cf:ea" {
		t.Errorf("BMC = %+v", inv.BMC)
	}
	if inv.Chassis.Serial != "437XR1138R2" || inv.Chassis.Type != "RackMount" {
		t.Errorf("chassis = %+v", inv.Chassis)
	}
	// Host MACs: the two physical ports, as they appear on the wire; not
	// the host interface to the BMC, not the VLAN.
	var macs []string
	for _, n := range inv.NICs {
		macs = append(macs, n.MAC)
	}
	if d := cmp.Diff([]string{"12:44:6a:3b:04:11", "aa:bb:cc:dd:ee:00"}, macs); d != "" {
		t.Errorf("host MACs (-want +got):\n%s", d)
	}
	// CPU2 is Absent; FPGA1 is no CPU.
	wantCPUs := []inventory.CPU{{Socket: "CPU 1", Vendor: "Intel(R) Corporation", Model: "Multi-Core Intel(R) Xeon(R) processor 7xxx Series", Cores: 8, Threads: 16, SpeedMHz: 3700}}
	if d := cmp.Diff(wantCPUs, inv.CPUs); d != "" {
		t.Errorf("CPUs (-want +got):\n%s", d)
	}
	wantMem := inventory.Memory{TotalBytes: 96 << 30, DIMMs: []inventory.DIMM{
		{Slot: "DIMM1", SizeBytes: 32 << 30, Type: "DDR4"}, {Slot: "DIMM2", SizeBytes: 32 << 30, Type: "DDR4"},
		{Slot: "DIMM3", SizeBytes: 32 << 30, Type: "DDR4"}, {Slot: "DIMM4", Empty: true},
	}}
	if d := cmp.Diff(wantMem, inv.Memory); d != "" {
		t.Errorf("memory (-want +got):\n%s", d)
	}
	wantDisks := []inventory.BlockDevice{
		{Model: "3000GT8", Vendor: "Contoso", SizeBytes: 8000000000000, Slot: "SATA Bay 1"},
		{Model: "3000GT7", Vendor: "Contoso", SizeBytes: 4000000000000, Slot: "SATA Bay 2"},
	}
	if d := cmp.Diff(wantDisks, inv.Disks); d != "" {
		t.Errorf("disks (-want +got):\n%s", d)
	}
	fw := map[string]string{}
	for _, c := range inv.Firmware {
		fw[c.ID] = c.Version
	}
	if fw["BMC"] != "1.45.455b66-rev4" || fw["BIOS"] == "" || len(fw) != 3 {
		t.Errorf("firmware = %v", fw)
	}
}

func TestConformanceIdentify(t *testing.T) {
	t.Parallel()
	_, ep := serveMockup(t)
	c := conformanceClient(t)
	root, fp, err := c.ProbeRedfish(context.Background(), Endpoint{Address: ep.Address})
	if err != nil || root.RedfishVersion != "1.15.0" || root.UUID != "92384634-2938-2342-8820-489239905423" || len(fp) != 64 {
		t.Errorf("ProbeRedfish = %+v %q, %v", root, fp, err)
	}
	s, err := c.Survey(context.Background(), ep)
	if err != nil {
		t.Fatalf("Survey: %v", err)
	}
	if s.Serial != "437XR1138R2" || s.PowerState != PowerOn || s.BMCMAC != "23:11:8a:33:cf:ea" || s.BMCFirmware != "1.45.455b66-rev4" || len(s.HostMACs) != 2 {
		t.Errorf("Survey = %+v", s)
	}
}

func TestConformancePowerAndBoot(t *testing.T) {
	t.Parallel()
	m, ep := serveMockup(t)
	c := conformanceClient(t)
	ctx := context.Background()
	if st, err := c.PowerState(ctx, ep); err != nil || st != PowerOn {
		t.Errorf("PowerState = %v, %v", st, err)
	}
	if res, err := c.Power(ctx, ep, ActionOn, "k1"); err != nil || res.Changed {
		t.Errorf("Power on (mockup is on) = %+v, %v; want a no-op", res, err)
	}
	if res, err := c.Power(ctx, ep, ActionOff, "k2"); err != nil || !res.Changed || res.After != "off" {
		t.Errorf("Power off = %+v, %v", res, err)
	}
	// The mockup already holds a one-time UEFI PXE override.
	if res, err := c.SetBootOnce(ctx, ep, BootPXE, true, "k3"); err != nil || res.Changed {
		t.Errorf("SetBootOnce pxe = %+v, %v; want a no-op", res, err)
	}
	if res, err := c.SetBootOnce(ctx, ep, BootDisk, true, "k4"); err != nil || !res.Changed || res.After != "once Hdd UEFI" {
		t.Errorf("SetBootOnce disk = %+v, %v", res, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var sawReset, sawPatch bool
	for _, a := range m.actions {
		sawReset = sawReset || strings.Contains(a, `ComputerSystem.Reset {"ResetType":"ForceOff"}`)
		sawPatch = sawPatch || strings.Contains(a, `"BootSourceOverrideTarget":"Hdd"`)
	}
	if !sawReset || !sawPatch {
		t.Errorf("requests seen by the mockup: %q", m.actions)
	}
}

func TestConformanceVirtualMediaAndSEL(t *testing.T) {
	t.Parallel()
	_, ep := serveMockup(t)
	c := conformanceClient(t)
	ctx := context.Background()
	// The mockup's CD1 (under the system, as on iDRAC) holds an image and
	// offers no InsertMedia action.
	if res, err := c.InsertMedia(ctx, ep, "redfish.dmtf.org/freeImages/freeOS.1.1.iso", "k1"); err != nil || res.Changed {
		t.Errorf("InsertMedia of the inserted image = %+v, %v; want a no-op", res, err)
	}
	if _, err := c.InsertMedia(ctx, ep, "http://10.0.0.1/other.iso", "k2"); FailureClass(err) != ClassUnsupported {
		t.Errorf("InsertMedia where the BMC has no insert action = %v, want class %s", err, ClassUnsupported)
	}
	sel, err := c.SEL(ctx, ep)
	if err != nil {
		t.Fatalf("SEL: %v", err)
	}
	if len(sel) == 0 || sel[0].Message != "System May be Melting" {
		t.Errorf("SEL = %+v", sel)
	}
}
