package edge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/images/seed"
)

func setup(t *testing.T) (*store.DB, *redfishsim.BMC, func() *Edge) {
	t.Helper()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fleet, err := redfishsim.Start(redfishsim.Config{HTTP: true}, redfishsim.SampleNode(7))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	cat, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Each call is a fresh controller: nothing remembered in memory.
	newEdge := func() *Edge {
		e, err := New(Config{BMC: bmc.New(bmc.Config{}), Catalog: cat,
			Credentials: func(context.Context, model.Node) (Login, error) {
				return Login{Username: "admin", Password: "password"}, nil
			}}, db, log)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	return db, fleet.BMCs()[0], newEdge
}

// A boot replayed after a controller restart must not cycle the machine a
// second time: that would consume nothing and reboot a node mid-install.
func TestBootReplayDoesNotCycleTwice(t *testing.T) {
	t.Parallel()
	db, b, newEdge := setup(t)
	ctx := context.Background()
	var boots atomic.Int32
	b.OnBoot(func(redfishsim.BootEvent) { boots.Add(1) })
	n := model.Node{Name: "n1", Identity: model.Identity{BMC: b.Endpoint()}}
	db.CreateNode(ctx, n, "test")

	e := newEdge()
	id, err := e.Enroll(ctx, n)
	if err != nil || id.Serial != "RSIM000007" || len(id.MACs) == 0 {
		t.Fatalf("Enroll = %+v, %v", id, err)
	}
	if err := e.SetBoot(ctx, n, lifecycle.BootNetwork, "n1/set-boot-network/1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Boot(ctx, n, "n1/boot-network/1"); err != nil {
		t.Fatal(err)
	}
	if boots.Load() != 1 {
		t.Fatalf("first boot: %d boots seen by the BMC, want 1", boots.Load())
	}
	if err := newEdge().Boot(ctx, n, "n1/boot-network/1"); err != nil {
		t.Fatal(err)
	}
	if boots.Load() != 1 {
		t.Errorf("replayed boot after a restart: %d boots, want still 1", boots.Load())
	}
	if err := newEdge().Boot(ctx, n, "n1/boot-network/2"); err != nil {
		t.Fatal(err)
	}
	if boots.Load() != 2 {
		t.Errorf("a new attempt (new key) cycles the machine: %d boots, want 2", boots.Load())
	}
}

func TestErrorsAreClassified(t *testing.T) {
	t.Parallel()
	db, b, newEdge := setup(t)
	ctx := context.Background()
	e := newEdge()
	class := func(err error) string {
		var c lifecycle.Classified
		if errors.As(err, &c) {
			return c.FailureClass()
		}
		return ""
	}
	if _, err := e.Enroll(ctx, model.Node{Name: "x"}); class(err) != string(model.ClassBMCUnreachable) || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("Enroll without a BMC address = %v (%s)", err, class(err))
	}
	b.SetFaults(redfishsim.Faults{BadCredentials: true})
	if _, err := e.Enroll(ctx, model.Node{Name: "n", Identity: model.Identity{BMC: b.Endpoint()}}); class(err) != string(model.ClassBMCAuth) {
		t.Errorf("Enroll with bad credentials = %v (%s), want bmc-auth-failed", err, class(err))
	}
	if err := e.Image(ctx, model.Node{Name: "n"}, "n/image/1"); class(err) != string(model.ClassImageFailed) || !strings.Contains(err.Error(), "--image") {
		t.Errorf("Image without an image = %v", err)
	}
	if err := e.HandOff(ctx, model.Node{Name: "n"}, "k"); class(err) != string(model.ClassHandOffFailed) {
		t.Errorf("HandOff without a cluster = %v", err)
	}
	_ = db
}

