package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// TestLifecycle boots three machines of one rack at once through the real
// boot services: PXE (BIOS and UEFI), iPXE, kernel, netboot check-in,
// image, then a disk boot's first-boot check-in and burn-in.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{slots: 3, bootDelay: 10 * time.Millisecond})
	type machine struct {
		bmc  *redfishsim.BMC
		host *Host
		node string
		mode string
		file string
	}
	var ms []machine
	for i, mode := range []string{"Legacy", "UEFI", "Legacy"} {
		b, host := h.machine(i+1, HostOptions{Rack: "r01", Slot: i + 1})
		file := map[string]string{"Legacy": "undionly.kpxe", "UEFI": "ipxe.efi"}[mode]
		ms = append(ms, machine{b, host, fmt.Sprintf("node-%d", i+1), mode, file})
	}
	for _, m := range ms {
		pxeOnce(t, m.bmc, m.mode)
		reset(t, m.bmc, "On")
	}
	image := h.files["image.raw"]
	sum := sha256.Sum256(image)
	wantSHA := hex.EncodeToString(sum[:])
	for _, m := range ms {
		waitFor(t, m.node+" image result", 20*time.Second, func() bool {
			_, ok := h.ctl.resultOf(m.node, "image")
			return ok
		}, func() string { return fmt.Sprintf("%+v", m.host.Stats()) })
		res, _ := h.ctl.resultOf(m.node, "image")
		var got ImageReport
		if err := json.Unmarshal(res.Result, &got); err != nil || !res.OK {
			t.Fatalf("%s: image result %+v: %v", m.node, res, err)
		}
		if want := (ImageReport{SHA256: wantSHA, Bytes: int64(len(image))}); got != want {
			t.Errorf("%s: image result = %+v, want %+v", m.node, got, want)
		}

		st := m.host.Stats()
		mac := m.host.MAC().String()
		if st.DHCPExchanges != 2 || !h.net.Contains(st.IP) || st.BootFile != m.file ||
			st.TFTPBytes != int64(len(h.files[m.file])) || st.Scripts != 1 ||
			st.ScriptURL != h.bootURL+"/ipxe?mac="+mac ||
			st.KernelBytes != int64(len(h.files["vmlinuz"])+len(h.files["initrd.gz"])) ||
			st.NetbootCheckIns != 1 || st.Node != m.node || st.ImagesWritten != 1 || st.ImageBytes != int64(len(image)) ||
			st.ImageSHA256 != wantSHA || !st.Imaged || st.Errors != 0 || st.PXEBoots != 1 {
			t.Errorf("%s (%s): stats after netboot = %+v", m.node, m.mode, st)
		}
		if !strings.Contains(st.Cmdline, "rackstrap.phase=netboot") || !strings.Contains(st.Cmdline, "rackstrap.server="+h.ctl.srv.URL) {
			t.Errorf("%s: kernel command line %q lacks the agent's parameters", m.node, st.Cmdline)
		}

		// Both DHCP exchanges came through the relay with option 82.
		acks := h.events.acks(mac)
		if len(acks) != 2 {
			t.Fatalf("%s: %d ACKs at the DHCP server, want 2", m.node, len(acks))
		}
		for i, e := range acks {
			loc := e.Client.Location
			if loc == nil || loc.Rack != "r01" || loc.Slot != m.host.Options().Slot || loc.Relay != h.relay || loc.CircuitID != CircuitID(loc.Slot) {
				t.Errorf("%s: ACK %d location = %+v, want r01 slot %d via %v", m.node, i, loc, m.host.Options().Slot, h.relay)
			}
			if e.IP != st.IP {
				t.Errorf("%s: ACK %d for %v, host holds %v", m.node, i, e.IP, st.IP)
			}
		}
		if !acks[0].Client.PXE || acks[0].Client.IPXE || !acks[1].Client.IPXE {
			t.Errorf("%s: first ACK client %+v, second %+v: want PXE ROM then iPXE", m.node, acks[0].Client, acks[1].Client)
		}
		if wantArch := map[string]uint16{"Legacy": 0, "UEFI": 7}[m.mode]; uint16(acks[0].Client.Arch) != wantArch {
			t.Errorf("%s: client arch %d, want %d", m.node, acks[0].Client.Arch, wantArch)
		}
		if acks[0].Client.UUID == "" {
			t.Errorf("%s: no option 97 machine UUID", m.node)
		}

		// The check-in carried the machine's hardware, in band, from the
		// leased address.
		cis := h.ctl.checkInsOf(m.node)
		if len(cis) != 1 || cis[0].Phase != "netboot" {
			t.Fatalf("%s: check-ins %+v, want one netboot", m.node, cis)
		}
		want := m.bmc.Node().Hardware
		inv := cis[0].Inventory
		if inv.Source != inventory.InBand {
			t.Errorf("%s: inventory source %q, want %q", m.node, inv.Source, inventory.InBand)
		}
		if d := cmp.Diff(want.System, inv.System); d != "" {
			t.Errorf("%s: inventory system (-bmc +agent):\n%s", m.node, d)
		}
		if len(inv.GPUs) != len(want.GPUs) || len(inv.NICs) != len(want.NICs) || len(inv.Memory.DIMMs) != len(want.Memory.DIMMs) {
			t.Errorf("%s: inventory has %d GPUs, %d NICs, %d DIMMs; want %d, %d, %d", m.node,
				len(inv.GPUs), len(inv.NICs), len(inv.Memory.DIMMs), len(want.GPUs), len(want.NICs), len(want.Memory.DIMMs))
		}
		if ap, err := netip.ParseAddrPort(cis[0].Remote); err != nil || ap.Addr() != st.IP {
			t.Errorf("%s: checked in from %s, want its lease %v", m.node, cis[0].Remote, st.IP)
		}
	}
	if got := h.tftp.Stats().Served; got != 3 {
		t.Errorf("TFTP transfers served = %d, want 3", got)
	}

	// The controller boots the disk: the installed OS checks in once with
	// the first-boot token and runs burn-in.
	for _, m := range ms {
		reset(t, m.bmc, "ForceRestart")
	}
	for _, m := range ms {
		waitFor(t, m.node+" burn-in", 20*time.Second, func() bool {
			_, ok := h.ctl.resultOf(m.node, "burn-in")
			return ok
		}, func() string { return fmt.Sprintf("%+v", m.host.Stats()) })
		res, _ := h.ctl.resultOf(m.node, "burn-in")
		var got struct{ Checks []burnInCheck }
		if err := json.Unmarshal(res.Result, &got); err != nil || !res.OK {
			t.Fatalf("%s: burn-in result %+v: %v", m.node, res, err)
		}
		if want := []burnInCheck{{Name: "gpu-burn", Pass: true}, {Name: "memtest", Pass: true}}; !cmp.Equal(got.Checks, want) {
			t.Errorf("%s: burn-in checks = %+v, want %+v", m.node, got.Checks, want)
		}
		cis := h.ctl.checkInsOf(m.node)
		if len(cis) != 2 || cis[1].Phase != "firstboot" || !strings.HasPrefix(cis[1].Token, "firstboot-"+m.node) {
			t.Errorf("%s: check-ins %+v, want netboot then firstboot with the image's token", m.node, cis)
		}
		st := m.host.Stats()
		if st.Boots != 2 || st.DiskBoots != 1 || st.FirstbootCheckIns != 1 || st.BurnIns != 1 || !st.BurnInPassed ||
			st.Tasks != 2 || st.Redelivered != 0 || st.Errors != 0 || st.Cancelled != 1 || st.DHCPExchanges != 2 {
			t.Errorf("%s: stats after first boot = %+v", m.node, st)
		}
		for k, n := range st.TaskRuns {
			if n != 1 {
				t.Errorf("%s: task %s ran %d times", m.node, k, n)
			}
		}
	}

	// A later disk boot: the token is spent, nothing is checked in again.
	m := ms[0]
	reset(t, m.bmc, "ForceRestart")
	waitFor(t, "third boot", 10*time.Second, func() bool { return m.host.Stats().Boots == 3 }, func() string { return fmt.Sprintf("%+v", m.host.Stats()) })
	time.Sleep(100 * time.Millisecond)
	if cis := h.ctl.checkInsOf(m.node); len(cis) != 2 {
		t.Errorf("check-ins after a second disk boot = %d, want 2", len(cis))
	}
	// Power off stops the host.
	reset(t, m.bmc, "ForceOff")
	waitFor(t, "stage off", 5*time.Second, func() bool { return m.host.Stats().Stage == StageOff }, func() string { return fmt.Sprintf("%+v", m.host.Stats()) })
	if rs := h.rack.Stats(); rs.Relayed < 12 || rs.Replies < 12 || rs.Malformed != 0 {
		t.Errorf("relay stats = %+v, want at least 12 relayed and answered", rs)
	}
}

