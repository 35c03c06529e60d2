package main

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/rackstrap/rackstrap/test/fleet/realfleet"
)

// TestMain lets this test binary be the machines' process that `simulate
// fleet --protocols real` starts (it runs os.Executable, which in a test is
// this binary, as `simulate machines`).
func TestMain(m *testing.M) {
	if os.Getenv(realfleet.MachinesEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Two racks of machines speaking the real protocols, from a second
// process, reach Ready through the CLI, and the report splits CPU and
// memory between the controller and the machines.
func TestSimulateFleetRealProtocols(t *testing.T) {
	out, err := run(t, "simulate", "fleet", "--protocols", "real", "--nodes", "6", "--rack-size", "3", "--progress", "0", "-o", "json")
	if err != nil {
		t.Fatalf("simulate fleet --protocols real: %v\n%s", err, out)
	}
	var res realfleet.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if res.Nodes != 6 || res.Racks != 2 || res.Ready() != 6 {
		t.Errorf("report: %d nodes in %d racks, %d Ready (%v); want 6 in 2, all Ready", res.Nodes, res.Racks, res.Ready(), res.States)
	}
	if res.CPUSeconds <= 0 || res.SimCPUSeconds <= 0 || res.PeakRSSMiB <= 0 || res.SimPeakRSSMiB <= 0 || res.RedfishRequests == 0 {
		t.Errorf("report lacks the controller/machines split: %+v", res)
	}
	if _, err := run(t, "simulate", "fleet", "--protocols", "real", "--nodes", "5", "--rack-size", "3"); err == nil {
		t.Error("--nodes 5 in racks of 3 was accepted; want whole racks")
	}
	if _, err := run(t, "simulate", "fleet", "--protocols", "quantum"); err == nil {
		t.Error("--protocols quantum was accepted")
	}
}
