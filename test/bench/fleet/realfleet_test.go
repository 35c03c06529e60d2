// Package fleet measures the controller driving fleets of SIMULATED machines
// that speak the real protocols (test/fleet hosts, bmc/redfishsim BMCs) in
// many racks. `make test` runs a small fleet (2 racks); `make bench-fleet`
// runs the sizes of REALFLEET_RACKS × REALFLEET_PER_RACK and prints the
// figures (test/bench/fleet/run.sh).
package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	"github.com/rackstrap/rackstrap/test/fleet"
	"github.com/rackstrap/rackstrap/test/lab"
)

func envInt(t *testing.T, name string, def, lo, hi int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		t.Fatalf("%s=%q: give %d to %d", name, v, lo, hi)
	}
	return n
}

// Racks of real-protocol machines, one relay and one /24 each, driven by
// one in-process controller from Discovered to Ready: BMCs over Redfish
// (bmclib), the controller's DHCP through each rack's relay with option 82,
// TFTP, HTTP, agent check-ins, the signed image streamed and hashed.
func TestRealProtocolFleet(t *testing.T) {
	t.Parallel()
	racks := envInt(t, "REALFLEET_RACKS", 2, 1, 250)
	perRack := envInt(t, "REALFLEET_PER_RACK", 3, 1, 200)
	imageKiB := envInt(t, "REALFLEET_IMAGE_KIB", 256, 1, 1<<20)
	limit := time.Duration(envInt(t, "REALFLEET_TIMEOUT_S", 300, 10, 3600)) * time.Second
	workers := envInt(t, "REALFLEET_WORKERS", 64, 1, 100000) // serve --workers
	n := racks * perRack
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)

	// The lab gives the artifacts, the signed image and the boot services'
	// ports; the racks, subnets and BMCs are made here.
	l, err := lab.Prepare(lab.Config{Rack: "unused", Nodes: 0, Dir: filepath.Join(dir, "artifacts"), ImageSize: int64(imageKiB) << 10, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	boot := *l.Boot
	relayPort := boot.DHCP.RelayPort
	boot.DHCP.Subnets, boot.DHCP.Locations = nil, nil
	for r := range racks {
		relay := relayOf(r)
		a := relay.As4()
		boot.DHCP.Subnets = append(boot.DHCP.Subnets, dhcp.Subnet{
			Prefix:     netip.PrefixFrom(relay, 24).Masked(),
			Pools:      []dhcp.Range{{Start: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 10}), End: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 250})}},
			NextServer: netip.MustParseAddr("127.0.0.1"),
		})
		for s := 1; s <= perRack; s++ {
			boot.DHCP.Locations = append(boot.DHCP.Locations, fleet.Location(rackName(r), s, relay))
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := controller.Config{DataDir: filepath.Join(dir, "data"), APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: &boot,
		Engine: lifecycle.Config{MaxAttempts: 3, Workers: workers,
			Deadlines: map[string]time.Duration{lifecycle.StepWaitNetboot: limit, lifecycle.StepWaitFirstBoot: limit}}}
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx, cfg, log, func(c *controller.Controller) { ready <- c }) }()
	var ctl *controller.Controller
	select {
	case ctl = <-ready:
	case err := <-done:
		t.Fatalf("controller: %v", err)
	}
	defer func() {
		cancel()
		<-done
	}()

	// The machines: BMCs and hosts in a process of their own.
	sim := startSimulator(t, simConfig{Racks: racks, PerRack: perRack, DHCP: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), boot.DHCP.Port),
		RelayPort: relayPort, TFTPPort: boot.TFTP.Addr.Port(), MaxPoll: 2 * time.Second, CPUProfile: os.Getenv("REALFLEET_SIM_CPUPROFILE")})
	start := time.Now()
	cpu0 := cpuTime()
	if hp := os.Getenv("REALFLEET_HEAPPROFILE"); hp != "" {
		stop := make(chan struct{})
		defer close(stop)
		go peakHeapProfile(hp, stop)
	}
	var g errgroup.Group
	g.SetLimit(64) // concurrent declarations share the store's group commits
	for i, ep := range sim.Hello.BMCs {
		r, slot := i/perRack, i%perRack+1
		node := model.Node{Name: fmt.Sprintf("%s-n%02d", rackName(r), slot), Profile: "hgx-h100-8gpu", Desired: model.WantReady,
			Identity: model.Identity{BMC: ep, Rack: rackName(r), Slot: slot}}
		g.Go(func() error {
			_, _, err := ctl.Store.CreateNode(ctx, node, "bench")
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	var counts map[model.State]int
	deadline := start.Add(limit)
	for {
		counts, err = ctl.Store.CountByState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts[model.Ready]+counts[model.Failed]+counts[model.Quarantined] == n {
			break
		}
		if time.Now().After(deadline) {
			rep, err := sim.Stop()
			t.Fatalf("after %s: %v of %d nodes (hosts by stage: %v; host errors: %v; simulator: %v)", limit, counts, n, rep.Stages, rep.Errors, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	rss := peakRSSMiB()
	rep, err := sim.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if counts[model.Ready] != n {
		t.Errorf("%v of %d nodes; want all Ready (hosts by stage: %v; host errors: %v)", counts, n, rep.Stages, rep.Errors)
	}
	// Parsed by test/bench/fleet/run.sh: the controller's figures, then the
	// simulator process's.
	t.Logf("realfleet: nodes=%d racks=%d workers=%d wall=%.1f cpu=%.1f rssMiB=%.0f simCpu=%.1f simRssMiB=%.0f redfishRequests=%d ready=%d goroutines=%d",
		n, racks, workers, wall.Seconds(), cpu.Seconds(), rss, rep.CPUSeconds, rep.PeakRSSMiB, rep.Requests, counts[model.Ready], runtime.NumGoroutine())
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var rssOnce sync.Mutex

// peakRSSMiB is the process's peak resident set (VmHWM).
func peakRSSMiB() float64 {
	rssOnce.Lock()
	defer rssOnce.Unlock()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// peakHeapProfile writes to path the heap profile of the moment the heap
// in use was largest (sampled every 2 s), until stop closes.
func peakHeapProfile(path string, stop <-chan struct{}) {
	var peak uint64
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse <= peak {
			continue
		}
		peak = ms.HeapInuse
		if f, err := os.Create(path); err == nil {
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
}
