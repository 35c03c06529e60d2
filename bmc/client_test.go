package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// testLogger writes to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func startSims(t *testing.T, cfg redfishsim.Config, nodes ...redfishsim.Node) *redfishsim.Fleet {
	t.Helper()
	f, err := redfishsim.Start(cfg, nodes...)
	if err != nil {
		t.Fatalf("redfishsim.Start: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func endpointOf(b *redfishsim.BMC) Endpoint {
	return Endpoint{Address: b.Endpoint(), Username: "admin", Password: "password"}
}

func fastClient(t *testing.T) *Client {
	return New(Config{Timeout: 20 * time.Second, SettleTimeout: 5 * time.Second, PollInterval: 20 * time.Millisecond, Logger: testLogger(t)})
}

// A walk that filled every field does not pay for bmclib's second walk of
// the tree (its session login, about fifty GETs, its logout).
func TestInventoryReadsTheTreeOnce(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(43))
	sim := f.BMCs()[0]
	c := fastClient(t)
	if _, err := c.Inventory(context.Background(), endpointOf(sim)); err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	seen := map[string]int{}
	for _, r := range sim.RequestLog() {
		method, path, _ := strings.Cut(r, " ")
		path, _, _ = strings.Cut(path, " ")
		seen[method+" "+path]++
	}
	for req, n := range seen {
		if n > 1 || strings.HasPrefix(req, "POST /redfish/v1/SessionService") {
			t.Errorf("%s sent %d times; want every resource read once, without bmclib's session (log: %q)", req, n, sim.RequestLog())
		}
	}
}

// The whole control path, driven through bmclib against the simulator, for
// every vendor flavor.
func TestEndToEndAgainstSimulator(t *testing.T) {
	t.Parallel()
	for _, flavor := range []redfishsim.Flavor{redfishsim.FlavorSupermicro, redfishsim.FlavorDell, redfishsim.FlavorHPE, redfishsim.FlavorOpenBMC, redfishsim.FlavorGeneric} {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			node := redfishsim.SampleNode(42)
			node.Flavor = flavor
			f := startSims(t, redfishsim.Config{}, node)
			sim := f.BMCs()[0]
			var boots []redfishsim.BootEvent
			var mu sync.Mutex
			sim.OnBoot(func(e redfishsim.BootEvent) { mu.Lock(); boots = append(boots, e); mu.Unlock() })
			var records []Record
			c := New(Config{Timeout: 20 * time.Second, SettleTimeout: 5 * time.Second, PollInterval: 20 * time.Millisecond, Logger: testLogger(t),
				OnOperation: func(r Record) { mu.Lock(); records = append(records, r); mu.Unlock() }})
			ep := endpointOf(sim)
			ctx := context.Background()

			id, err := c.Identify(ctx, ep)
			if err != nil {
				t.Fatalf("Identify: %v", err)
			}
			if id.Serial != node.Hardware.System.Serial || id.UUID != node.Hardware.System.UUID || id.PowerState != PowerOff || len(id.CertSHA256) != 64 {
				t.Errorf("Identify = %+v", id)
			}
			var wantMACs []string
			for _, n := range node.Hardware.NICs {
				wantMACs = append(wantMACs, strings.ToLower(n.MAC))
			}
			if d := cmp.Diff(wantMACs, id.MACs); d != "" {
				t.Errorf("Identify MACs (-want +got):\n%s", d)
			}

			res, err := c.SetBootOnce(ctx, ep, BootPXE, true, "n42/boot/1")
			if err != nil || !res.Changed {
				t.Fatalf("SetBootOnce = %+v, %v", res, err)
			}
			// (HPE's BMC refuses BootSourceOverrideMode: bmclib retried without it.)
			if got := sim.BootOverride(); got.Enabled != "Once" || got.Target != "Pxe" {
				t.Errorf("simulator boot override = %+v", got)
			}
			if res, err := c.SetBootOnce(ctx, ep, BootPXE, true, "n42/boot/2"); err != nil || res.Changed {
				t.Errorf("SetBootOnce again = %+v, %v; want a no-op", res, err)
			}
			if res, err := c.Power(ctx, ep, ActionOn, "n42/on/1"); err != nil || !res.Changed || res.Before != "off" || res.After != "on" {
				t.Fatalf("Power on = %+v, %v", res, err)
			}
			if res, err := c.Power(ctx, ep, ActionOn, "n42/on/2"); err != nil || res.Changed || res.Note != "already on" {
				t.Errorf("Power on again = %+v, %v; want a no-op", res, err)
			}
			mu.Lock()
			if len(boots) != 1 || boots[0].Target != "Pxe" || !boots[0].Override {
				t.Errorf("host boots = %+v, want one PXE boot", boots)
			}
			mu.Unlock()
			if st, err := c.PowerState(ctx, ep); err != nil || st != PowerOn {
				t.Errorf("PowerState = %v, %v", st, err)
			}

			inv, err := c.Inventory(ctx, ep)
			if err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			checkInventory(t, node.Hardware, inv, sim.Addr().Addr().String())

			if res, err := c.InsertMedia(ctx, ep, "http://10.0.0.1/live.iso", "n42/media/1"); err != nil || !res.Changed {
				t.Errorf("InsertMedia = %+v, %v", res, err)
			}
			if res, err := c.InsertMedia(ctx, ep, "http://10.0.0.1/live.iso", "n42/media/2"); err != nil || res.Changed {
				t.Errorf("InsertMedia again = %+v, %v; want a no-op", res, err)
			}
			if res, err := c.EjectMedia(ctx, ep, "n42/eject/1"); err != nil || !res.Changed {
				t.Errorf("EjectMedia = %+v, %v", res, err)
			}
			if m := sim.Media()[0]; m.Inserted {
				t.Errorf("simulator CD after eject = %+v", m)
			}

			sim.Log("Critical", "GPU3 Xid 79")
			sel, err := c.SEL(ctx, ep)
			if err != nil {
				t.Fatalf("SEL: %v", err)
			}
			if len(sel) < 2 || sel[len(sel)-1].Message != "GPU3 Xid 79" {
				t.Errorf("SEL = %+v", sel)
			}
			if _, err := c.ClearSEL(ctx, ep, "n42/sel/1"); err != nil {
				t.Errorf("ClearSEL: %v", err)
			}
			if n := len(sim.SEL()); n != 1 {
				t.Errorf("simulator SEL after clear has %d entries, want 1", n)
			}

			if res, err := c.Power(ctx, ep, ActionOff, "n42/off/1"); err != nil || !res.Changed || sim.PowerState() != redfishsim.PowerOff {
				t.Errorf("Power off = %+v, %v (simulator %s)", res, err, sim.PowerState())
			}
			if n := sim.Sessions(); n != 0 {
				t.Errorf("%d Redfish sessions left open; every operation must log out", n)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range records {
				if strings.Contains(fmt.Sprintf("%+v", r), "password") {
					t.Errorf("audit record holds the password: %+v", r)
				}
				if r.Class != "" {
					t.Errorf("operation %s failed: %s", r.Op, r.Err)
				}
			}
		})
	}
}

