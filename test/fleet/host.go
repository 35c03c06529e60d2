package fleet

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Fault is a misbehaviour of a simulated host.
type Fault string

const (
	// FaultNone is a healthy host.
	FaultNone Fault = ""
	// FaultNoPXE: the host ignores PXE boots (its NIC's option ROM is off).
	FaultNoPXE Fault = "no-pxe"
	// FaultImageCorrupt: the image task reports a wrong SHA-256.
	FaultImageCorrupt Fault = "image-corrupt"
	// FaultBurnInFail: the burn-in task's first check fails.
	FaultBurnInFail Fault = "burnin-fail"
	// FaultSlowDownload: image downloads run at Config.SlowRate.
	FaultSlowDownload Fault = "slow-download"
	// FaultMissingGPU: the in-band inventory lacks the last GPU (a GPU that
	// fell off the bus), so validation against a profile fails.
	FaultMissingGPU Fault = "missing-gpu"
)

// HostOptions place a host in its rack and choose its fault.
type HostOptions struct {
	Rack  string // option 82 remote-id
	Slot  int    // option 82 circuit-id CircuitID(Slot)
	Fault Fault
}

// Stage is where a host stands.
type Stage string

const (
	StageOff       Stage = "off"
	StageFirmware  Stage = "firmware"  // power-on self test, BootDelay
	StageDHCP      Stage = "dhcp"      // PXE ROM DHCP exchange
	StageTFTP      Stage = "tftp"      // boot program download
	StageIPXE      Stage = "ipxe"      // iPXE's DHCP exchange and script
	StageKernel    Stage = "kernel"    // kernel and initrd download
	StageCheckIn   Stage = "checkin"   // agent check-in
	StageAgent     Stage = "agent"     // agent polling for tasks
	StageImage     Stage = "image"     // image task running
	StageBurnIn    Stage = "burn-in"   // burn-in task running
	StageOS        Stage = "os"        // installed OS, nothing left to do
	StageNoBoot    Stage = "no-boot"   // nothing to boot (blank disk, PXE ignored)
	StageFailed    Stage = "failed"    // the boot stopped on an error
	StageCancelled Stage = "cancelled" // the boot was interrupted (power cycle)
)

// HostStats is what a host has done since it was attached.
type HostStats struct {
	Rack  string
	Slot  int
	MAC   string
	Fault Fault
	Stage Stage

	Boots      int // boot events handled
	PXEBoots   int // boots that started network boot
	DiskBoots  int // boots from the local disk (Hdd, or a script's sanboot)
	Ignored    int // boots ignored: FaultNoPXE or an unsupported target
	Cancelled  int // boots cut short by a power change
	Completed  int // boots that reached the agent or the OS without error
	LastTarget string

	DHCPExchanges int        // completed DISCOVER…ACK exchanges
	DHCPRetries   int        // retransmissions and restarts after a NAK
	IP            netip.Addr // the last address acknowledged
	BootFile      string     // the last TFTP file offered
	TFTPBytes     int64
	TFTPRetries   int    // transfers tried again (a busy server)
	ScriptURL     string // the last script URL offered
	Scripts       int    // scripts fetched
	KernelBytes   int64  // kernel and initrd bytes
	Cmdline       string // the last kernel command line

	Node              string // the node name the controller pinned
	NetbootCheckIns   int
	FirstbootCheckIns int
	Tasks             int            // tasks run
	TaskRuns          map[string]int // runs per task key
	Redelivered       int            // tasks handed out again after their result was recorded
	ImageBytes        int64          // image bytes downloaded
	ImageSHA256       string         // what the last image task reported
	ImageTime         time.Duration  // how long the last image download took
	ImagesWritten     int            // image tasks that completed
	BurnIns           int            // burn-in tasks run
	BurnInPassed      bool           // the last burn-in's verdict
	Imaged            bool           // the disk holds an image with a first-boot token

	Errors    int
	LastError string
}

// disk is what survives a power cycle: the image and its first-boot data.
type disk struct {
	imaged         bool
	server         string
	firstBootToken string
	tokenUsed      bool
	session        string // the first-boot agent's session
}

// Host is one simulated machine.
type Host struct {
	rack *Rack
	bmc  *redfishsim.BMC
	opt  HostOptions
	mac  net.HardwareAddr
	hw   inventory.Inventory
	log  *slog.Logger

	mu      sync.Mutex
	stats   HostStats
	disk    disk
	results map[string]taskResult // reported results by task key
	cancel  context.CancelFunc
	done    chan struct{}
	gen     uint64
}

func newHost(r *Rack, b *redfishsim.BMC, opt HostOptions) *Host {
	hw := b.Node().Hardware
	h := &Host{rack: r, bmc: b, opt: opt, hw: hw, results: map[string]taskResult{}}
	if len(hw.NICs) > 0 {
		h.mac, _ = net.ParseMAC(hw.NICs[0].MAC)
	}
	h.log = r.cfg.Log.With("rack", opt.Rack, "slot", opt.Slot, "mac", h.mac.String())
	h.stats = HostStats{Rack: opt.Rack, Slot: opt.Slot, MAC: h.mac.String(), Fault: opt.Fault, Stage: StageOff, TaskRuns: map[string]int{}}
	return h
}

