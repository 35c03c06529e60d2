package redfishsim

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// client talks to one simulated BMC with basic auth.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
	user string
	pass string
}

func newClient(t *testing.T, b *BMC) *client {
	t.Helper()
	return &client{t: t, base: b.Endpoint(), user: "admin", pass: "password", hc: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}}
}

func (c *client) do(method, path string, body any, hdr ...string) (int, http.Header, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, data
}

// get GETs a resource and decodes it, failing on any status but 200.
func (c *client) get(path string) map[string]any {
	c.t.Helper()
	code, _, data := c.do("GET", path, nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s = %d %s, want 200", path, code, data)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, data)
	}
	return m
}

func (c *client) post(path string, body any, want int) []byte {
	c.t.Helper()
	code, _, data := c.do("POST", path, body)
	if code != want {
		c.t.Fatalf("POST %s %v = %d %s, want %d", path, body, code, data, want)
	}
	return data
}

func startFleet(t *testing.T, cfg Config, nodes ...Node) *Fleet {
	t.Helper()
	f, err := Start(cfg, nodes...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestServiceRootAndAuth(t *testing.T) {
	t.Parallel()
	f := startFleet(t, Config{}, SampleNode(1))
	b := f.BMCs()[0]
	c := newClient(t, b)

	c.user = ""
	root := c.get("/redfish/v1/")
	if root["Vendor"] != "Supermicro" || root["Product"] != "RS-8GPU-H100" || root["UUID"] == "" {
		t.Errorf("service root = %v", root)
	}
	if code, h, _ := c.do("GET", "/redfish/v1/Systems/1", nil); code != 401 || h.Get("WWW-Authenticate") == "" {
		t.Errorf("GET system without credentials = %d %v, want 401 with WWW-Authenticate", code, h)
	}
	c.user, c.pass = "admin", "wrong"
	if code, _, _ := c.do("GET", "/redfish/v1/Systems/1", nil); code != 401 {
		t.Errorf("GET system with a wrong password = %d, want 401", code)
	}

	// Session login, use, logout.
	c.user = ""
	code, h, body := c.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": "admin", "Password": "password"})
	if code != 201 || h.Get("X-Auth-Token") == "" || !strings.HasPrefix(h.Get("Location"), "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("login = %d %v %s", code, h, body)
	}
	tok, loc := h.Get("X-Auth-Token"), h.Get("Location")
	if code, _, _ := c.do("GET", "/redfish/v1/Systems/1", nil, "X-Auth-Token", tok); code != 200 {
		t.Errorf("GET with session token = %d, want 200", code)
	}
	if b.Sessions() != 1 {
		t.Errorf("Sessions() = %d, want 1", b.Sessions())
	}
	if code, _, _ := c.do("DELETE", loc, nil, "X-Auth-Token", tok); code != 204 {
		t.Errorf("logout = %d, want 204", code)
	}
	if code, _, _ := c.do("GET", "/redfish/v1/Systems/1", nil, "X-Auth-Token", tok); code != 401 {
		t.Errorf("GET with a deleted session's token = %d, want 401", code)
	}
	if code, _, _ := c.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": "admin", "Password": "nope"}); code != 401 {
		t.Errorf("login with a wrong password = %d, want 401", code)
	}
}

func TestSessionsAreBounded(t *testing.T) {
	t.Parallel()
	f := startFleet(t, Config{Options: Options{MaxSessions: 3}}, SampleNode(1))
	c := newClient(t, f.BMCs()[0])
	for range 10 {
		c.post("/redfish/v1/SessionService/Sessions", map[string]string{"UserName": "admin", "Password": "password"}, 201)
	}
	if n := f.BMCs()[0].Sessions(); n != 3 {
		t.Errorf("Sessions() after 10 logins = %d, want 3", n)
	}
}

func TestTreeServesTheNode(t *testing.T) {
	t.Parallel()
	node := SampleNode(7)
	f := startFleet(t, Config{}, node)
	c := newClient(t, f.BMCs()[0])
	hw := node.Hardware

	sys := c.get("/redfish/v1/Systems/1")
	for k, want := range map[string]any{"SerialNumber": hw.System.Serial, "UUID": hw.System.UUID, "Manufacturer": hw.System.Vendor, "Model": hw.System.Model, "SKU": hw.System.SKU, "BiosVersion": hw.BIOS.Version, "PowerState": "Off"} {
		if sys[k] != want {
			t.Errorf("system %s = %v, want %v", k, sys[k], want)
		}
	}
	// Every link in the tree resolves.
	seen := map[string]bool{}
	var walk func(path string)
	walk = func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		doc := c.get(path)
		var visit func(v any)
		visit = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if k == "@odata.id" {
						if s, ok := x.(string); ok && !strings.Contains(s, "#") {
							walk(strings.TrimSuffix(s, "/"))
						}
						continue
					}
					if k == "target" || k == "@Redfish.ActionInfo" {
						continue
					}
					visit(x)
				}
			case []any:
				for _, x := range v {
					visit(x)
				}
			}
		}
		visit(doc)
	}
	walk("/redfish/v1")
	if len(seen) < 60 {
		t.Errorf("walked %d resources, want the whole tree (>= 60)", len(seen))
	}
	for _, p := range []string{
		"/redfish/v1/Systems/1/Processors/GPU8", "/redfish/v1/Systems/1/Memory/CPU2_DIMM_H1",
		"/redfish/v1/Systems/1/Storage/1/Drives/Disk.Bay.1", "/redfish/v1/Chassis/1/PCIeDevices/GPU3/PCIeFunctions/1",
		"/redfish/v1/Managers/1/VirtualMedia/CD1", "/redfish/v1/UpdateService/FirmwareInventory/CPLD",
		"/redfish/v1/Managers/1/LogServices/SEL/Entries/1",
	} {
		if !seen[p] {
			t.Errorf("%s is not linked from the tree", p)
		}
	}
	gpu := c.get("/redfish/v1/Systems/1/Processors/GPU1")
	if gpu["ProcessorType"] != "GPU" || gpu["SerialNumber"] != hw.GPUs[0].Serial || gpu["UUID"] != strings.TrimPrefix(hw.GPUs[0].UUID, "GPU-") {
		t.Errorf("GPU1 = %v", gpu)
	}
	dimm := c.get("/redfish/v1/Systems/1/Memory/CPU2_DIMM_H1")
	if st := dimm["Status"].(map[string]any)["State"]; st != "Absent" {
		t.Errorf("empty DIMM state = %v, want Absent", st)
	}
	nic := c.get("/redfish/v1/Systems/1/EthernetInterfaces/NIC1")
	if got := strings.ToLower(nic["MACAddress"].(string)); got != hw.NICs[0].MAC {
		t.Errorf("NIC1 MAC = %v, want %v", got, hw.NICs[0].MAC)
	}
	eth := c.get("/redfish/v1/Managers/1/EthernetInterfaces/eth0")
	addrs := eth["IPv4Addresses"].([]any)
	if addrs[0].(map[string]any)["Address"] != "127.10.0.1" || strings.ToLower(eth["MACAddress"].(string)) != hw.BMC.MAC {
		t.Errorf("BMC eth0 = %v", eth)
	}
}

