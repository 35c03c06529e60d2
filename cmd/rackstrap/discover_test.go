package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

func TestDiscoverMatchesManifestAndEnrolls(t *testing.T) {
	t.Parallel()
	url, _ := apiServer(t)
	// Three simulated BMCs on their own loopback /29.
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := uint16(l.LocalAddr().(*net.UDPAddr).Port)
	l.Close()
	first := netip.AddrFrom4([4]byte{127, 23, byte(p >> 8), byte(p)&^7 | 1})
	fleet, err := redfishsim.Start(redfishsim.Config{HTTP: true, First: first},
		redfishsim.SampleNode(1), redfishsim.SampleNode(2), redfishsim.SampleNode(3))
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	b := fleet.BMCs()
	addr := func(i int) string { return b[i].Addr().Addr().String() }
	dir := t.TempDir()
	creds := filepath.Join(dir, "logins.yaml")
	os.WriteFile(creds, []byte("- username: root\n  password: calvin\n- username: admin\n  password: password\n"), 0o600)
	manifest := filepath.Join(dir, "rack.yaml")
	os.WriteFile(manifest, []byte(fmt.Sprintf(`racks:
  - name: d1
    nodes:
      - slot: 1
        serial: RSIM000001
        bmc: %s
      - slot: 2
        serial: WRONG-SERIAL
        bmc: %s
      - slot: 3
        bmc: 127.23.250.250
`, addr(0), addr(1))), 0o644)

	prefix := netip.PrefixFrom(first, 29).Masked().String()
	out, err := run(t, "--server", url, "discover", "--cidr", prefix, "--http-port", fmt.Sprint(fleet.Port()), "--https-port", "1",
		"--no-ipmi", "--credentials", creds, "--manifest", manifest, "--enroll", "-o", "json")
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, out)
	}
	var rep discoverReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]discovered{}
	for _, d := range rep.Found {
		got[d.Address] = d
	}
	if len(got) != 3 {
		t.Fatalf("found %d BMCs, want 3: %+v", len(got), rep.Found)
	}
	if d := got[addr(0)]; d.Match != "matched" || d.Serial != "RSIM000001" || d.Node != "d1-n01" || d.Result != "created" || len(d.HostMACs) == 0 {
		t.Errorf("slot 1's BMC = %+v", d)
	}
	if d := got[addr(1)]; d.Match != "mismatched" || !strings.Contains(d.Problem, "RSIM000002") || d.Node != "" {
		t.Errorf("slot 2's BMC (another machine than listed) = %+v", d)
	}
	if d := got[addr(2)]; d.Match != "unexpected" || d.Node == "" {
		t.Errorf("the unlisted BMC = %+v", d)
	}
	if len(rep.Missing) != 1 || rep.Missing[0] != "d1-n03" {
		t.Errorf("missing = %v, want d1-n03", rep.Missing)
	}
	if out, _ := run(t, "--server", url, "nodes", "show", "d1-n01", "-o", "json"); !strings.Contains(out, addr(0)) || !strings.Contains(out, "RSIM000001") {
		t.Errorf("enrolled node: %s", out)
	}
	if _, err := run(t, "discover", "--cidr", "nonsense"); err == nil || !strings.Contains(err.Error(), "10.0.12.0/24") {
		t.Errorf("bad --cidr = %v", err)
	}
}

func TestSimulateBMCServesUntilStopped(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	out := &syncBuffer{}
	cmd.SetOut(out)
	cmd.SetArgs([]string{"simulate", "bmc", "--nodes", "2", "--first", "127.24.0.1", "--http", "-o", "json"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "RSIM000002") {
		if time.Now().After(deadline) {
			t.Fatalf("no BMC list printed: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rows []struct{ Endpoint string }
	json.Unmarshal([]byte(out.String()), &rows)
	resp, err := http.Get(rows[0].Endpoint + "/redfish/v1/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET the service root of %s: %v", rows[0].Endpoint, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("simulate bmc stopped with %v", err)
	}
	if _, err := run(t, "simulate", "bmc", "--first", "10.0.0.1"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a non-loopback --first = %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
