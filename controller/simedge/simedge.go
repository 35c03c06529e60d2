// Package simedge is a SIMULATED hardware edge: machines that exist only in
// memory and in a journal file. Tests and the demo drive the real lifecycle
// engine and store through it; nothing here touches real hardware.
//
// Every side effect (boot override, boot, power off, image, hand-off,
// release) is journalled durably (fsync) before it is acknowledged, keyed by
// the lifecycle's idempotency key. A replayed key is answered from the
// journal and counted, not applied again, which is what lets a crash test
// prove that each side effect happened exactly once.
package simedge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
)

// Fault makes one simulated machine misbehave.
type Fault string

const (
	// FaultBMCUnreachable: the BMC never answers (Enroll fails).
	FaultBMCUnreachable Fault = "bmc-unreachable"
	// FaultNoPXE: the host powers on but never sends a PXE request.
	FaultNoPXE Fault = "no-pxe"
	// FaultBadGPU: inventory shows a GPU at PCIe x8 where x16 is expected.
	FaultBadGPU Fault = "bad-gpu"
	// FaultImageCorrupt: the written image never verifies.
	FaultImageCorrupt Fault = "image-corrupt"
	// FaultFlakyBMC: the first BMC call of each kind fails, then it works.
	FaultFlakyBMC Fault = "flaky-bmc"
)

// Config shapes the simulated machines.
type Config struct {
	// Journal is the file where applied side effects are recorded.
	Journal string
	// BootTime is how long a machine takes from boot to agent check-in;
	// each machine gets a stable value between BootTime and 2·BootTime.
	BootTime time.Duration
	// ImageTime is how long writing an image takes.
	ImageTime time.Duration
	// BurnInTime is how long burn-in runs.
	BurnInTime time.Duration
	// ReplyLatency is how long a side effect takes to be acknowledged after
	// it took hold, as a BMC answers a while after acting. A controller
	// killed in that window must replay the intent, not act again.
	ReplyLatency time.Duration
	// Faults by node name.
	Faults map[string]Fault
}

// Effect is one applied side effect, as journalled.
type Effect struct {
	Key    string    `json:"key"`
	Node   string    `json:"node"`
	Action string    `json:"action"`
	Arg    string    `json:"arg,omitempty"`
	At     time.Time `json:"at"`
}

type machine struct {
	power     bool
	override  lifecycle.BootDevice
	bootedAt  time.Time
	bootedTo  lifecycle.BootDevice
	imaged    bool
	inCluster bool
	calls     map[string]int // for FaultFlakyBMC
}

// Edge is the simulated edge. It is safe for concurrent use.
type Edge struct {
	cfg      Config
	mu       sync.Mutex
	journal  *os.File
	applied  map[string]Effect
	machines map[string]*machine
	replays  int

	// Journal group commit: lines wait in pending; one caller at a time
	// (holding syncMu) writes and fsyncs everything pending, and every
	// caller whose line it covered returns.
	syncMu  sync.Mutex
	pending []byte
	written uint64 // lines appended to pending, ever (under mu)
	synced  uint64 // lines on disk (under syncMu)
	syncErr error  // the first journal failure; later effects fail too
	// readOff is how far catchUp has read; seenSize the journal's size when
	// this process last knew all of it (both under readMu).
	readMu            sync.Mutex
	readOff, seenSize int64
}

var _ lifecycle.Edge = (*Edge)(nil)

// Open loads the journal (creating it) and rebuilds every machine's state
// from it, as a real rack keeps its state while its controller restarts.
func Open(cfg Config) (*Edge, error) {
	if cfg.Journal == "" {
		return nil, errors.New("simedge: Config.Journal is required")
	}
	if cfg.BootTime <= 0 {
		cfg.BootTime = 200 * time.Millisecond
	}
	if cfg.ImageTime <= 0 {
		cfg.ImageTime = 300 * time.Millisecond
	}
	if cfg.BurnInTime <= 0 {
		cfg.BurnInTime = 100 * time.Millisecond
	}
	e := &Edge{cfg: cfg, applied: map[string]Effect{}, machines: map[string]*machine{}}
	var err error
	e.journal, err = os.OpenFile(cfg.Journal, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("simedge: open journal: %w", err)
	}
	if err := e.catchUp(); err != nil {
		e.journal.Close()
		return nil, err
	}
	return e, nil
}