func TestFlavors(t *testing.T) {
	t.Parallel()
	cases := map[Flavor]struct{ system, manager, chassis, media string }{
		FlavorSupermicro: {"/redfish/v1/Systems/1", "/redfish/v1/Managers/1", "/redfish/v1/Chassis/1", "/redfish/v1/Managers/1/VirtualMedia"},
		FlavorDell:       {"/redfish/v1/Systems/System.Embedded.1", "/redfish/v1/Managers/iDRAC.Embedded.1", "/redfish/v1/Chassis/System.Embedded.1", "/redfish/v1/Systems/System.Embedded.1/VirtualMedia"},
		FlavorHPE:        {"/redfish/v1/Systems/1", "/redfish/v1/Managers/1", "/redfish/v1/Chassis/1", "/redfish/v1/Managers/1/VirtualMedia"},
		FlavorOpenBMC:    {"/redfish/v1/Systems/system", "/redfish/v1/Managers/bmc", "/redfish/v1/Chassis/chassis", "/redfish/v1/Managers/bmc/VirtualMedia"},
		FlavorGeneric:    {"/redfish/v1/Systems/RSIM000001", "/redfish/v1/Managers/BMC", "/redfish/v1/Chassis/1U", "/redfish/v1/Managers/BMC/VirtualMedia"},
	}
	for flavor, want := range cases {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			n := SampleNode(1)
			n.Flavor = flavor
			f := startFleet(t, Config{}, n)
			c := newClient(t, f.BMCs()[0])
			for _, p := range []string{want.system, want.manager, want.chassis, want.media} {
				c.get(p)
			}
		})
	}
	if _, err := New(Node{Hardware: SampleNode(1).Hardware, Flavor: "acme"}, Options{}); err == nil {
		t.Error("New with an unknown flavor succeeded")
	}
}

