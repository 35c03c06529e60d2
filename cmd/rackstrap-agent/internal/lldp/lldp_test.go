package lldp

import (
	"context"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

var switchMAC = net.HardwareAddr{0x0c, 0x42, 0xa1, 0x00, 0x00, 0x01}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	for name, n := range map[string]inventory.LLDP{
		"mac chassis, ipv4": {ChassisID: "0c:42:a1:00:00:01", SystemName: "leaf-r07-a", PortID: "swp12", PortDescription: "rack7 node12 eno1", MgmtAddress: "10.7.0.2"},
		"local chassis":     {ChassisID: "leaf-r07-b", PortID: "Ethernet1/12", MgmtAddress: "fd00::7:2"},
		"bare":              {ChassisID: "c", PortID: "p"},
	} {
		got, err := ParseFrame(Frame(switchMAC, n))
		if err != nil {
			t.Fatalf("%s: ParseFrame(Frame()) error %v", name, err)
		}
		if diff := cmp.Diff(n, *got); diff != "" {
			t.Errorf("%s: round trip (-want +got):\n%s", name, diff)
		}
	}
}

// A frame assembled by hand from the 802.1AB layout, independently of
// Frame, with an 802.1Q tag and the TLVs in a different order.
func TestParseCapturedFrame(t *testing.T) {
	t.Parallel()
	frame, _ := hex.DecodeString(strings.Join([]string{
		"0180c200000e" + "0c42a1000001" + "8100" + "0064" + "88cc",
		"0207040c42a1000001",           // chassis ID, MAC
		"0405057377" + "7031",          // port ID, interface name "swp1"
		"06020078",                     // TTL 120
		"0a0a6c6561662d7230372d61",     // system name "leaf-r07-a"
		"0806" + "72616e6b3031",        // port description "rank01"
		"100c05010a070002020000000100", // mgmt address 10.7.0.2
		"0000",
	}, ""))
	got, err := ParseFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	want := inventory.LLDP{ChassisID: "0c:42:a1:00:00:01", PortID: "swp1", SystemName: "leaf-r07-a", PortDescription: "rank01", MgmtAddress: "10.7.0.2"}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("captured frame (-want +got):\n%s", diff)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	good := Frame(switchMAC, inventory.LLDP{ChassisID: "c", PortID: "p"})
	for name, tc := range map[string]struct {
		frame []byte
		want  string
	}{
		"short":         {good[:10], "shorter than an Ethernet header"},
		"not lldp":      {append(append([]byte{}, good[:12]...), 0x08, 0x00, 0, 0), "not LLDP"},
		"truncated tlv": {good[:14+3], "claims"},
		"wrong order":   {append(append([]byte{}, good[:14]...), 0x04, 0x02, 0x05, 'p'), "starts with chassis ID"},
		"early end":     {append(append([]byte{}, good[:14]...), 0x02, 0x02, 0x07, 'c', 0, 0), "starts with chassis ID"},
	} {
		if _, err := ParseFrame(tc.frame); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseFrame() = %v, want %q", name, err, tc.want)
		}
	}
}

// TestListenLoopback sends LLDP frames through a real AF_PACKET socket on
// the loopback interface and receives them with Listen (root, as the agent
// runs).
func TestListenLoopback(t *testing.T) {
	t.Parallel()
	want := inventory.LLDP{ChassisID: "0c:42:a1:00:00:01", SystemName: "leaf-lo", PortID: "swp3", MgmtAddress: "10.9.0.1"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		n   *inventory.LLDP
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := Listen(ctx, "lo")
		done <- result{n, err}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("Listen(lo) = %v", r.err)
			}
			if diff := cmp.Diff(want, *r.n); diff != "" {
				t.Errorf("Listen(lo) (-want +got):\n%s", diff)
			}
			return
		case <-tick.C:
			if err := Send("lo", Frame(switchMAC, want)); err != nil {
				t.Fatalf("Send(lo): %v", err)
			}
		}
	}
}

func TestListenTimesOut(t *testing.T) {
	t.Parallel()
	// A dummy-free check: nothing sends on this socket's filter except the
	// other test, which sends a different system name; a short deadline
	// ends Listen with the context's error either way.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := Listen(ctx, "lo")
	if err == nil && n.SystemName != "leaf-lo" {
		t.Fatalf("Listen = %+v, want a timeout", n)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Listen took %v past a 300ms deadline", time.Since(start))
	}
	if _, err := Listen(context.Background(), "no-such-if0"); err == nil {
		t.Error("Listen on a missing interface succeeded")
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(Frame(switchMAC, inventory.LLDP{ChassisID: "0c:42:a1:00:00:01", SystemName: "s", PortID: "p", PortDescription: "d", MgmtAddress: "fd00::1"}))
	f.Add(Frame(switchMAC, inventory.LLDP{ChassisID: "x", PortID: "y", MgmtAddress: "10.0.0.1"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseFrame(b)
		if err == nil && n == nil {
			t.Fatal("nil neighbour without an error")
		}
	})
}
