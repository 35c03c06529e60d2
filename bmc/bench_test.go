package bmc

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// Benchmarks against the simulator (go test -run '^$' -bench . ./bmc/):
// the cost of one operation, client and simulated BMC together.

func benchSim(b *testing.B) (*Client, Endpoint) {
	f, err := redfishsim.Start(redfishsim.Config{First: netip.MustParseAddr("127.10.201.1")}, redfishsim.SampleNode(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return New(Config{Timeout: 30 * time.Second, PollInterval: time.Millisecond}), endpointOf(f.BMCs()[0])
}

func BenchmarkPowerOnOff(b *testing.B) {
	c, ep := benchSim(b)
	for b.Loop() {
		if _, err := c.Power(context.Background(), ep, ActionOn, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Power(context.Background(), ep, ActionOff, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInventory(b *testing.B) {
	c, ep := benchSim(b)
	for b.Loop() {
		if _, err := c.Inventory(context.Background(), ep); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSurvey(b *testing.B) {
	c, ep := benchSim(b)
	for b.Loop() {
		if _, err := c.Survey(context.Background(), ep); err != nil {
			b.Fatal(err)
		}
	}
}