func TestPowerAndBoot(t *testing.T) {
	t.Parallel()
	f := startFleet(t, Config{}, SampleNode(1))
	b := f.BMCs()[0]
	c := newClient(t, b)
	var mu sync.Mutex
	var powers []string
	var boots []BootEvent
	b.OnPowerChange(func(e PowerEvent) {
		mu.Lock()
		powers = append(powers, fmt.Sprintf("%s->%s by %s", e.From, e.To, e.Cause))
		mu.Unlock()
	})
	b.OnBoot(func(e BootEvent) {
		mu.Lock()
		boots = append(boots, e)
		mu.Unlock()
	})
	reset := "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"

	// One-time PXE boot in UEFI mode, then power on.
	code, _, body := c.do("PATCH", "/redfish/v1/Systems/1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": "UEFI",
	}})
	if code != 204 {
		t.Fatalf("PATCH boot = %d %s", code, body)
	}
	if got := b.BootOverride(); got != (BootOverride{Enabled: "Once", Target: "Pxe", Mode: "UEFI"}) {
		t.Errorf("BootOverride() = %+v", got)
	}
	c.post(reset, map[string]string{"ResetType": "On"}, 204)
	c.post(reset, map[string]string{"ResetType": "On"}, 204) // no-op
	if b.PowerState() != PowerOn {
		t.Fatalf("PowerState() = %s, want On", b.PowerState())
	}
	// The one-time override was consumed by the boot.
	if got := b.BootOverride(); got.Enabled != "Disabled" || got.Target != "None" {
		t.Errorf("BootOverride() after boot = %+v, want Disabled/None", got)
	}
	c.post(reset, map[string]string{"ResetType": "ForceRestart"}, 204)
	c.post(reset, map[string]string{"ResetType": "GracefulShutdown"}, 204)
	c.post(reset, map[string]string{"ResetType": "ForceRestart"}, 409) // off: nothing to restart
	c.post(reset, map[string]string{"ResetType": "PowerCycle"}, 204)   // off: powers on
	c.post(reset, map[string]string{"ResetType": "Explode"}, 400)
	b.HostPowerOff("")

	mu.Lock()
	defer mu.Unlock()
	wantPowers := []string{
		"Off->On by On", "On->Off by ForceRestart", "Off->On by ForceRestart", "On->Off by GracefulShutdown",
		"Off->On by PowerCycle", "On->Off by host",
	}
	if d := cmp.Diff(wantPowers, powers); d != "" {
		t.Errorf("power events (-want +got):\n%s", d)
	}
	var targets []string
	for _, e := range boots {
		targets = append(targets, fmt.Sprintf("%s/%s/%v", e.Target, e.Mode, e.Override))
	}
	if d := cmp.Diff([]string{"Pxe/UEFI/true", "Hdd/UEFI/false", "Hdd/UEFI/false"}, targets); d != "" {
		t.Errorf("boot events (-want +got):\n%s", d)
	}
}

