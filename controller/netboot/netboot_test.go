package netboot

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	"github.com/rackstrap/rackstrap/pxe/ipxe"
)

func newService(t *testing.T) (*Service, *store.DB) {
	t.Helper()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(Config{BootBase: "http://10.0.0.1:8081/", Server: "http://10.0.0.1:8080", Kernel: "vmlinuz", Initrd: "initrd.img",
		Cmdline: []string{"console=ttyS0,115200", "quiet"}}, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestScriptPerState(t *testing.T) {
	t.Parallel()
	s, db := newService(t)
	ctx := context.Background()
	for state, mac := range map[model.State]string{model.Inspecting: "52:54:00:00:00:01", model.Imaging: "52:54:00:00:00:02", model.Ready: "52:54:00:00:00:03"} {
		db.CreateNode(ctx, model.Node{Name: "n-" + string(state), State: state, Identity: model.Identity{MACs: []string{mac}}}, "test")
	}
	mac := func(s string) net.HardwareAddr { hw, _ := net.ParseMAC(s); return hw }

	for _, m := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		out, err := s.Script(ctx, mac(m))
		if err != nil {
			t.Fatal(err)
		}
		script := string(out)
		var cmdline string
		for _, line := range strings.Split(script, "\n") {
			if strings.HasPrefix(line, "kernel ") {
				cmdline = strings.SplitN(line, " ", 3)[2]
			}
		}
		params, err := ipxe.ParseCmdline(cmdline)
		if err != nil {
			t.Fatalf("script for %s has no parsable kernel line: %v\n%s", m, err, script)
		}
		got := map[string]string{}
		for _, p := range params {
			got[p.Key] = p.Value
		}
		if got["rackstrap.server"] != "http://10.0.0.1:8080" || got["rackstrap.phase"] != "netboot" || len(got["rackstrap.token"]) < 40 || got["console"] != "ttyS0,115200" {
			t.Errorf("kernel parameters for %s = %v", m, got)
		}
		if !strings.Contains(script, "http://10.0.0.1:8081/vmlinuz") || !strings.Contains(script, "http://10.0.0.1:8081/initrd.img") {
			t.Errorf("script for %s does not fetch the kernel and initrd from the boot server:\n%s", m, script)
		}
		// The token in the script is the node's, once.
		node, err := db.RecordCheckIn(ctx, got["rackstrap.token"], "netboot", "t", nil, "test")
		if err != nil || !strings.HasPrefix(node, "n-") {
			t.Errorf("the script's token checks in as %q, %v", node, err)
		}
	}
	out, _ := s.Script(ctx, mac("52:54:00:00:00:03"))
	if !strings.Contains(string(out), "exit") && !strings.Contains(string(out), "sanboot") {
		t.Errorf("a Ready node is not sent to its disk:\n%s", out)
	}
	// An unknown machine gets the discovery boot, once recorded.
	for i := 0; i < 2; i++ {
		out, err := s.Script(ctx, mac("52:54:00:99:99:99"))
		if err != nil || !strings.Contains(string(out), "rackstrap.token=") {
			t.Fatalf("discovery boot of an unknown machine = %s, %v", out, err)
		}
	}
	n, err := db.GetNode(ctx, "unknown-525400999999")
	if err != nil || n.State != model.Discovered || n.Desired != model.WantEnrolled || len(n.Identity.MACs) != 1 {
		t.Errorf("the unknown machine's record = %+v, %v", n, err)
	}
	list, _ := db.ListNodes(ctx, store.NodeFilter{})
	if len(list) != 4 {
		t.Errorf("%d nodes after two discovery boots of one machine, want 4 (3 declared + 1 discovered)", len(list))
	}
}

func TestLeasesRoundTripAndEvents(t *testing.T) {
	t.Parallel()
	s, db := newService(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	batch := []dhcp.Lease{
		{IP: netip.MustParseAddr("10.0.0.100"), MAC: "52:54:00:00:00:01", State: dhcp.Bound, Expires: now.Add(time.Hour), Updated: now},
		{IP: netip.MustParseAddr("10.0.0.101"), MAC: "52:54:00:00:00:02", State: dhcp.Bound, Expires: now.Add(time.Hour), Updated: now},
	}
	if err := s.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	batch[1].MAC = "52:54:00:00:00:03"
	if err := s.Commit(ctx, batch[1:]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil || len(got) != 2 || got[1].MAC != "52:54:00:00:00:03" || !got[0].Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("Load = %+v, %v", got, err)
	}

	db.CreateNode(ctx, model.Node{Name: "n1", Identity: model.Identity{MACs: []string{"52:54:00:00:00:01"}}}, "test")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(runCtx) }()
	hw, _ := net.ParseMAC("52:54:00:00:00:01")
	s.DHCPEvent(dhcp.Event{Type: "ACK", IP: netip.MustParseAddr("10.0.0.100"), Boot: dhcp.BootDecision{File: "undionly.kpxe"},
		Client: dhcp.Client{MAC: hw, Location: &dhcp.NodeLocation{Rack: "r7", Slot: 12, CircuitID: "slot-12"}}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := db.GetNode(ctx, "n1")
		if n.Identity.Rack == "r7" && n.Identity.Slot == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("position not learned from option 82: %+v", n.Identity)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	entries, _ := db.ListAudit(ctx, store.AuditFilter{Node: "n1"})
	var boot bool
	for _, e := range entries {
		boot = boot || (e.Action == "dhcp.ack" && strings.Contains(string(e.Detail), "undionly.kpxe"))
	}
	if !boot {
		t.Error("the DHCP answer is not on the node's audit timeline")
	}
}

// TestScriptAgentTLS: with agent TLS on, the script sends the agent to the
// HTTPS URL and appends the site initrd after the netboot initrd.
func TestScriptAgentTLS(t *testing.T) {
	t.Parallel()
	s, db := newService(t)
	ctx := context.Background()
	db.CreateNode(ctx, model.Node{Name: "tls-n1", State: model.Inspecting, Identity: model.Identity{MACs: []string{"52:54:00:00:01:01"}}}, "test")
	hw, _ := net.ParseMAC("52:54:00:00:01:01")
	s.SetAgentTLS("https://10.0.0.1:8443", "site/rackstrap-site-0123456789abcdef.cpio")
	out, err := s.Script(ctx, hw)
	if err != nil {
		t.Fatal(err)
	}
	script := string(out)
	initrd := strings.Index(script, " http://10.0.0.1:8081/initrd.img")
	site := strings.Index(script, " http://10.0.0.1:8081/site/rackstrap-site-0123456789abcdef.cpio")
	if initrd < 0 || site < initrd {
		t.Errorf("script does not load the site initrd after the netboot initrd:\n%s", script)
	}
	if !strings.Contains(script, "rackstrap.server=https://10.0.0.1:8443") || strings.Contains(script, "rackstrap.server=http://") {
		t.Errorf("script does not send the agent to the HTTPS URL:\n%s", script)
	}
	if !strings.Contains(script, "rackstrap.ca=/etc/rackstrap/ca.crt") {
		t.Errorf("the agent is not told which CA to trust:\n%s", script)
	}
	if !strings.Contains(script, "initrd=rackstrap-site-0123456789abcdef.cpio") {
		t.Errorf("the kernel is not told about the site initrd (UEFI boots need initrd=NAME):\n%s", script)
	}
}