// A BMC that presents another certificate than the one pinned at enrolment
// stops work on that node with a clear error.
func TestChangedCertificateStopsWork(t *testing.T) {
	t.Parallel()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fleet, err := redfishsim.Start(redfishsim.Config{}, redfishsim.SampleNode(8)) // HTTPS
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	cat, _ := profile.Bundled()
	ctx := context.Background()
	n := model.Node{Name: "n8", Identity: model.Identity{BMC: fleet.BMCs()[0].Endpoint()}}
	db.CreateNode(ctx, n, "test")
	logins := func(ctx context.Context, n model.Node) (Login, error) {
		l := Login{Username: "admin", Password: "password"}
		if stored, err := db.BMCLogin(ctx, n.Name); err == nil {
			l.CertSHA256 = stored.CertSHA256
		}
		return l, nil
	}
	e, err := New(Config{BMC: bmc.New(bmc.Config{}), Catalog: cat, Credentials: logins,
		PinCert: func(ctx context.Context, node, sha string) error { return db.PinBMCCert(ctx, node, sha, "test") }},
		db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enroll(ctx, n); err != nil {
		t.Fatal(err)
	}
	l, _ := db.BMCLogin(ctx, "n8")
	if len(l.CertSHA256) != 64 {
		t.Fatalf("no certificate pinned at first contact: %+v", l)
	}
	if _, err := e.Enroll(ctx, n); err != nil {
		t.Errorf("second contact with the pinned certificate: %v", err)
	}
	// The BMC is swapped (or spoofed): its certificate no longer matches.
	other, err := redfishsim.Start(redfishsim.Config{}, redfishsim.SampleNode(9))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	n.Identity.BMC = other.BMCs()[0].Endpoint()
	_, err = e.Enroll(ctx, n)
	var c lifecycle.Classified
	if !errors.As(err, &c) || c.FailureClass() != "bmc-cert-changed" {
		t.Errorf("Enroll against another certificate = %v; want class bmc-cert-changed", err)
	}
}

func TestBMCAddress(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]struct {
		addr  string
		proto bmc.Protocol
	}{
		"ipmi://127.0.0.1:9001":  {"127.0.0.1:9001", bmc.IPMI},
		"ipmi://10.0.0.12/":      {"10.0.0.12", bmc.IPMI},
		"10.0.0.12":              {"10.0.0.12", bmc.Redfish},
		"https://10.0.0.12:8443": {"https://10.0.0.12:8443", bmc.Redfish},
	} {
		addr, proto := BMCAddress(in)
		if addr != want.addr || proto != want.proto {
			t.Errorf("BMCAddress(%q) = %q, %s; want %q, %s", in, addr, proto, want.addr, want.proto)
		}
	}
}

// The image task carries what the node needs beyond the image: the URL of
// its rack's cache when ImageFor gives one, and its cloud-init seed, in the
// shape the agent reads (seed.FromTask). A node without a seed gets none.
func TestImageTaskCarriesCacheAndSeed(t *testing.T) {
	t.Parallel()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cat, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	want := seed.Seed{UserData: "#cloud-config\nhostname: k1\n", MetaData: seed.MetaData("k1", "k1")}
	e, err := New(Config{BMC: bmc.New(bmc.Config{}), Catalog: cat,
		Credentials: func(context.Context, model.Node) (Login, error) { return Login{}, nil },
		Image:       Image{URL: "http://ctl:8081/os.raw", SHA256: strings.Repeat("ab", 32), Size: 4096},
		ImageFor: func(_ context.Context, n model.Node, img Image) Image {
			img.URL = "http://cache-" + n.Identity.Rack + ":8090/sha256/" + img.SHA256 + "/os.raw"
			return img
		},
		Seed: func(_ context.Context, n model.Node) (*seed.Seed, error) {
			if n.Name != "k1" {
				return nil, nil
			}
			return &want, nil
		},
	}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []model.Node{{Name: "k1", Identity: model.Identity{Rack: "r1"}}, {Name: "s1", Identity: model.Identity{Rack: "r2"}}} {
		if _, _, err := db.CreateNode(context.Background(), n, "test"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		key := n.Name + "/image/1"
		done := make(chan error, 1)
		go func() { done <- e.Image(ctx, n, key) }()
		var task store.Task
		var imgErr error
	wait:
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			select {
			case imgErr = <-done:
				t.Fatalf("%s: Image returned before the agent answered: %v", n.Name, imgErr)
			default:
			}
			if task, err = db.GetTask(context.Background(), key); err == nil || time.Now().After(deadline) {
				break wait
			}
		}
		cancel()
		<-done
		if err != nil {
			t.Fatalf("%s: no image task: %v", n.Name, err)
		}
		var it ImageTask
		if err := json.Unmarshal(task.Payload, &it); err != nil {
			t.Fatal(err)
		}
		if wantURL := "http://cache-" + n.Identity.Rack + ":8090/sha256/"; !strings.HasPrefix(it.URL, wantURL) || it.SHA256 != strings.Repeat("ab", 32) {
			t.Errorf("%s: task image = %+v, want the rack cache's URL %s… with the image's digest", n.Name, it.Image, wantURL)
		}
		got, err := seed.FromTask(task.Payload)
		switch {
		case err != nil:
			t.Errorf("%s: seed.FromTask: %v", n.Name, err)
		case n.Name == "k1" && (got == nil || *got != want):
			t.Errorf("k1: seed in the task = %+v, want %+v", got, want)
		case n.Name == "s1" && got != nil:
			t.Errorf("s1: a node without a seed got %+v", got)
		}
	}
}
