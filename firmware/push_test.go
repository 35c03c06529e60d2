package firmware

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// A BMC that advertises MultipartHttpPushUri gets the package's bytes
// pushed; one that does not fetches it through SimpleUpdate.
func TestApplyChoosesTheTransferTheBMCAdvertises(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	pkg := writePackage(t, t.TempDir(), "bmc-1.5.0.bin", "1.5.0", ResetNone, &k)
	req := Request{Key: "k", Component: "BMC", Package: pkg, ImageURI: imageURI("bmc-1.5.0.bin")}
	for name, tc := range map[string]struct {
		push bool
		req  func(Request) Request
		via  string
	}{
		"push advertised":              {push: true, req: func(r Request) Request { return r }, via: viaPush},
		"push advertised, no URL":      {push: true, req: func(r Request) Request { r.ImageURI = ""; return r }, via: viaPush},
		"push advertised, told simple": {push: true, req: func(r Request) Request { r.Transfer = TransferSimple; return r }, via: viaSimple},
		"no push":                      {push: false, req: func(r Request) Request { return r }, via: viaSimple},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(20))
			sim.SetUpdateFault(redfishsim.UpdateFault{Multipart: tc.push})
			res, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), tc.req(req))
			if err != nil || res.Via != tc.via || res.To != "1.5.0" || !res.Changed {
				t.Fatalf("Apply = %+v, %v; want 1.5.0 via %s", res, err, tc.via)
			}
			ups := sim.Updates()
			if len(ups) != 1 || ups[0].Via != tc.via || ups[0].Target != "BMC" {
				t.Fatalf("the BMC accepted %+v, want one update of BMC via %s", ups, tc.via)
			}
			if tc.via == viaPush {
				data, _ := os.ReadFile(pkg.File)
				if ups[0].SHA256 != pkg.SHA256 || ups[0].Size != len(data) || ups[0].Image != "bmc-1.5.0.bin" {
					t.Errorf("the BMC received %+v, want the package's %d bytes (sha256 %s)", ups[0], len(data), pkg.SHA256)
				}
			}
		})
	}
	t.Run("push asked, not advertised", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(21))
		r := req
		r.Transfer = TransferPush
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), r)
		if !errors.Is(err, bmc.ErrUnsupported) || !strings.Contains(err.Error(), "MultipartHttpPushUri") {
			t.Errorf("Apply = %v, want %s naming MultipartHttpPushUri", err, bmc.ClassUnsupported)
		}
		if len(sim.Updates()) != 0 {
			t.Errorf("the BMC accepted %+v", sim.Updates())
		}
	})
	t.Run("push endpoint fails", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(22))
		sim.SetUpdateFault(redfishsim.UpdateFault{Multipart: true, PushStatus: http.StatusInternalServerError})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, bmc.ErrBMC) || !strings.Contains(err.Error(), "multipart push") || !strings.Contains(err.Error(), "HTTP 500") {
			t.Errorf("Apply = %v, want %s from the push", err, bmc.ClassBMCError)
		}
		if v := fwVersion(sim, "BMC"); v != "1.4.2" || len(sim.Updates()) != 0 {
			t.Errorf("BMC firmware = %s with %d updates after a refused push", v, len(sim.Updates()))
		}
	})
	t.Run("push task hangs", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(25))
		sim.SetUpdateFault(redfishsim.UpdateFault{Multipart: true, TaskHangs: true})
		cfg := fastConfig(t, k)
		cfg.TaskTimeout = 300 * time.Millisecond
		_, err := New(cfg).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, ErrTaskTimeout) || !strings.Contains(err.Error(), "was Running at 42%") {
			t.Errorf("Apply = %v, want %s with the task's progress", err, ClassTaskTimeout)
		}
		if v := fwVersion(sim, "BMC"); v != "1.4.2" {
			t.Errorf("BMC firmware = %s under a hung task, want 1.4.2", v)
		}
	})
	t.Run("push task fails", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(23))
		sim.SetUpdateFault(redfishsim.UpdateFault{Multipart: true, TaskFails: true, FailMessage: "Signature check failed on the BMC."})
		_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), req)
		if !errors.Is(err, ErrTaskFailed) || !strings.Contains(err.Error(), "Signature check failed on the BMC.") {
			t.Errorf("Apply = %v, want %s", err, ClassTaskFailed)
		}
	})
}

// A package whose signature does not verify is never pushed: the BMC gets
// no request at all.
func TestPushRefusedBeforeAnythingIsSent(t *testing.T) {
	t.Parallel()
	k, stranger := newKey(t), newKey(t)
	foreign := writePackage(t, t.TempDir(), "bios-2.2.0.bin", "2.2.0", ResetNone, &stranger)
	sim := startSim(t, redfishsim.Options{}, redfishsim.SampleNode(24))
	sim.SetUpdateFault(redfishsim.UpdateFault{Multipart: true})
	_, err := New(fastConfig(t, k)).Apply(context.Background(), endpointOf(sim), Request{Key: "k", Component: "BIOS", Package: foreign, Transfer: TransferPush})
	if !errors.Is(err, ErrPackageInvalid) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("Apply = %v, want %s", err, ClassPackageInvalid)
	}
	if n := sim.Requests(); n != 0 {
		t.Errorf("the BMC got %d requests, want none", n)
	}
}
