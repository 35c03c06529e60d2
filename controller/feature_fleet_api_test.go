package controller_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// A rack cache registers through the API; while it is live the rack's
// nodes get their image through it; rack leases are listed.
func TestFleetAPIRackCachesAndLeases(t *testing.T) {
	t.Parallel()
	cfg := controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 0},
		Features: []controller.Feature{controller.FleetAPI{}, controller.RackOwnership{ID: "ctl-a", TTL: 3 * time.Second}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- controller.Run(ctx, cfg, log, func(c *controller.Controller) { ready <- c })
	}()
	var c *controller.Controller
	select {
	case c = <-ready:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not start")
	}
	cl, err := api.NewClient("http://" + c.API)
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.Repeat("ab", 32)
	img := edge.Image{URL: "http://10.0.0.1:8081/image.raw", SHA256: digest, Size: 10}
	node := model.Node{Name: "r7-n01", Identity: model.Identity{Rack: "r7", Slot: 1}}
	toImage := controller.RackCacheImage(c.Store, log)
	if got := toImage(ctx, node, img); got != img {
		t.Errorf("image without a cache = %+v, want it unchanged", got)
	}

	for name, body := range map[string]any{
		"no port":     controller.CacheRegistration{URL: "http://10.1.0.5"},
		"not http":    controller.CacheRegistration{URL: "ftp://10.1.0.5:21"},
		"ttl too low": controller.CacheRegistration{URL: "http://10.1.0.5:8090", TTLSeconds: 1},
		"unknown key": map[string]any{"url": "http://10.1.0.5:8090", "tll": 30},
	} {
		err := cl.Do(ctx, "PUT", "/api/v1/rack-caches/r7", body, nil)
		var ae *api.APIError
		if !asAPIError(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("%s: PUT = %v, want a 400", name, err)
		}
	}
	var reg store.RackCache
	if err := cl.Do(ctx, "PUT", "/api/v1/rack-caches/r7", controller.CacheRegistration{URL: "http://10.1.0.5:8090/", TTLSeconds: 60}, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.URL != "http://10.1.0.5:8090" || !reg.Live || reg.Rack != "r7" {
		t.Errorf("registration = %+v", reg)
	}
	got := toImage(ctx, node, img)
	if want := "http://10.1.0.5:8090/sha256/" + digest + "/image.raw"; got.URL != want || got.SHA256 != digest || got.Size != 10 {
		t.Errorf("image through the cache = %+v, want URL %s", got, want)
	}
	other := node
	other.Identity.Rack = "r8"
	if got := toImage(ctx, other, img); got != img {
		t.Errorf("another rack's image = %+v, want it unchanged", got)
	}
	var list struct{ Caches []store.RackCache }
	if err := cl.Do(ctx, "GET", "/api/v1/rack-caches", nil, &list); err != nil || len(list.Caches) != 1 {
		t.Errorf("GET rack-caches = %+v, %v", list, err)
	}
	if err := cl.Do(ctx, "DELETE", "/api/v1/rack-caches/r7", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := toImage(ctx, node, img); got != img {
		t.Errorf("image after the cache is removed = %+v, want it unchanged", got)
	}
	var ae *api.APIError
	if err := cl.Do(ctx, "DELETE", "/api/v1/rack-caches/r7", nil, nil); !asAPIError(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("second DELETE = %v, want 404", err)
	}

	// Rack leases: the controller holds the rack of a node it knows.
	if _, _, err := c.Store.CreateNode(ctx, model.Node{Name: "r7-n01", Identity: model.Identity{Rack: "r7", Slot: 1, BMC: "sim-bmc-x"}, Profile: "qemu-vm", Desired: model.WantReady}, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var leases struct {
			Leases []store.RackLease
			Now    time.Time
		}
		if err := cl.Do(ctx, "GET", "/api/v1/rack-leases", nil, &leases); err != nil {
			t.Fatal(err)
		}
		if len(leases.Leases) == 1 && leases.Leases[0].Holder == "ctl-a" && leases.Leases[0].Rack == "r7" && leases.Leases[0].Expires.After(leases.Now) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rack leases = %+v, want r7 held by ctl-a", leases)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func asAPIError(err error, ae **api.APIError) bool { return errors.As(err, ae) }