func TestBootPatchValidation(t *testing.T) {
	t.Parallel()
	n := SampleNode(1)
	n.Flavor = FlavorHPE
	f := startFleet(t, Config{}, n)
	b := f.BMCs()[0]
	c := newClient(t, b)
	cases := map[string]struct {
		body any
		want int
	}{
		"unknown target":       {map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Moon"}}, 400},
		"unknown property":     {map[string]any{"Boot": map[string]string{"Bogus": "x"}}, 400},
		"unknown top property": {map[string]any{"Fans": 3}, 400},
		"wrong type":           {map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": 3}}, 400},
		"mode rejected by HPE": {map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": "UEFI"}}, 400},
		"not JSON":             {"{", 400},
		"without mode":         {map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}, 204},
	}
	for name, tc := range cases {
		if code, _, body := c.do("PATCH", "/redfish/v1/Systems/1", tc.body); code != tc.want {
			t.Errorf("%s: PATCH = %d %s, want %d", name, code, body, tc.want)
		}
	}
	// A stale ETag is refused.
	_, h, _ := c.do("GET", "/redfish/v1/Systems/1", nil)
	etag := h.Get("ETag")
	c.post("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, 204)
	if code, _, _ := c.do("PATCH", "/redfish/v1/Systems/1", map[string]any{"AssetTag": "x"}, "If-Match", etag); code != 412 {
		t.Errorf("PATCH with a stale ETag = %d, want 412", code)
	}
}

func TestVirtualMediaLogAndUpdate(t *testing.T) {
	t.Parallel()
	f := startFleet(t, Config{}, SampleNode(1))
	b := f.BMCs()[0]
	c := newClient(t, b)
	cd := "/redfish/v1/Managers/1/VirtualMedia/CD1"
	c.post(cd+"/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "ftp://x/y.iso"}, 400)
	c.post(cd+"/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "http://10.0.0.1/boot.iso", "Inserted": true}, 204)
	c.post(cd+"/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "http://10.0.0.1/other.iso"}, 409)
	if m := c.get(cd); m["Image"] != "http://10.0.0.1/boot.iso" || m["Inserted"] != true {
		t.Errorf("CD1 = %v", m)
	}
	// Booting from the CD reports its image.
	var boot BootEvent
	b.OnBoot(func(e BootEvent) { boot = e })
	c.do("PATCH", "/redfish/v1/Systems/1", map[string]any{"Boot": map[string]string{"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Cd"}})
	b.SetPower(PowerOn, "test")
	if boot.Target != "Cd" || boot.Image != "http://10.0.0.1/boot.iso" {
		t.Errorf("boot event = %+v, want Cd with the inserted image", boot)
	}
	c.post(cd+"/Actions/VirtualMedia.EjectMedia", map[string]any{}, 204)
	if m := b.Media()[0]; m.Inserted || m.Image != "" {
		t.Errorf("CD1 after eject = %+v", m)
	}

	// The event log: the same log under manager, system and chassis.
	b.Log("Critical", "CPU1 IERR")
	for _, p := range []string{"/redfish/v1/Managers/1", "/redfish/v1/Systems/1", "/redfish/v1/Chassis/1"} {
		entries := c.get(p + "/LogServices/SEL/Entries")
		if n := entries["Members@odata.count"].(float64); n != float64(len(b.SEL())) {
			t.Errorf("%s SEL has %v entries, want %d", p, n, len(b.SEL()))
		}
	}
	c.post("/redfish/v1/Chassis/1/LogServices/SEL/Actions/LogService.ClearLog", map[string]any{}, 204)
	if sel := b.SEL(); len(sel) != 1 || sel[0].Message != "Log area reset/cleared" {
		t.Errorf("SEL after clear = %+v", sel)
	}

	// A firmware update runs as a task and changes the reported version.
	body := c.post("/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
		map[string]any{"ImageURI": "http://10.0.0.1/fw/bmc-1.5.0.bin", "Targets": []string{"/redfish/v1/UpdateService/FirmwareInventory/BMC"}}, 202)
	var task map[string]any
	_ = json.Unmarshal(body, &task)
	got := c.get("/redfish/v1/TaskService/Tasks/" + task["Id"].(string))
	if got["TaskState"] != "Completed" {
		t.Errorf("task = %v", got)
	}
	if v := c.get("/redfish/v1/Managers/1")["FirmwareVersion"]; v != "1.5.0" {
		t.Errorf("BMC firmware after update = %v, want 1.5.0", v)
	}
	c.post("/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
		map[string]any{"ImageURI": "http://10.0.0.1/x.bin", "Targets": []string{"/redfish/v1/UpdateService/FirmwareInventory/GPU9"}}, 400)
}

func TestBMCResetDowntime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := startFleet(t, Config{Options: Options{Clock: clock, ResetDowntime: time.Minute}}, SampleNode(1))
	b := f.BMCs()[0]
	c := newClient(t, b)
	c.post("/redfish/v1/Managers/1/Actions/Manager.Reset", map[string]string{"ResetType": "GracefulRestart"}, 204)
	if _, err := c.hc.Get(b.Endpoint() + "/redfish/v1/"); err == nil {
		t.Error("BMC answered during its reset downtime")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	c.get("/redfish/v1/")
}

func TestFaults(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		faults Faults
		check  func(t *testing.T, c *client)
	}{
		"refuse": {Faults{Refuse: true}, func(t *testing.T, c *client) {
			_, err := c.hc.Get(c.base + "/redfish/v1/")
			if err == nil || !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
				t.Errorf("GET = %v, want a reset connection", err)
			}
		}},
		"blackhole": {Faults{Blackhole: true}, func(t *testing.T, c *client) {
			c.hc.Timeout = 300 * time.Millisecond
			_, err := c.hc.Get(c.base + "/redfish/v1/")
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("GET = %v, want a timeout", err)
			}
		}},
		"500 on one path": {Faults{Status: 500, Path: "/redfish/v1/Systems"}, func(t *testing.T, c *client) {
			c.get("/redfish/v1/")
			if code, _, _ := c.do("GET", "/redfish/v1/Systems/1", nil); code != 500 {
				t.Errorf("GET system = %d, want 500", code)
			}
		}},
		"bad credentials": {Faults{BadCredentials: true}, func(t *testing.T, c *client) {
			if code, _, _ := c.do("GET", "/redfish/v1/Systems/1", nil); code != 401 {
				t.Errorf("GET = %d, want 401", code)
			}
		}},
		"malformed JSON": {Faults{MalformedJSON: true}, func(t *testing.T, c *client) {
			_, _, data := c.do("GET", "/redfish/v1/Systems/1", nil)
			if json.Valid(data) {
				t.Errorf("body is valid JSON: %s", data)
			}
		}},
		"wrong content type": {Faults{WrongContentType: true}, func(t *testing.T, c *client) {
			if _, h, _ := c.do("GET", "/redfish/v1/", nil); !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type = %q", h.Get("Content-Type"))
			}
		}},
		"latency": {Faults{Latency: 200 * time.Millisecond}, func(t *testing.T, c *client) {
			start := time.Now()
			c.get("/redfish/v1/")
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Errorf("answered in %v, want >= 200ms", d)
			}
		}},
		"huge body": {Faults{HugeBody: true}, func(t *testing.T, c *client) {
			resp, err := c.hc.Get(c.base + "/redfish/v1/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
			if n != 8<<20 {
				t.Errorf("body ended after %d bytes", n)
			}
		}},
		"redirect loop": {Faults{RedirectLoop: true}, func(t *testing.T, c *client) {
			_, err := c.hc.Get(c.base + "/redfish/v1/")
			if err == nil || !strings.Contains(err.Error(), "redirects") {
				t.Errorf("GET = %v, want too many redirects", err)
			}
		}},
		"slow body": {Faults{SlowBody: 50 * time.Millisecond}, func(t *testing.T, c *client) {
			c.hc.Timeout = 500 * time.Millisecond
			resp, err := c.hc.Get(c.base + "/redfish/v1/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := io.ReadAll(resp.Body); err == nil {
				t.Error("read the slow body to the end within 500ms")
			}
		}},
		"stuck power": {Faults{StuckPower: true}, func(t *testing.T, c *client) {
			c.post("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, 204)
			if ps := c.get("/redfish/v1/Systems/1")["PowerState"]; ps != "Off" {
				t.Errorf("PowerState = %v, want Off", ps)
			}
		}},
		"flapping power": {Faults{FlappingPower: true}, func(t *testing.T, c *client) {
			a := c.get("/redfish/v1/Systems/1")["PowerState"]
			b := c.get("/redfish/v1/Systems/1")["PowerState"]
			if a == b {
				t.Errorf("PowerState read %v twice, want it to flap", a)
			}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := startFleet(t, Config{}, SampleNode(1), SampleNode(2))
			b, healthy := f.BMCs()[0], f.BMCs()[1]
			b.SetFaults(tc.faults)
			tc.check(t, newClient(t, b))
			// The fault is the BMC's own: its neighbour is fine.
			newClient(t, healthy).get("/redfish/v1/Systems/1")
			b.SetFaults(Faults{})
			newClient(t, b).get("/redfish/v1/Systems/1")
		})
	}
}

func TestFleetModes(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"listener per BMC, HTTPS": {First: netip.MustParseAddr("127.11.0.1")},
		"wildcard, HTTP":          {First: netip.MustParseAddr("127.11.1.1"), HTTP: true, Wildcard: true},
		"wildcard, HTTPS":         {First: netip.MustParseAddr("127.11.2.1"), Wildcard: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			nodes := make([]Node, 50)
			for i := range nodes {
				nodes[i] = SampleNode(i)
			}
			f := startFleet(t, cfg, nodes...)
			var wg sync.WaitGroup
			for i, b := range f.BMCs() {
				if want := cfg.First; i == 0 && b.Addr().Addr() != want {
					t.Errorf("first BMC at %s, want %s", b.Addr(), want)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := newClient(t, b)
					if got := c.get("/redfish/v1/Systems/1")["SerialNumber"]; got != b.Serial() {
						t.Errorf("%s serves serial %v, want %s", b.Endpoint(), got, b.Serial())
					}
				}()
			}
			wg.Wait()
			if cfg.Wildcard {
				// An address that is no BMC's is reset.
				hc := newClient(t, f.BMCs()[0]).hc
				_, err := hc.Get(fmt.Sprintf("http://127.11.9.9:%d/redfish/v1/", f.Port()))
				if err == nil {
					t.Error("an address without a BMC answered")
				}
			}
		})
	}
}

// A bare BMC is an http.Handler for httptest.
func TestHandlerWithHTTPTest(t *testing.T) {
	t.Parallel()
	b, err := New(SampleNode(3), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(b)
	defer srv.Close()
	c := &client{t: t, base: srv.URL, hc: srv.Client(), user: "admin", pass: "password"}
	if got := c.get("/redfish/v1/Systems/1")["SerialNumber"]; got != "RSIM000003" {
		t.Errorf("serial = %v", got)
	}
	eth := c.get("/redfish/v1/Managers/1/EthernetInterfaces/eth0")
	if eth["IPv4Addresses"].([]any)[0].(map[string]any)["Address"] != "127.0.0.1" {
		t.Errorf("eth0 = %v", eth)
	}
}

// SampleNode gives distinct identities.
func TestSampleNodesAreDistinct(t *testing.T) {
	t.Parallel()
	seen := map[string]int{}
	for i := range 3000 {
		n := SampleNode(i)
		if err := n.withDefaults().validate(); err != nil {
			t.Fatal(err)
		}
		hw := n.Hardware
		keys := []string{hw.System.Serial, hw.System.UUID, hw.BMC.MAC}
		for _, nic := range hw.NICs {
			keys = append(keys, nic.MAC)
		}
		for _, k := range keys {
			if j, dup := seen[k]; dup {
				t.Fatalf("SampleNode(%d) and SampleNode(%d) share %s", i, j, k)
			}
			seen[k] = i
		}
	}
}
