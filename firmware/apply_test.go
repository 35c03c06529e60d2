package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// imageURI is where the BMC would fetch a package. The simulator does not
// download it; it installs the version the file name ends with.
func imageURI(name string) string { return "http://127.0.0.1:8081/firmware/" + name }

func fwVersion(b *redfishsim.BMC, id string) string {
	for _, c := range b.Firmware() {
		if c.ID == id {
			return c.Version
		}
	}
	return ""
}

func TestApplyUpdatesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	sim := startSim(t, redfishsim.Options{UpdateDuration: 150 * time.Millisecond}, redfishsim.SampleNode(1))
	k := newKey(t)
	pkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetNone, &k)
	c := New(fastConfig(t, k))
	ctx := context.Background()
	var persisted []string
	req := Request{Key: "r1-n01/firmware/1", Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin"),
		OnTask: func(task string) { persisted = append(persisted, task) }}

	res, err := c.Apply(ctx, endpointOf(sim), req)
	if err != nil {
		t.Fatalf("Apply = %v", err)
	}
	if !res.Changed || res.From != "1.4.2" || res.To != "1.5.0" || res.Task == "" || !strings.Contains(res.Note, "updated from 1.4.2 to 1.5.0") {
		t.Errorf("Apply = %+v, want changed 1.4.2 -> 1.5.0 with a task", res)
	}
	if len(persisted) != 1 || persisted[0] != res.Task {
		t.Errorf("OnTask got %q, want [%s]", persisted, res.Task)
	}
	if v := fwVersion(sim, "BMC"); v != "1.5.0" || updates(sim) != 1 {
		t.Errorf("BMC firmware = %s after %d updates, want 1.5.0 after 1", v, updates(sim))
	}

	// The same key again: answered from memory.
	res, err = c.Apply(ctx, endpointOf(sim), req)
	if err != nil || res.Changed || !strings.Contains(res.Note, "already carried out") {
		t.Errorf("Apply replay = %+v, %v; want unchanged, already carried out", res, err)
	}
	// A fresh client (a restarted controller) with the same key: the query
	// before acting finds the version and sends nothing.
	res, err = New(fastConfig(t, k)).Apply(ctx, endpointOf(sim), req)
	if err != nil || res.Changed || res.Note != "already at 1.5.0; nothing sent" {
		t.Errorf("Apply after restart = %+v, %v; want a no-op that says so", res, err)
	}
	// An older package never downgrades.
	old := writePackage(t, t.TempDir(), "bmc-1.4.0.bin", "1.4.0", ResetNone, &k)
	res, err = c.Apply(ctx, endpointOf(sim), Request{Key: "downgrade", Component: "BMC", Package: old, ImageURI: imageURI("bmc-1.4.0.bin")})
	if err != nil || res.Changed || !strings.Contains(res.Note, "not downgraded") {
		t.Errorf("Apply older = %+v, %v; want a no-op, not downgraded", res, err)
	}
	if updates(sim) != 1 || tasks(t, sim) != 1 {
		t.Errorf("the BMC ran %d updates and %d tasks, want 1 and 1", updates(sim), tasks(t, sim))
	}
}

func TestApplyPackageRefusedBeforeAnythingIsSent(t *testing.T) {
	t.Parallel()
	k, stranger := newKey(t), newKey(t)
	dir := t.TempDir()
	good := writePackage(t, dir, "bios-2.2.0.bin", "2.2.0", ResetNone, &k)
	wrongSHA := good
	wrongSHA.SHA256 = strings.Repeat("ab", 32)
	tampered := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetNone, &k)
	if err := os.WriteFile(tampered.File, []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	tampered.SHA256 = sha256Hex([]byte("evil")) // the baseline was edited too; the signature was not
	foreign := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetNone, &stranger)
	unsigned := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetNone, nil)
	missing := good
	missing.File = dir + "/nope.bin"

	for name, tc := range map[string]struct {
		pkg  Package
		want string
	}{
		"wrong sha256":         {wrongSHA, "the file is not the package the baseline names"},
		"tampered after sign":  {tampered, "signature does not verify"},
		"signed by a stranger": {foreign, "not trusted"},
		"unsigned":             {unsigned, "has no signature"},
		"missing file":         {missing, "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(2))
			_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim),
				Request{Key: "k", Component: "BIOS", Package: tc.pkg, ImageURI: imageURI("bios-2.2.0.bin")})
			if !errors.Is(err, ErrPackageInvalid) || !strings.Contains(err.Error(), tc.want) || bmc.FailureClass(err) != ClassPackageInvalid {
				t.Fatalf("Apply = %v, want %s mentioning %q", err, ClassPackageInvalid, tc.want)
			}
			if !strings.Contains(err.Error(), "nothing was sent to the BMC") {
				t.Errorf("error %q does not say what to do", err)
			}
			if n := sim.Requests(); n != 0 {
				t.Errorf("the BMC got %d requests, want none", n)
			}
		})
	}
	// Unsigned is accepted where the client allows it.
	sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(2))
	cfg := fastConfig(t, k)
	cfg.AllowUnsigned = true
	if res, err := New(cfg).Apply(context.Background(), endpointOf(sim), Request{Key: "k", Component: "BIOS", Package: unsigned, ImageURI: imageURI("bios-2.2.0.bin")}); err != nil || !res.Changed {
		t.Errorf("Apply unsigned with AllowUnsigned = %+v, %v", res, err)
	}
}

