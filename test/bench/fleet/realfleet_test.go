// Package fleet measures the controller driving fleets of SIMULATED machines
// that speak the real protocols (test/fleet/realfleet: test/fleet hosts and
// bmc/redfishsim BMCs in a process of their own) in many racks. `make test`
// runs a small fleet (2 racks); `make bench-fleet` runs the sizes of
// REALFLEET_RACKS × REALFLEET_PER_RACK and prints the figures
// (test/bench/fleet/run.sh).
package fleet

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/test/fleet/realfleet"
)

// TestMain is also the machines' process: the test starts this binary
// again with realfleet.MachinesEnv set.
func TestMain(m *testing.M) {
	realfleet.RunIfMachines()
	os.Exit(m.Run())
}

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
// one controller from Discovered to Ready: BMCs over Redfish (bmclib), the
// controller's DHCP through each rack's relay with option 82, TFTP, HTTP,
// agent check-ins and long polls, the signed image streamed and hashed.
func TestRealProtocolFleet(t *testing.T) {
	t.Parallel()
	cfg := realfleet.Config{
		Racks:       envInt(t, "REALFLEET_RACKS", 2, 1, 250),
		PerRack:     envInt(t, "REALFLEET_PER_RACK", 3, 1, 200),
		ImageSize:   int64(envInt(t, "REALFLEET_IMAGE_KIB", 256, 1, 1<<20)) << 10,
		Timeout:     time.Duration(envInt(t, "REALFLEET_TIMEOUT_S", 300, 10, 3600)) * time.Second,
		Workers:     envInt(t, "REALFLEET_WORKERS", 64, 1, 100000),      // serve --workers
		MaxInFlight: envInt(t, "REALFLEET_MAX_IN_FLIGHT", 0, 0, 100000), // serve --max-in-flight
		Dir:         t.TempDir(),
		Machines:    exec.Command(os.Args[0], "-test.run=^$"),
	}
	if hp := os.Getenv("REALFLEET_HEAPPROFILE"); hp != "" {
		stop := make(chan struct{})
		defer close(stop)
		go peakHeapProfile(hp, stop)
	}
	res, err := realfleet.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ready() != res.Nodes {
		t.Errorf("%v of %d nodes; want all Ready (hosts by stage: %v; host errors: %v)", res.States, res.Nodes, res.HostStages, res.HostErrors)
	}
	// Parsed by test/bench/fleet/run.sh: the controller's figures, then the
	// machines' process's.
	t.Logf("realfleet: nodes=%d racks=%d workers=%d wall=%.1f cpu=%.1f rssMiB=%.0f simCpu=%.1f simRssMiB=%.0f redfishRequests=%d ready=%d",
		res.Nodes, res.Racks, cfg.Workers, res.WallSeconds, res.CPUSeconds, res.PeakRSSMiB, res.SimCPUSeconds, res.SimPeakRSSMiB,
		res.RedfishRequests, res.Ready())
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