// checkInventory compares what the BMC client read with the simulated
// node's hardware.
func checkInventory(t *testing.T, want inventory.Inventory, got *inventory.Inventory, addr string) {
	t.Helper()
	if got.Source != inventory.OutOfBand || got.CollectedAt.IsZero() {
		t.Errorf("inventory source %q at %v", got.Source, got.CollectedAt)
	}
	if d := cmp.Diff(want.System, got.System); d != "" {
		t.Errorf("system (-want +got):\n%s", d)
	}
	if got.BIOS.Version != want.BIOS.Version || got.BMC.FirmwareVersion != want.BMC.FirmwareVersion || got.BMC.MAC != want.BMC.MAC || got.BMC.Address != addr {
		t.Errorf("BIOS %+v BMC %+v", got.BIOS, got.BMC)
	}
	if got.Chassis.Serial != want.Chassis.Serial || got.Chassis.Type != want.Chassis.Type {
		t.Errorf("chassis = %+v", got.Chassis)
	}
	if d := cmp.Diff(want.CPUs, got.CPUs); d != "" {
		t.Errorf("CPUs (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want.Memory, got.Memory); d != "" {
		t.Errorf("memory (-want +got):\n%s", d)
	}
	wantNICs := make([]inventory.NIC, len(want.NICs))
	for i, n := range want.NICs {
		wantNICs[i] = inventory.NIC{MAC: n.MAC, SpeedMbps: n.SpeedMbps, LinkUp: n.LinkUp}
	}
	if d := cmp.Diff(wantNICs, got.NICs); d != "" {
		t.Errorf("NICs (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want.Disks, got.Disks); d != "" {
		t.Errorf("disks (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want.GPUs, got.GPUs); d != "" {
		t.Errorf("GPUs (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want.Firmware, got.Firmware, cmpopts.SortSlices(func(a, b inventory.FirmwareComponent) bool { return a.ID < b.ID })); d != "" {
		t.Errorf("firmware (-want +got):\n%s", d)
	}
}

// Each injected fault ends in a classified failure of that BMC only, within
// the deadline, while the other BMC proceeds.
func TestFaultsAreClassified(t *testing.T) {
	t.Parallel()
	type op func(c *Client, ep Endpoint) error
	powerOn := func(c *Client, ep Endpoint) error {
		_, err := c.Power(context.Background(), ep, ActionOn, "")
		return err
	}
	status := func(c *Client, ep Endpoint) error { _, err := c.PowerState(context.Background(), ep); return err }
	identify := func(c *Client, ep Endpoint) error { _, err := c.Identify(context.Background(), ep); return err }
	inv := func(c *Client, ep Endpoint) error { _, err := c.Inventory(context.Background(), ep); return err }
	cases := map[string]struct {
		faults Faults
		op     op
		class  string
	}{
		"refused":               {Faults{Refuse: true}, powerOn, ClassUnreachable},
		"blackhole":             {Faults{Blackhole: true}, status, ClassUnreachable},
		"500":                   {Faults{Status: 500}, status, ClassBMCError},
		"503 on reset":          {Faults{Status: 503, Path: "/redfish/v1/Systems/1/Actions"}, powerOn, ClassBMCError},
		"bad credentials":       {Faults{BadCredentials: true}, powerOn, ClassAuth},
		"bad credentials (own)": {Faults{BadCredentials: true}, identify, ClassAuth},
		"malformed JSON":        {Faults{MalformedJSON: true, Path: "/redfish/v1/Systems"}, status, ClassProtocol},
		"malformed JSON (own)":  {Faults{MalformedJSON: true, Path: "/redfish/v1/Systems"}, inv, ClassProtocol},
		"wrong content type":    {Faults{WrongContentType: true}, identify, ClassProtocol},
		"huge body":             {Faults{HugeBody: true, Path: "/redfish/v1/Systems"}, status, ClassProtocol},
		"huge body (own)":       {Faults{HugeBody: true, Path: "/redfish/v1/Systems"}, identify, ClassProtocol},
		"redirect loop":         {Faults{RedirectLoop: true}, status, ClassProtocol},
		"slow body":             {Faults{SlowBody: 300 * time.Millisecond}, status, ClassUnreachable},
		"latency past deadline": {Faults{Latency: 10 * time.Second}, identify, ClassUnreachable},
		"stuck power":           {Faults{StuckPower: true}, powerOn, ClassStateUnconfirmed},
		"flapping power":        {Faults{FlappingPower: true}, powerOn, ClassStateUnconfirmed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(1), redfishsim.SampleNode(2))
			bad, good := f.BMCs()[0], f.BMCs()[1]
			bad.SetFaults(tc.faults)
			c := New(Config{Timeout: 3 * time.Second, SettleTimeout: 1500 * time.Millisecond, PollInterval: 20 * time.Millisecond, MaxBody: 1 << 20, Logger: testLogger(t)})

			var wg sync.WaitGroup
			var goodErr error
			wg.Add(1)
			// The neighbour gets a patient client: on a loaded machine its
			// check must not flake; what matters is that it succeeds.
			patient := New(Config{Timeout: 30 * time.Second, SettleTimeout: 10 * time.Second, PollInterval: 20 * time.Millisecond, Logger: testLogger(t)})
			go func() { defer wg.Done(); goodErr = powerOn(patient, endpointOf(good)) }()
			start := time.Now()
			err := tc.op(c, endpointOf(bad))
			took := time.Since(start)
			wg.Wait()

			if got := FailureClass(err); got != tc.class {
				t.Errorf("failure class = %q (%v), want %q", got, err, tc.class)
			}
			if took > 9*time.Second {
				t.Errorf("failed after %v, want within the 3s deadline (plus logout)", took)
			}
			if goodErr != nil {
				t.Errorf("healthy BMC: %v", goodErr)
			}
			var ae *AuthError
			if (tc.class == ClassAuth) != errors.As(err, &ae) {
				t.Errorf("errors.As(*AuthError) = %v for %v", !(tc.class == ClassAuth), err)
			}
			if tc.class == ClassUnreachable && !errors.Is(err, ErrUnreachable) {
				t.Errorf("errors.Is(ErrUnreachable) = false for %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), bad.Addr().String()) {
				t.Errorf("error %q does not name the BMC", err)
			}
		})
	}
}

type Faults = redfishsim.Faults

func TestCertificatePinning(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(1))
	c := fastClient(t)
	ep := endpointOf(f.BMCs()[0])
	id, err := c.Identify(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	ep.CertSHA256 = "sha256:" + strings.ToUpper(id.CertSHA256)
	if _, err := c.PowerState(context.Background(), ep); err != nil {
		t.Errorf("PowerState with the right pin: %v", err)
	}
	ep.CertSHA256 = strings.Repeat("ab", 32)
	_, err = c.PowerState(context.Background(), ep)
	if FailureClass(err) != ClassCertChanged {
		t.Errorf("PowerState with a wrong pin = %v, want class %s", err, ClassCertChanged)
	}
}

func TestIdempotencyKeyIsRemembered(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(1))
	sim := f.BMCs()[0]
	sim.SetPower(redfishsim.PowerOn, "test")
	var cycles atomic.Int32
	sim.OnPowerChange(func(e redfishsim.PowerEvent) {
		if e.To == redfishsim.PowerOff {
			cycles.Add(1)
		}
	})
	c := fastClient(t)
	ep := endpointOf(sim)
	for i := range 2 {
		res, err := c.Power(context.Background(), ep, ActionCycle, "n1/cycle/1")
		if err != nil || res.Changed != (i == 0) {
			t.Errorf("cycle #%d = %+v, %v", i, res, err)
		}
	}
	if n := cycles.Load(); n != 1 {
		t.Errorf("machine was cycled %d times, want 1", n)
	}
	// A cycle of a machine that is off powers it on.
	sim.SetPower(redfishsim.PowerOff, "test")
	if res, err := c.Power(context.Background(), ep, ActionCycle, "n1/cycle/2"); err != nil || !strings.Contains(res.Note, "was off") || sim.PowerState() != redfishsim.PowerOn {
		t.Errorf("cycle of an off machine = %+v, %v", res, err)
	}
}

// Soft-off asks the OS to shut down; bmclib reports it failed even when it
// worked, which the client sees through.
func TestSoftOff(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(1))
	sim := f.BMCs()[0]
	sim.SetPower(redfishsim.PowerOn, "test")
	var mu sync.Mutex
	var cause string
	sim.OnPowerChange(func(e redfishsim.PowerEvent) { mu.Lock(); cause = e.Cause; mu.Unlock() })
	res, err := fastClient(t).Power(context.Background(), endpointOf(sim), ActionSoftOff, "")
	mu.Lock()
	defer mu.Unlock()
	if err != nil || !res.Changed || res.After != "off" || cause != "GracefulShutdown" {
		t.Errorf("soft-off = %+v, %v (cause %q)", res, err, cause)
	}
}

// One operation per BMC at a time: concurrent power calls to one BMC do not
// overlap (the simulator would see two sessions at once).
func TestOneOperationPerBMC(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(1))
	sim := f.BMCs()[0]
	c := fastClient(t)
	var wg sync.WaitGroup
	var maxSessions int
	var mu sync.Mutex
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			maxSessions = max(maxSessions, sim.Sessions())
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.PowerState(context.Background(), endpointOf(sim)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	if maxSessions > 1 {
		t.Errorf("saw %d sessions at once, want at most 1", maxSessions)
	}
}

func TestEndpointResolve(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		ep   Endpoint
		want string
		err  bool
	}{
		"bare ip":       {Endpoint{Address: "10.0.0.12"}, "redfish https://10.0.0.12:443", false},
		"ip and port":   {Endpoint{Address: "10.0.0.12:8443"}, "redfish https://10.0.0.12:8443", false},
		"http url":      {Endpoint{Address: "http://bmc1"}, "redfish http://bmc1:80", false},
		"ipv6":          {Endpoint{Address: "[fd00::12]:443"}, "redfish https://[fd00::12]:443", false},
		"ipmi default":  {Endpoint{Address: "10.0.0.12", Protocol: IPMI}, "ipmi 10.0.0.12:623", false},
		"bad port":      {Endpoint{Address: "10.0.0.12:99999"}, "", true},
		"empty":         {Endpoint{}, "", true},
		"wrong scheme":  {Endpoint{Address: "ftp://x"}, "", true},
		"password kept": {Endpoint{Address: "10.0.0.1", Password: "s3cret"}, "redfish https://10.0.0.1:443", false},
	}
	for name, tc := range cases {
		_, err := tc.ep.resolve()
		if (err != nil) != tc.err {
			t.Errorf("%s: resolve(%q) error = %v, want error %v", name, tc.ep.Address, err, tc.err)
			continue
		}
		if !tc.err && tc.ep.String() != tc.want {
			t.Errorf("%s: String() = %q, want %q", name, tc.ep.String(), tc.want)
		}
	}
}