func TestApplyFailures(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	pkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetNone, &k)
	req := Request{Key: "k", Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")}

	t.Run("task fails", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{UpdateDuration: 100 * time.Millisecond}, redfishsim.SampleNode(3))
		sim.SetUpdateFault(redfishsim.UpdateFault{TaskFails: true})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, ErrTaskFailed) || !strings.Contains(err.Error(), "ended Exception (Critical): The image failed verification on the BMC.") {
			t.Errorf("Apply = %v, want %s with the BMC's message", err, ClassTaskFailed)
		}
		if v := fwVersion(sim, "BMC"); v != "1.4.2" {
			t.Errorf("BMC firmware = %s after a failed task, want 1.4.2", v)
		}
	})
	t.Run("BMC reboots after the update and comes back late", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{UpdateDuration: 50 * time.Millisecond}, redfishsim.SampleNode(18))
		sim.SetUpdateFault(redfishsim.UpdateFault{RebootDowntime: 700 * time.Millisecond})
		start := time.Now()
		res, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if err != nil || res.To != "1.5.0" {
			t.Fatalf("Apply = %+v, %v; want 1.5.0 once the BMC is back", res, err)
		}
		if d := time.Since(start); d < 700*time.Millisecond {
			t.Errorf("Apply verified after %s, before the BMC came back", d)
		}
	})
	t.Run("task never finishes", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{UpdateDuration: time.Hour}, redfishsim.SampleNode(4))
		cfg := fastConfig(t, k)
		cfg.TaskTimeout = 300 * time.Millisecond
		start := time.Now()
		var task string
		r := req
		r.OnTask = func(s string) { task = s }
		_, err := New(cfg).Apply(context.Background(), endpointOf(sim), r)
		if !errors.Is(err, ErrTaskTimeout) || !strings.Contains(err.Error(), "did not finish within 300ms") ||
			!strings.Contains(err.Error(), "applying again with the same key waits") {
			t.Errorf("Apply = %v, want %s", err, ClassTaskTimeout)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Apply took %s past a 300ms task deadline", d)
		}
		// A restarted controller that lost the task URI finds the running
		// update and waits for it instead of starting a second one.
		_, err = New(cfg).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), task) {
			t.Errorf("Apply again = %v, want %s naming %s", err, ClassBusy, task)
		}
		if n := tasks(t, sim); n != 1 {
			t.Errorf("the BMC has %d tasks, want 1", n)
		}
	})
	t.Run("parent context ends", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{UpdateDuration: time.Hour}, redfishsim.SampleNode(5))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := New(fastConfig(t, k)).Apply(ctx, endpointOf(sim), req)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTaskTimeout) {
			t.Errorf("Apply = %v, want the caller's deadline, not a task timeout", err)
		}
	})
	t.Run("BMC refuses connections", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(6))
		sim.SetFaults(redfishsim.Faults{Refuse: true})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, bmc.ErrUnreachable) || !strings.Contains(err.Error(), "check that the BMC is powered") {
			t.Errorf("Apply = %v, want %s", err, bmc.ClassUnreachable)
		}
	})
	t.Run("BMC refuses credentials", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(7))
		sim.SetFaults(redfishsim.Faults{BadCredentials: true})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		var ae *bmc.AuthError
		if !errors.As(err, &ae) || bmc.FailureClass(err) != bmc.ClassAuth {
			t.Errorf("Apply = %v, want a *bmc.AuthError", err)
		}
	})
	t.Run("BMC refuses the update", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(8))
		sim.SetFaults(redfishsim.Faults{Path: "/redfish/v1/UpdateService/Actions", Status: http.StatusServiceUnavailable})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, bmc.ErrBMC) || !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "(injected)") {
			t.Errorf("Apply = %v, want %s with the BMC's message", err, bmc.ClassBMCError)
		}
		if updates(sim) != 0 || fwVersion(sim, "BMC") != "1.4.2" {
			t.Errorf("the BMC updated anyway")
		}
	})
	t.Run("component missing", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(9))
		r := req
		r.Component = "GPU9"
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), r)
		if !errors.Is(err, ErrComponentMissing) || !strings.Contains(err.Error(), `no component "GPU9" (it lists BMC, BIOS, CPLD, NIC1)`) {
			t.Errorf("Apply = %v, want %s", err, ClassComponentMissing)
		}
	})
	t.Run("version unchanged after success", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(10))
		sim.SetUpdateFault(redfishsim.UpdateFault{Unchanged: true})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, ErrVersionMismatch) || !strings.Contains(err.Error(), `BMC reports version "1.4.2", want 1.5.0`) {
			t.Errorf("Apply = %v, want %s", err, ClassVersionMismatch)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		t.Parallel()
		for _, r := range []Request{
			{Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")},
			{Key: "k", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")},
			{Key: "k", Component: "BMC", Package: pkg, ImageURI: "file:///srv/bmc-1.5.0.bin"},
			{Key: "k", Component: "BMC", Package: pkg, Transfer: TransferSimple},
			{Key: "k", Component: "BMC", Package: pkg, Transfer: "ftp"},
			{Key: "k", Component: "BMC", Package: Package{File: pkg.File, SHA256: pkg.SHA256}, ImageURI: imageURI("bmc-1.5.0.bin")},
		} {
			if _, err := New(fastConfig(t, k)).Apply(context.Background(), bmc.Endpoint{Address: "127.0.0.1:1"}, r); err == nil {
				t.Errorf("Apply(%+v) = nil, want an error", r)
			}
		}
	})
}