// ImageReport is an image task's result as the controller reads it.
type ImageReport struct {
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

func TestFaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{slots: 6, slowRate: 1 << 20})
	image := h.files["image.raw"]
	sum := sha256.Sum256(image)
	wantSHA := hex.EncodeToString(sum[:])
	hosts := map[Fault]*Host{}
	bmcs := map[Fault]*redfishsim.BMC{}
	for i, f := range []Fault{FaultNoPXE, FaultImageCorrupt, FaultBurnInFail, FaultSlowDownload, FaultMissingGPU} {
		b, host := h.machine(10+i, HostOptions{Rack: "r01", Slot: i + 1, Fault: f})
		hosts[f], bmcs[f] = host, b
		pxeOnce(t, b, "UEFI")
		reset(t, b, "On")
	}
	node := func(f Fault) string {
		return fmt.Sprintf("node-%d", 10+map[Fault]int{FaultNoPXE: 0, FaultImageCorrupt: 1, FaultBurnInFail: 2, FaultSlowDownload: 3, FaultMissingGPU: 4}[f])
	}
	imaged := func(f Fault) ctlResult {
		t.Helper()
		waitFor(t, string(f)+" image", 20*time.Second, func() bool { _, ok := h.ctl.resultOf(node(f), "image"); return ok },
			func() string { return fmt.Sprintf("%+v", hosts[f].Stats()) })
		r, _ := h.ctl.resultOf(node(f), "image")
		return r
	}

	t.Run("image-corrupt", func(t *testing.T) {
		r := imaged(FaultImageCorrupt)
		var got ImageReport
		json.Unmarshal(r.Result, &got)
		if !r.OK || got.SHA256 == wantSHA || len(got.SHA256) != 64 || got.Bytes != int64(len(image)) {
			t.Errorf("image result = %+v %+v, want ok with a wrong sha256 and the right size", r, got)
		}
	})
	t.Run("slow-download", func(t *testing.T) {
		r := imaged(FaultSlowDownload)
		var got ImageReport
		json.Unmarshal(r.Result, &got)
		if got.SHA256 != wantSHA {
			t.Errorf("image result = %+v, want sha256 %s", got, wantSHA)
		}
		// 600 kB at 1 MiB/s: over half a second (a lower bound only).
		if st := hosts[FaultSlowDownload].Stats(); st.ImageTime < 500*time.Millisecond {
			t.Errorf("slow download took %v, want ≥ 0.5 s", st.ImageTime)
		}
	})
	t.Run("missing-gpu", func(t *testing.T) {
		imaged(FaultMissingGPU)
		cis := h.ctl.checkInsOf(node(FaultMissingGPU))
		want := len(bmcs[FaultMissingGPU].Node().Hardware.GPUs)
		if len(cis) != 1 || len(cis[0].Inventory.GPUs) != want-1 {
			t.Errorf("check-in inventory GPUs = %d, want %d", len(cis[0].Inventory.GPUs), want-1)
		}
	})
	t.Run("burnin-fail", func(t *testing.T) {
		f := FaultBurnInFail
		imaged(f)
		reset(t, bmcs[f], "ForceRestart")
		waitFor(t, "burn-in", 20*time.Second, func() bool { _, ok := h.ctl.resultOf(node(f), "burn-in"); return ok },
			func() string { return fmt.Sprintf("%+v", hosts[f].Stats()) })
		r, _ := h.ctl.resultOf(node(f), "burn-in")
		var got struct{ Checks []burnInCheck }
		json.Unmarshal(r.Result, &got)
		if r.OK || r.Message == "" || len(got.Checks) != 2 || got.Checks[0].Pass || !got.Checks[1].Pass {
			t.Errorf("burn-in result = %+v %+v, want failed on the first check", r, got)
		}
		if st := hosts[f].Stats(); st.BurnInPassed || st.BurnIns != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("no-pxe", func(t *testing.T) {
		host := hosts[FaultNoPXE]
		waitFor(t, "ignored boot", 5*time.Second, func() bool { return host.Stats().Ignored == 1 }, func() string { return fmt.Sprintf("%+v", host.Stats()) })
		if acks := h.events.acks(host.MAC().String()); len(acks) != 0 {
			t.Errorf("DHCP ACKs for a host that ignores PXE: %d", len(acks))
		}
		if st := host.Stats(); st.Stage != StageNoBoot || st.DHCPExchanges != 0 || st.NetbootCheckIns != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestBootFailures: a blank disk, an unknown machine left waiting, a dead
// DHCP server; each is recorded, and power-off or Close ends the boot.
func TestBootFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{slots: 3})

	// A blank disk: nothing to boot.
	b1, host1 := h.machine(21, HostOptions{Rack: "r01", Slot: 1})
	reset(t, b1, "On")
	waitFor(t, "no boot", 5*time.Second, func() bool { return host1.Stats().Stage == StageNoBoot }, func() string { return fmt.Sprintf("%+v", host1.Stats()) })
	if st := host1.Stats(); st.Errors != 1 || !strings.Contains(st.LastError, "no image") {
		t.Errorf("blank disk stats = %+v", st)
	}

	// A machine the controller does not know: its script waits and asks
	// again, until the machine is powered off.
	b2, err := redfishsim.New(redfishsim.SampleNode(22), redfishsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host2 := h.rack.Attach(b2, HostOptions{Rack: "r01", Slot: 2})
	pxeOnce(t, b2, "Legacy")
	reset(t, b2, "On")
	waitFor(t, "second script", 10*time.Second, func() bool { return host2.Stats().Scripts >= 2 }, func() string { return fmt.Sprintf("%+v", host2.Stats()) })
	reset(t, b2, "ForceOff")
	waitFor(t, "cancelled", 5*time.Second, func() bool { return host2.Stats().Cancelled == 1 }, func() string { return fmt.Sprintf("%+v", host2.Stats()) })
	if st := host2.Stats(); st.Stage != StageOff || st.NetbootCheckIns != 0 {
		t.Errorf("waiting machine stats = %+v", st)
	}

	// No DHCP server answers: the PXE ROM gives up (PXE-E51).
	rack, err := NewRack(Config{
		DHCPServer: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t, netip.MustParseAddr("127.0.0.1"))),
		RelayAddr:  h.relay.Next(), DHCPTimeout: 20 * time.Millisecond, DHCPRetries: 2, Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rack.Close()
	b3, err := redfishsim.New(redfishsim.SampleNode(23), redfishsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host3 := rack.Attach(b3, HostOptions{Rack: "r02", Slot: 1})
	pxeOnce(t, b3, "UEFI")
	reset(t, b3, "On")
	waitFor(t, "failed", 5*time.Second, func() bool { return host3.Stats().Stage == StageFailed }, func() string { return fmt.Sprintf("%+v", host3.Stats()) })
	if st := host3.Stats(); !strings.Contains(st.LastError, "PXE-E51") || st.DHCPRetries != 2 {
		t.Errorf("no-server stats = %+v", st)
	}
	if rack.Addr().Port() == 0 || rack.Addr().Addr() != h.relay.Next() {
		t.Errorf("Addr() = %v", rack.Addr())
	}
}

func TestNewRackValidates(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no server":   {RelayAddr: netip.MustParseAddr("127.0.0.9")},
		"no relay":    {DHCPServer: netip.MustParseAddrPort("127.0.0.1:67")},
		"ipv6 relay":  {DHCPServer: netip.MustParseAddrPort("127.0.0.1:67"), RelayAddr: netip.MustParseAddr("::1")},
		"neg delay":   {DHCPServer: netip.MustParseAddrPort("127.0.0.1:67"), RelayAddr: netip.MustParseAddr("127.0.0.9"), BootDelay: -1},
		"unspecified": {DHCPServer: netip.MustParseAddrPort("127.0.0.1:67"), RelayAddr: netip.IPv4Unspecified()},
	} {
		if r, err := NewRack(cfg); err == nil {
			r.Close()
			t.Errorf("NewRack(%s) = nil error, want one", name)
		}
	}
}

// TestControllerRestart: the agent rides out a controller that answers 503
// for a while, and a task handed out again after its result was recorded
// is reported again, not run twice.
func TestControllerRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{slots: 1})
	h.ctl.unavailable.Store(6)
	h.ctl.redeliver.Store(true)
	b, host := h.machine(31, HostOptions{Rack: "r01", Slot: 1})
	pxeOnce(t, b, "Legacy")
	reset(t, b, "On")
	waitFor(t, "image reported twice", 20*time.Second, func() bool {
		r, _ := h.ctl.resultOf("node-31", "image")
		return r.Reports == 2
	}, func() string { return fmt.Sprintf("%+v", host.Stats()) })
	st := host.Stats()
	if st.ImagesWritten != 1 || st.Redelivered != 1 || st.Tasks != 1 || st.NetbootCheckIns != 1 || st.Errors != 0 {
		t.Errorf("stats = %+v, want one image written, one redelivery, no error", st)
	}
	for k, n := range st.TaskRuns {
		if n != 1 {
			t.Errorf("task %s ran %d times", k, n)
		}
	}
	if n := h.ctl.unavailable.Load(); n != 0 {
		t.Errorf("%d unavailable answers left: the agent did not retry through them", n)
	}
}

// TestTwoRacks boots many hosts at once in two racks that share a DHCP
// server and relay port: replies reach the right rack and the right host.
func TestTwoRacks(t *testing.T) {
	t.Parallel()
	const perRack = 12
	var locs []dhcp.Location
	for s := 1; s <= perRack; s++ {
		locs = append(locs, Location("r02", s, netip.Addr{}))
	}
	// Two TFTP transfers at a time: the others are refused as busy and
	// retried.
	h := newHarness(t, harnessOptions{slots: perRack, locations: locs, tftpMax: 2})
	cfg2 := h.rackCfg
	cfg2.RelayAddr = h.relay.Next()
	rack2, err := NewRack(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rack2.Close() })
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
		b, err := redfishsim.New(redfishsim.SampleNode(100+i), redfishsim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		host := r.Attach(b, HostOptions{Rack: name, Slot: slot})
		node := fmt.Sprintf("node-%d", 100+i)
		h.ctl.enrol(host.MAC().String(), node)
		all = append(all, m{b, host, node})
	}
	for _, x := range all {
		pxeOnce(t, x.b, "Legacy")
		reset(t, x.b, "On")
	}
	seen := map[netip.Addr]string{}
	for _, x := range all {
		waitFor(t, x.node+" image", 60*time.Second, func() bool {
			_, ok := h.ctl.resultOf(x.node, "image")
			return ok || x.host.Stats().Stage == StageFailed
		},
			func() string { return fmt.Sprintf("%+v", x.host.Stats()) })
		st := x.host.Stats()
		if st.Errors != 0 || st.DHCPExchanges != 2 || st.ImagesWritten != 1 {
			t.Errorf("%s: stats = %+v", x.node, st)
		}
		if other, dup := seen[st.IP]; dup {
			t.Errorf("%s and %s both hold %v", x.node, other, st.IP)
		}
		seen[st.IP] = x.node
		acks := h.events.acks(x.host.MAC().String())
		if len(acks) == 0 || acks[0].Client.Location == nil || acks[0].Client.Location.Rack != x.host.Options().Rack ||
			acks[0].Client.Location.Slot != x.host.Options().Slot {
			t.Errorf("%s: DHCP saw it at %+v, want %s slot %d", x.node, acks, x.host.Options().Rack, x.host.Options().Slot)
		}
	}
	if got := len(rack2.Hosts()); got != perRack {
		t.Errorf("rack2.Hosts() = %d, want %d", got, perRack)
	}
	if got := rack2.Stages(); got[StageAgent]+got[StageImage] != perRack {
		t.Errorf("rack2.Stages() = %v, want all %d hosts in the agent", got, perRack)
	}
	retries := 0
	for _, x := range all {
		retries += x.host.Stats().TFTPRetries
	}
	t.Logf("TFTP: %d transfers refused as busy and retried; server stats %+v", retries, h.tftp.Stats())
}