// MAC is the host's first NIC's MAC, the one it network-boots from.
func (h *Host) MAC() net.HardwareAddr { return h.mac }

// BMC is the host's BMC.
func (h *Host) BMC() *redfishsim.BMC { return h.bmc }

// Options returns the host's rack position and fault.
func (h *Host) Options() HostOptions { return h.opt }

// Stats returns a snapshot of what the host has done.
func (h *Host) Stats() HostStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stats
	s.TaskRuns = maps.Clone(h.stats.TaskRuns)
	return s
}

// update changes the stats under the lock.
func (h *Host) update(fn func(s *HostStats)) {
	h.mu.Lock()
	fn(&h.stats)
	h.mu.Unlock()
}

func (h *Host) stage(s Stage) { h.update(func(st *HostStats) { st.Stage = s }) }

// fail records err as the host's last error and logs it.
func (h *Host) fail(err error) {
	h.update(func(s *HostStats) { s.Errors++; s.LastError = err.Error() })
	h.log.Warn("host error", "err", err)
}

// onPower stops the running boot when the machine loses power.
func (h *Host) onPower(e redfishsim.PowerEvent) {
	if e.To != redfishsim.PowerOff {
		return
	}
	h.mu.Lock()
	cancel := h.cancel
	h.cancel = nil
	h.stats.Stage = StageOff
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	h.log.Debug("power off", "cause", e.Cause)
}

// onBoot starts a boot, cancelling the one under way (a power cycle). It
// returns at once: BMC observers run on the BMC's request path. The new
// boot's goroutine waits for the previous one to end, so a host runs one
// boot at a time.
func (h *Host) onBoot(e redfishsim.BootEvent) {
	h.mu.Lock()
	prevCancel, prevDone := h.cancel, h.done
	ctx, cancel := context.WithCancel(h.rack.ctx)
	done := make(chan struct{})
	h.cancel, h.done = cancel, done
	h.gen++
	gen := h.gen
	h.mu.Unlock()
	if prevCancel != nil {
		prevCancel()
	}
	started := h.rack.startBoot(func() {
		defer close(done)
		defer cancel()
		if prevDone != nil {
			<-prevDone
		}
		h.run(ctx, e, gen)
	})
	if !started {
		cancel()
		close(done)
	}
}

func (h *Host) run(ctx context.Context, e redfishsim.BootEvent, gen uint64) {
	h.update(func(s *HostStats) { s.Boots++; s.LastTarget = e.Target; s.Stage = StageFirmware })
	log := h.log.With("target", e.Target, "mode", e.Mode)
	log.Debug("booting")
	var err error
	switch {
	case e.Target == "Pxe" && h.opt.Fault == FaultNoPXE:
		h.update(func(s *HostStats) { s.Ignored++; s.Stage = StageNoBoot })
		log.Info("PXE boot ignored (fault no-pxe)")
		return
	case e.Target == "Pxe":
		h.update(func(s *HostStats) { s.PXEBoots++ })
		err = h.netboot(ctx, e)
	case e.Target == "Hdd":
		err = h.diskBoot(ctx)
	default:
		h.update(func(s *HostStats) { s.Ignored++; s.Stage = StageNoBoot })
		h.fail(fmt.Errorf("boot from %s: not simulated (Pxe and Hdd are)", e.Target))
		return
	}
	switch {
	case ctx.Err() != nil:
		stage := StageCancelled
		if h.bmc.PowerState() == redfishsim.PowerOff {
			stage = StageOff
		}
		h.mu.Lock()
		h.stats.Cancelled++
		if h.gen == gen {
			h.stats.Stage = stage
		}
		h.mu.Unlock()
		log.Debug("boot interrupted")
	case errors.Is(err, errNoBoot):
		h.update(func(s *HostStats) { s.Stage = StageNoBoot })
		h.fail(err)
	case err != nil:
		h.update(func(s *HostStats) { s.Stage = StageFailed })
		h.fail(err)
	}
}

// errNoBoot: the machine found nothing to boot.
var errNoBoot = errors.New("no bootable device")

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inventory is the in-band inventory the agent reports: the machine's
// hardware as the OS sees it.
func (h *Host) inventory() inventory.Inventory {
	inv := h.hw
	inv.Source = inventory.InBand
	inv.CollectedAt = time.Now().UTC()
	inv.Collector = "rackstrap fleet simulator"
	if h.opt.Fault == FaultMissingGPU && len(inv.GPUs) > 0 {
		inv.GPUs = inv.GPUs[: len(inv.GPUs)-1 : len(inv.GPUs)-1]
	}
	return inv
}

// uuidOption is option 97 (client machine identifier): type 0 and the
// 16-byte UUID, as PXE ROMs send it.
func (h *Host) uuidOption() []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(h.hw.System.UUID, "-", ""))
	if err != nil || len(b) != 16 {
		return nil
	}
	return append([]byte{0}, b...)
}

// localAddr is the address the host's TCP and TFTP traffic leaves from:
// its lease when that is a loopback address, else the kernel's choice.
func (h *Host) localAddr() netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stats.IP.IsLoopback() {
		return h.stats.IP
	}
	return netip.Addr{}
}

// httpClient is a per-boot HTTP client leaving from the host's address.
func (h *Host) httpClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if a := h.localAddr(); a.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     h.rack.cfg.TLS,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr}
}