// catchUp applies the journal lines written since it last looked, by this
// process or by another controller sharing the journal (the multi-
// controller tests run one simulated fleet under several controllers, as
// real machines outlive the controller that last drove them). One fstat
// when nothing is new.
func (e *Edge) catchUp() error {
	e.readMu.Lock()
	defer e.readMu.Unlock()
	fi, err := e.journal.Stat()
	if err != nil {
		return fmt.Errorf("simedge: journal: %w", err)
	}
	if fi.Size() == e.seenSize {
		return nil
	}
	buf := make([]byte, fi.Size()-e.readOff)
	n, err := e.journal.ReadAt(buf, e.readOff)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("simedge: journal: %w", err)
	}
	buf = buf[:n]
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break // a torn or still-being-written last line: read it next time
		}
		line := buf[:i]
		buf = buf[i+1:]
		e.readOff += int64(i + 1)
		var ef Effect
		if json.Unmarshal(line, &ef) != nil {
			continue
		}
		if _, known := e.applied[ef.Key]; !known {
			e.applied[ef.Key] = ef
			e.apply(ef)
		}
	}
	e.seenSize = fi.Size()
	return nil
}

// Close closes the journal.
func (e *Edge) Close() error { return e.journal.Close() }

// ReadJournal returns the effects recorded in a journal. A torn last line
// (the process died mid-write) is ignored: that effect was never applied.
func ReadJournal(path string) ([]Effect, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Effect
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ef Effect
		if json.Unmarshal(sc.Bytes(), &ef) != nil {
			continue
		}
		out = append(out, ef)
	}
	return out, sc.Err()
}

// Replays counts side effects asked again with a key already applied.
func (e *Edge) Replays() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.replays
}

func (e *Edge) machine(name string) *machine {
	m := e.machines[name]
	if m == nil {
		m = &machine{calls: map[string]int{}}
		e.machines[name] = m
	}
	return m
}

// apply changes a machine's state for an effect (live or replayed at Open).
func (e *Edge) apply(ef Effect) {
	m := e.machine(ef.Node)
	switch ef.Action {
	case "set-boot":
		m.override = lifecycle.BootDevice(ef.Arg)
	case "boot":
		m.power, m.bootedAt, m.bootedTo = true, ef.At, m.override
		m.override = ""
	case "power-off":
		m.power = false
	case "image":
		m.imaged = true
	case "hand-off":
		m.inCluster = true
	case "release":
		m.inCluster = false
	}
}

// effect applies a side effect once per key, durably, then acknowledges it
// after ReplyLatency.
func (e *Edge) effect(n model.Node, key, action, arg string) error {
	if err := e.record(n, key, action, arg); err != nil {
		return err
	}
	time.Sleep(e.cfg.ReplyLatency)
	return nil
}

func (e *Edge) record(n model.Node, key, action, arg string) error {
	if err := e.refresh(); err != nil {
		return err
	}
	e.mu.Lock()
	if _, done := e.applied[key]; done {
		e.replays++
		e.mu.Unlock()
		return nil
	}
	ef := Effect{Key: key, Node: n.Name, Action: action, Arg: arg, At: time.Now().UTC()}
	line, err := json.Marshal(ef)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	e.pending = append(append(e.pending, line...), '\n')
	e.written++
	mine := e.written
	e.applied[key] = ef
	e.apply(ef)
	e.mu.Unlock()
	return e.sync(mine)
}

// sync returns once journal line number upto is on disk, writing and
// fsyncing every line pending with it in one go.
func (e *Edge) sync(upto uint64) error {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	if e.synced >= upto || e.syncErr != nil {
		return e.syncErr
	}
	e.mu.Lock()
	buf, last := e.pending, e.written
	e.pending = nil
	e.mu.Unlock()
	if _, err := e.journal.Write(buf); err != nil {
		e.syncErr = fmt.Errorf("simedge: journal: %w", err)
		return e.syncErr
	}
	if err := e.journal.Sync(); err != nil {
		e.syncErr = fmt.Errorf("simedge: journal: %w", err)
		return e.syncErr
	}
	e.synced = last
	// Our own lines need no reading back, unless another writer's lines
	// came in between (then catchUp reads both, skipping ours).
	e.readMu.Lock()
	if fi, err := e.journal.Stat(); err == nil && e.readOff == e.seenSize && fi.Size() == e.seenSize+int64(len(buf)) {
		e.seenSize, e.readOff = fi.Size(), fi.Size()
	}
	e.readMu.Unlock()
	return nil
}