func TestApplyResumesInsteadOfFlashingTwice(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	pkg := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetNone, &k)
	req := Request{Key: "r1-n11/firmware/1", Component: "BIOS", Package: pkg, ImageURI: imageURI("bios-2.2.0.bin")}
	short := fastConfig(t, k)
	short.TaskTimeout = 50 * time.Millisecond

	for name, withURI := range map[string]bool{"task persisted": true, "task lost": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, redfishsim.Options{UpdateDuration: 700 * time.Millisecond}, redfishsim.SampleNode(11))
			// The first controller gives up (or dies) while the BMC flashes.
			var task string
			r := req
			r.OnTask = func(s string) { task = s }
			if _, err := New(short).Apply(context.Background(), endpointOf(sim), r); !errors.Is(err, ErrTaskTimeout) {
				t.Fatalf("first Apply = %v, want a task timeout", err)
			}
			// The next one replays the key.
			r = req
			if withURI {
				r.ResumeTask = task
			}
			res, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), r)
			if err != nil {
				t.Fatalf("resumed Apply = %v", err)
			}
			if res.Task != task || res.To != "2.2.0" {
				t.Errorf("resumed Apply = %+v, want task %s and 2.2.0", res, task)
			}
			if n, u := tasks(t, sim), updates(sim); n != 1 || u != 1 {
				t.Errorf("the BMC ran %d tasks and %d updates, want 1 and 1", n, u)
			}
		})
	}
}

func TestApplyResets(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	t.Run("BMC reset, back late", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{ResetDowntime: 800 * time.Millisecond}, redfishsim.SampleNode(12))
		pkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetBMC, &k)
		start := time.Now()
		res, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), Request{Key: "k", Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")})
		if err != nil || !strings.Contains(res.Note, "reset BMC (GracefulRestart)") || res.To != "1.5.0" {
			t.Fatalf("Apply = %+v, %v", res, err)
		}
		if d := time.Since(start); d < 800*time.Millisecond {
			t.Errorf("Apply verified after %s, before the BMC came back", d)
		}
		if !selHas(sim, "BMC reset (GracefulRestart)") {
			t.Errorf("the BMC was not reset: %+v", sim.SEL())
		}
	})
	t.Run("BMC never comes back", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{ResetDowntime: time.Hour}, redfishsim.SampleNode(13))
		pkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetBMC, &k)
		cfg := fastConfig(t, k)
		cfg.VerifyTimeout = 300 * time.Millisecond
		_, err := New(cfg).Apply(context.Background(), endpointOf(sim), Request{Key: "k", Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")})
		if !errors.Is(err, ErrVersionMismatch) || !strings.Contains(err.Error(), "did not come back within 300ms") {
			t.Errorf("Apply = %v, want %s", err, ClassVersionMismatch)
		}
	})
	t.Run("host restart", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(14))
		sim.SetPower(redfishsim.PowerOn, "test")
		pkg := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetHost, &k)
		res, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), Request{Key: "k", Component: "BIOS", Package: pkg, ImageURI: imageURI("bios-2.2.0.bin")})
		if err != nil || !strings.Contains(res.Note, "restart host (ForceRestart)") || !selHas(sim, "System power on (ForceRestart)") {
			t.Errorf("Apply = %+v, %v; SEL %+v", res, err, sim.SEL())
		}
	})
	t.Run("host off", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(15))
		pkg := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetHost, &k)
		res, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), Request{Key: "k", Component: "BIOS", Package: pkg, ImageURI: imageURI("bios-2.2.0.bin")})
		if err != nil || !strings.Contains(res.Note, "host is off: the new firmware runs from its next power-on") || sim.PowerState() != redfishsim.PowerOff {
			t.Errorf("Apply = %+v, %v", res, err)
		}
	})
}