func TestParsePowerState(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]PowerState{
		"On": PowerOn, "Off": PowerOff, "PoweringOn": PowerTransition, "Chassis Power is on\n": PowerOn,
		"Chassis Power is off\n": PowerOff, "": PowerUnknown, "Paused": PowerUnknown,
	} {
		if got := parsePowerState(in); got != want {
			t.Errorf("parsePowerState(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnreachableAddress(t *testing.T) {
	t.Parallel()
	c := fastClient(t)
	// Nothing listens on this loopback address and port.
	ep := Endpoint{Address: netip.MustParseAddrPort("127.10.250.250:1").String(), Username: "a", Password: "b"}
	_, err := c.PowerState(context.Background(), ep)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "check that the BMC is powered") {
		t.Errorf("PowerState = %v, want unreachable with a remedy", err)
	}
}

func TestBootDevices(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{}, redfishsim.SampleNode(1))
	sim := f.BMCs()[0]
	c := fastClient(t)
	cases := []struct {
		dev          BootDevice
		uefi         bool
		target, mode string
	}{
		{BootPXE, false, "Pxe", "Legacy"},
		{BootHTTP, true, "UefiHttp", "UEFI"},
		{BootDisk, true, "Hdd", "UEFI"},
		{BootCD, false, "Cd", "Legacy"},
	}
	for _, tc := range cases {
		if _, err := c.SetBootOnce(context.Background(), endpointOf(sim), tc.dev, tc.uefi, ""); err != nil {
			t.Errorf("SetBootOnce(%s, uefi %v): %v", tc.dev, tc.uefi, err)
			continue
		}
		want := redfishsim.BootOverride{Enabled: "Once", Target: tc.target, Mode: tc.mode}
		if got := sim.BootOverride(); got != want {
			t.Errorf("SetBootOnce(%s, uefi %v): simulator override %+v, want %+v", tc.dev, tc.uefi, got, want)
		}
	}
	if _, err := c.SetBootOnce(context.Background(), endpointOf(sim), "floppy", true, ""); err == nil {
		t.Error("SetBootOnce(floppy) succeeded")
	}
}