// refresh picks up side effects other controllers journalled.
func (e *Edge) refresh() error { return e.catchUp() }

// classError is an error with a lifecycle failure class.
type classError struct {
	class string
	msg   string
}

func (c *classError) Error() string        { return c.msg }
func (c *classError) FailureClass() string { return c.class }

// bmc simulates a BMC call's latency and the BMC faults.
func (e *Edge) bmc(ctx context.Context, n model.Node, call string) error {
	e.mu.Lock()
	fault := e.cfg.Faults[n.Name]
	m := e.machine(n.Name)
	m.calls[call]++
	first := m.calls[call] == 1
	e.mu.Unlock()
	switch {
	case fault == FaultBMCUnreachable:
		return &classError{string(model.ClassBMCUnreachable), fmt.Sprintf("simulated BMC %s does not answer: check its cabling and address", bmcOf(n))}
	case fault == FaultFlakyBMC && first:
		return &classError{string(model.ClassBMCUnreachable), fmt.Sprintf("simulated BMC %s: %s: connection reset", bmcOf(n), call)}
	}
	return sleep(ctx, 5*time.Millisecond)
}

func bmcOf(n model.Node) string {
	if n.Identity.BMC != "" {
		return n.Identity.BMC
	}
	return "of " + n.Name
}

// Enroll reports a stable identity derived from the node's name.
func (e *Edge) Enroll(ctx context.Context, n model.Node) (model.Identity, error) {
	if err := e.bmc(ctx, n, "enroll"); err != nil {
		return model.Identity{}, err
	}
	id := n.Identity
	h := sha256.Sum256([]byte(n.Name))
	if id.Serial == "" {
		id.Serial = fmt.Sprintf("SIM%08X", binary.BigEndian.Uint32(h[:4]))
	}
	if id.UUID == "" {
		id.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}
	if len(id.MACs) == 0 {
		id.MACs = []string{fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[16], h[17], h[18])}
	}
	return id, nil
}

// SetBoot records a one-time boot override.
func (e *Edge) SetBoot(ctx context.Context, n model.Node, dev lifecycle.BootDevice, key string) error {
	if err := e.bmc(ctx, n, "set-boot"); err != nil {
		return err
	}
	return e.effect(n, key, "set-boot", string(dev))
}

// Boot powers the machine on (or cycles it) into its override.
func (e *Edge) Boot(ctx context.Context, n model.Node, key string) error {
	if err := e.bmc(ctx, n, "boot"); err != nil {
		return err
	}
	return e.effect(n, key, "boot", "")
}

// PowerOff turns the machine off.
func (e *Edge) PowerOff(ctx context.Context, n model.Node, key string) error {
	if err := e.bmc(ctx, n, "power-off"); err != nil {
		return err
	}
	return e.effect(n, key, "power-off", "")
}

// bootTime is a stable per-machine value in [BootTime, 2·BootTime).
func (e *Edge) bootTime(name string) time.Duration {
	h := sha256.Sum256([]byte(name))
	return e.cfg.BootTime + time.Duration(binary.BigEndian.Uint64(h[:8])%uint64(e.cfg.BootTime))
}

// WaitCheckIn waits until the simulated agent would have checked in: the
// machine booted into the phase's device and has had time to come up.
func (e *Edge) WaitCheckIn(ctx context.Context, n model.Node, phase lifecycle.Phase) error {
	want := lifecycle.BootNetwork
	if phase == lifecycle.PhaseFirstBoot {
		want = lifecycle.BootDisk
	}
	if err := e.refresh(); err != nil {
		return err
	}
	e.mu.Lock()
	m := e.machine(n.Name)
	power, to, at := m.power, m.bootedTo, m.bootedAt
	fault := e.cfg.Faults[n.Name]
	e.mu.Unlock()
	if !power || to != want {
		return fmt.Errorf("simulated %s is not booting from %s (power %v, booted to %q): the boot steps did not run", n.Name, want, power, to)
	}
	if fault == FaultNoPXE && phase == lifecycle.PhaseNetboot {
		<-ctx.Done()
		return &classError{string(model.ClassNoPXERequest), fmt.Sprintf("simulated %s powered on but sent no PXE request: check its boot order and the provisioning VLAN", n.Name)}
	}
	return sleep(ctx, time.Until(at.Add(e.bootTime(n.Name))))
}

