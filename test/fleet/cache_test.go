package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/cache"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// cacheRackSize is the hosts per rack of TestRackCacheBytes: small in
// `make test`, larger from `make bench-fleet` (FLEET_CACHE_RACK_SIZE).
func cacheRackSize(t *testing.T) int {
	if v := os.Getenv("FLEET_CACHE_RACK_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 250 {
			t.Fatalf("FLEET_CACHE_RACK_SIZE=%q: give 1 to 250", v)
		}
		return n
	}
	return 6
}

// Two racks of real-protocol hosts take their image from the controller's
// boot server, then (a second boot network) through one rack cache per
// rack (controller/cache, fetching from that boot server). The boot
// server's own count of image bytes is the measure: every host's image
// without caches, one image per rack with them.
func TestRackCacheBytes(t *testing.T) {
	t.Parallel()
	perRack := cacheRackSize(t)
	image := uint64(artifacts["image.raw"])
	got := map[bool]uint64{}
	for _, withCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", withCache), func(t *testing.T) {
			served := provisionTwoRacks(t, perRack, withCache)
			got[withCache] = served
			want := 2 * uint64(perRack) * image
			if withCache {
				want = 2 * image
			}
			if served != want {
				t.Errorf("boot server sent %d image bytes for 2 racks of %d (cache %v), want %d", served, perRack, withCache, want)
			}
		})
	}
	nodes := 2 * perRack
	// Parsed by test/bench/fleet/run.sh.
	t.Logf("cache-bytes: racks=2 perRack=%d image=%d without=%d with=%d perNodeWithout=%.0f perNodeWith=%.0f",
		perRack, image, got[false], got[true], float64(got[false])/float64(nodes), float64(got[true])/float64(nodes))
}

// provisionTwoRacks boots 2×perRack hosts to their image result and
// returns the image bytes the boot server sent.
func provisionTwoRacks(t *testing.T, perRack int, withCache bool) uint64 {
	var locs []dhcp.Location
	for s := 1; s <= perRack; s++ {
		locs = append(locs, Location("r02", s, netip.Addr{}))
	}
	h := newHarness(t, harnessOptions{slots: perRack, locations: locs})
	cfg2 := h.rackCfg
	cfg2.RelayAddr = h.relay.Next()
	rack2, err := NewRack(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rack2.Close() })

	rackOf := map[string]string{}
	caches := map[string]string{}
	if withCache {
		for _, rack := range []string{"r01", "r02"} {
			c, err := cache.New(cache.Config{Upstream: h.bootURL, Dir: t.TempDir(), Addr: netip.AddrPortFrom(h.relay, 0), Log: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Serve(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("cache %s: %v", rack, err)
				}
			})
			<-c.Ready()
			caches[rack] = "http://" + c.Addr().String()
		}
		h.ctl.imageURL = func(node, url, digest string) string {
			u, err := cache.BlobURL(caches[rackOf[node]], url, digest)
			if err != nil {
				t.Errorf("BlobURL: %v", err)
				return url
			}
			return u
		}
	}
	type m struct {
		b    *redfishsim.BMC
		host *Host
		node string
	}
	var all []m
	for i := range 2 * perRack {
		r, name, slot := h.rack, "r01", i+1
		if i >= perRack {
			r, name, slot = rack2, "r02", i-perRack+1
		}
		b, err := redfishsim.New(redfishsim.SampleNode(300+i), redfishsim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		host := r.Attach(b, HostOptions{Rack: name, Slot: slot})
		node := fmt.Sprintf("node-%d", 300+i)
		rackOf[node] = name
		h.ctl.enrol(host.MAC().String(), node)
		all = append(all, m{b, host, node})
	}
	for _, x := range all {
		pxeOnce(t, x.b, "Legacy")
		reset(t, x.b, "On")
	}
	sum := sha256.Sum256(h.files["image.raw"])
	digest := hex.EncodeToString(sum[:])
	for _, x := range all {
		waitFor(t, x.node+" image", 3*time.Minute, func() bool {
			_, ok := h.ctl.resultOf(x.node, "image")
			return ok || x.host.Stats().Stage == StageFailed
		}, func() string { return fmt.Sprintf("%+v", x.host.Stats()) })
		if r, _ := h.ctl.resultOf(x.node, "image"); !r.OK {
			t.Fatalf("%s: image result %+v, host %+v", x.node, r, x.host.Stats())
		}
		if st := x.host.Stats(); st.ImageBytes != int64(len(h.files["image.raw"])) || st.ImageSHA256 != digest {
			t.Errorf("%s: streamed %d image bytes with sha256 %s, want %d with %s", x.node, st.ImageBytes, st.ImageSHA256, len(h.files["image.raw"]), digest)
		}
	}
	return h.boot.FileBytes()["image.raw"]
}