func TestResetBMC(t *testing.T) {
	t.Parallel()
	f := startSims(t, redfishsim.Config{Options: redfishsim.Options{ResetDowntime: time.Hour}}, redfishsim.SampleNode(1))
	c := fastClient(t)
	ep := endpointOf(f.BMCs()[0])
	if _, err := c.ResetBMC(context.Background(), ep, "k"); err != nil {
		t.Fatalf("ResetBMC: %v", err)
	}
	if _, err := c.PowerState(context.Background(), ep); !errors.Is(err, ErrUnreachable) {
		t.Errorf("PowerState of a restarting BMC = %v, want unreachable", err)
	}
}

// Redirects: to the same host (http to https) are followed, to another host
// refused, and a redirect loop ends.
func TestRedirectPolicy(t *testing.T) {
	t.Parallel()
	target := startSims(t, redfishsim.Config{First: netip.MustParseAddr("127.10.210.1")}, redfishsim.SampleNode(1)).BMCs()[0]
	redirectTo := func(addr, to string) string {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to+r.URL.Path, http.StatusMovedPermanently)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return "http://" + l.Addr().String()
	}
	c := fastClient(t)
	same := redirectTo("127.10.210.1:0", target.Endpoint())
	if _, _, err := c.ProbeRedfish(context.Background(), Endpoint{Address: same}); err != nil {
		t.Errorf("http to https on the same host: %v", err)
	}
	other := redirectTo("127.10.210.2:0", target.Endpoint())
	if _, _, err := c.ProbeRedfish(context.Background(), Endpoint{Address: other}); FailureClass(err) != ClassProtocol {
		t.Errorf("redirect to another host = %v, want %s", err, ClassProtocol)
	}
}