// Inspect returns a small qemu-vm-like inventory.
func (e *Edge) Inspect(ctx context.Context, n model.Node) (json.RawMessage, error) {
	width := 16
	if e.cfg.Faults[n.Name] == FaultBadGPU {
		width = 8
	}
	inv := map[string]any{
		"source": "in-band",
		"system": map[string]any{"vendor": "QEMU", "model": "Standard PC (Q35 + ICH9, 2009)", "serial": n.Identity.Serial, "uuid": n.Identity.UUID},
		"cpus":   []map[string]any{{"model": "QEMU Virtual CPU version 2.5+", "cores": 2, "threads": 2}},
		"memory": map[string]any{"totalBytes": 4 << 30},
		"gpus":   []map[string]any{{"index": 0, "model": "NVIDIA H100 80GB HBM3 (simulated)", "pcie": map[string]any{"width": width, "maxWidth": 16}}},
	}
	if err := sleep(ctx, 10*time.Millisecond); err != nil {
		return nil, err
	}
	return json.Marshal(inv)
}

// Validate checks the one thing the simulated inventory can get wrong: GPU
// link width. The real validator lives in hwprofiles.
func (e *Edge) Validate(ctx context.Context, n model.Node, inventory json.RawMessage) (lifecycle.Verdict, error) {
	var inv struct {
		GPUs []struct {
			Index int `json:"index"`
			PCIe  struct {
				Width, MaxWidth int
			} `json:"pcie"`
		} `json:"gpus"`
	}
	if err := json.Unmarshal(inventory, &inv); err != nil {
		return lifecycle.Verdict{}, fmt.Errorf("simulated validation: inventory is not valid JSON: %w", err)
	}
	var findings []map[string]any
	for _, g := range inv.GPUs {
		if g.PCIe.Width < g.PCIe.MaxWidth {
			findings = append(findings, map[string]any{
				"rule": "gpu.pcie.width", "severity": "error", "component": fmt.Sprintf("GPU %d", g.Index),
				"expected": fmt.Sprintf("x%d", g.PCIe.MaxWidth), "actual": fmt.Sprintf("x%d", g.PCIe.Width),
				"hint": fmt.Sprintf("reseat GPU %d: link is x%d, expected x%d", g.Index, g.PCIe.Width, g.PCIe.MaxWidth),
			})
		}
	}
	v := lifecycle.Verdict{Pass: len(findings) == 0, Summary: fmt.Sprintf("%d findings", len(findings))}
	if len(findings) > 0 {
		v.Findings, _ = json.Marshal(findings)
	}
	return v, nil
}

// Image simulates streaming and verifying the OS image.
func (e *Edge) Image(ctx context.Context, n model.Node, key string) error {
	if err := sleep(ctx, e.cfg.ImageTime); err != nil {
		return err
	}
	if e.cfg.Faults[n.Name] == FaultImageCorrupt {
		return &classError{string(model.ClassImageVerifyFailed), fmt.Sprintf("simulated %s: written image sha256 does not match the signed manifest: check the disk (SMART) and re-run", n.Name)}
	}
	return e.effect(n, key, "image", "")
}

// BurnIn simulates the burn-in checks.
func (e *Edge) BurnIn(ctx context.Context, n model.Node, key string) (json.RawMessage, error) {
	if err := sleep(ctx, e.cfg.BurnInTime); err != nil {
		return nil, err
	}
	return json.RawMessage(`{"checks":[{"name":"gpu-burn (simulated)","pass":true}]}`), nil
}

// HandOff registers the machine with the simulated cluster.
func (e *Edge) HandOff(ctx context.Context, n model.Node, key string) error {
	return e.effect(n, key, "hand-off", "")
}

// Release removes the machine from the simulated cluster.
func (e *Edge) Release(ctx context.Context, n model.Node, key string) error {
	return e.effect(n, key, "release", "")
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