func selHas(b *redfishsim.BMC, msg string) bool {
	for _, e := range b.SEL() {
		if strings.HasPrefix(e.Message, msg) {
			return true
		}
	}
	return false
}

// Operations on one BMC are serialised: two Applies to two components of
// the same BMC never overlap.
func TestApplySerialisedPerBMC(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	sim, err := redfishsim.New(redfishsim.SampleNode(16), redfishsim.Options{UpdateDuration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var posts, inflight, maxInflight atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		n := inflight.Add(1)
		for m := maxInflight.Load(); n > m && !maxInflight.CompareAndSwap(m, n); m = maxInflight.Load() {
		}
		defer inflight.Add(-1)
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ep := bmc.Endpoint{Address: srv.URL, Username: "admin", Password: "password"}
	c := New(fastConfig(t, k))
	bmcPkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetNone, &k)
	biosPkg := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetNone, &k)
	errs := make(chan error, 2)
	go func() {
		_, err := c.Apply(context.Background(), ep, Request{Key: "a", Component: "BMC", Package: bmcPkg, ImageURI: imageURI("bmc-1.5.0.bin")})
		errs <- err
	}()
	go func() {
		_, err := c.Apply(context.Background(), ep, Request{Key: "b", Component: "BIOS", Package: biosPkg, ImageURI: imageURI("bios-2.2.0.bin")})
		errs <- err
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if maxInflight.Load() != 1 || posts.Load() != 2 {
		t.Errorf("max %d requests in flight and %d POSTs, want 1 and 2", maxInflight.Load(), posts.Load())
	}
	if fwVersion(sim, "BMC") != "1.5.0" || fwVersion(sim, "BIOS") != "2.2.0" {
		t.Errorf("firmware = %+v", sim.Firmware())
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// BMCs that name no task, or forget it (a BMC rebooting into its own new
// firmware): the inventory decides.
func TestApplyWithoutATaskToPoll(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	pkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetNone, &k)
	for name, tc := range map[string]struct {
		wrap func(sim *redfishsim.BMC, taskGets *atomic.Int32) http.HandlerFunc
		note string
	}{
		"no task named": {
			wrap: func(sim *redfishsim.BMC, _ *atomic.Int32) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPost {
						sim.ServeHTTP(httptest.NewRecorder(), r)
						w.WriteHeader(http.StatusNoContent)
						return
					}
					sim.ServeHTTP(w, r)
				}
			},
			note: "the BMC named no task; verified by reading the inventory",
		},
		"task vanishes": {
			wrap: func(sim *redfishsim.BMC, taskGets *atomic.Int32) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if strings.HasPrefix(r.URL.Path, "/redfish/v1/TaskService/Tasks/") && taskGets.Add(1) > 1 {
						http.NotFound(w, r)
						return
					}
					sim.ServeHTTP(w, r)
				}
			},
			note: "vanished (the BMC restarted?); verified by reading the inventory",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim, err := redfishsim.New(redfishsim.SampleNode(17), redfishsim.Options{UpdateDuration: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var taskGets atomic.Int32
			srv := httptest.NewServer(tc.wrap(sim, &taskGets))
			t.Cleanup(srv.Close)
			ep := bmc.Endpoint{Address: srv.URL, Username: "admin", Password: "password"}
			res, err := New(fastConfig(t, k)).Apply(context.Background(), ep, Request{Key: "k", Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")})
			if err != nil || !res.Changed || res.To != "1.5.0" || !strings.Contains(res.Note, tc.note) {
				t.Errorf("Apply = %+v, %v; want 1.5.0 with note %q", res, err, tc.note)
			}
		})
	}
}
