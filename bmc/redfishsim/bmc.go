// Package redfishsim is a Redfish BMC simulator for tests, the demo and fleet
// runs. A BMC serves a resource tree shaped like a real vendor's (service
// root, Systems with ComputerSystem.Reset and a PATCHable boot override,
// Managers with virtual media, EthernetInterfaces, Chassis, UpdateService
// firmware inventory, a System Event Log, TaskService, sessions and basic
// auth), built on demand from a Node: no per-BMC resource tree is kept, only
// the node and a few fields of state, so thousands of BMCs fit one process.
//
// A BMC is an http.Handler (usable with httptest); a Fleet serves many on
// loopback addresses, one listener per address or one wildcard listener
// routing by destination address, over HTTPS (a self-signed certificate per
// BMC, made on first use) or HTTP. Faults are injected per BMC at run time
// (SetFaults); observers (OnPowerChange, OnBoot) let a simulated host start
// "booting" when its BMC powers it on.
package redfishsim

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// PowerState is a system's power state as Redfish names it.
type PowerState string

const (
	PowerOn  PowerState = "On"
	PowerOff PowerState = "Off"
)

// BootOverride is the system's Boot override (Redfish ComputerSystem.Boot).
type BootOverride struct {
	Enabled     string // "Disabled", "Once" or "Continuous"
	Target      string // "None", "Pxe", "Hdd", "Cd", "UefiHttp", "BiosSetup", ...
	Mode        string // "UEFI" or "Legacy"
	HTTPBootURI string
}

// PowerEvent reports a change of the system's power state.
type PowerEvent struct {
	BMC      *BMC
	From, To PowerState
	// Cause is the Redfish ResetType that caused it, or what the host or
	// test said (HostPowerOff, SetPower).
	Cause string
	At    time.Time
}

// BootEvent reports that the host starts booting (a power-on or restart),
// and from what: the one-time or continuous override when one was set,
// otherwise the disk.
type BootEvent struct {
	BMC         *BMC
	Target      string // "Pxe", "UefiHttp", "Cd", "Hdd", ...
	Mode        string // "UEFI" or "Legacy"
	Override    bool   // a boot override chose Target
	Image       string // the inserted virtual CD image, when Target is "Cd"
	HTTPBootURI string // the override's HttpBootUri, when Target is "UefiHttp"
	At          time.Time
}

// Faults are the misbehaviours a BMC shows. The zero value is a healthy BMC.
type Faults struct {
	// Connection faults. A Fleet applies them when a connection is accepted;
	// the handler also resets a kept-alive connection for Refuse (or answers
	// 503 where it cannot) and never answers for Blackhole.
	Refuse    bool // every connection is reset at once: the BMC looks down
	Blackhole bool // connections are accepted and never answered: clients time out

	// Request faults apply to requests whose path starts with Path (to all
	// requests when Path is empty).
	Path             string
	Latency          time.Duration // every answer waits this long first
	Status           int           // answer with this HTTP status (500, 503, ...) and a Redfish error
	BadCredentials   bool          // every credential is rejected (401), session logins included
	MalformedJSON    bool          // bodies are cut off in the middle of the document
	WrongContentType bool          // bodies are labelled text/html
	HugeBody         bool          // bodies never end (an endless JSON array)
	RedirectLoop     bool          // every request is redirected to itself
	SlowBody         time.Duration // bodies trickle out one byte per SlowBody (slow loris)

	// Power faults.
	StuckPower    bool // ComputerSystem.Reset is accepted (204) but the power never changes
	FlappingPower bool // the reported power state alternates On/Off on every read
}

// LogEntry is one System Event Log record.
type LogEntry struct {
	ID       string
	Created  time.Time
	Severity string // "OK", "Warning", "Critical"
	Message  string
}

// Media is one virtual media slot.
type Media struct {
	ID         string
	MediaTypes []string
	Image      string
	Inserted   bool
}

// Options tune behaviour shared by every BMC of a process; the zero value
// is usable.
type Options struct {
	Clock  func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
	// MaxSessions bounds the open Redfish sessions; the oldest is dropped
	// when a login would exceed it (default 16).
	MaxSessions int
	// SELCapacity bounds the event log; the oldest entries are overwritten
	// (default 256).
	SELCapacity int
	// ResetDowntime is how long the BMC is unreachable after a
	// Manager.Reset (default 0).
	ResetDowntime time.Duration
	// UpdateDuration is how long an UpdateService.SimpleUpdate task runs
	// before it completes (default 0: at once).
	UpdateDuration time.Duration
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 16
	}
	if o.SELCapacity <= 0 {
		o.SELCapacity = 256
	}
	return o
}

// BMC is one simulated BMC. It is safe for concurrent use.
type BMC struct {
	node Node
	spec flavorSpec
	opts Options

	addr      atomic.Pointer[netip.AddrPort] // where a Fleet serves it
	scheme    string
	requests  atomic.Uint64
	errorRepl atomic.Uint64 // answers with a 4xx or 5xx status

	certOnce sync.Once
	cert     *tls.Certificate
	certErr  error

	mu        sync.Mutex
	power     PowerState
	boot      BootOverride
	gen       uint64 // ETag of the ComputerSystem; bumped on every change
	media     []*Media
	sel       []LogEntry
	selSeq    int
	sessions  []*session // oldest first
	sessSeq   int
	tasks     []*task
	firmware  []inventory.FirmwareComponent
	faults    Faults
	flap      bool
	downUntil time.Time
	// lagged and lagUntil: the power state reported until lagUntil
	// (Quirks.PowerLag).
	lagged   PowerState
	lagUntil time.Time
	reqLog   []string // the last requests, "METHOD path status"
	onPower  []func(PowerEvent)
	onBoot   []func(BootEvent)
	mock     *mockState // serving a DMTF mockup (NewFromMockup); nil: the built-in tree
}

type session struct {
	id, token, user string
	created         time.Time
}

// New makes a BMC for node. It is powered off, has no boot override and no
// media inserted, and its event log holds one entry.
func New(node Node, opts Options) (*BMC, error) {
	node = node.withDefaults()
	if err := node.validate(); err != nil {
		return nil, err
	}
	spec, _ := node.Flavor.spec(node.Hardware.System.Serial)
	spec = spec.apply(node.Quirks)
	b := &BMC{
		node:   node,
		spec:   spec,
		opts:   opts.withDefaults(),
		scheme: "https",
		power:  PowerOff,
		boot:   BootOverride{Enabled: "Disabled", Target: "None", Mode: "UEFI"},
		gen:    1,
		media: []*Media{
			{ID: "CD1", MediaTypes: []string{"CD", "DVD"}},
			{ID: "USB1", MediaTypes: []string{"USBStick"}},
		},
	}
	b.firmware = firmwareOf(node.Hardware)
	b.logLocked("OK", "Event log started")
	return b, nil
}

// firmwareOf is the node's firmware inventory with BIOS and BMC entries
// added when the node lists none.
func firmwareOf(hw inventory.Inventory) []inventory.FirmwareComponent {
	fw := slices.Clone(hw.Firmware)
	has := func(id string) bool {
		return slices.ContainsFunc(fw, func(c inventory.FirmwareComponent) bool { return c.ID == id })
	}
	if !has("BMC") && hw.BMC.FirmwareVersion != "" {
		fw = append(fw, inventory.FirmwareComponent{ID: "BMC", Name: "BMC Firmware", Version: hw.BMC.FirmwareVersion})
	}
	if !has("BIOS") && hw.BIOS.Version != "" {
		fw = append(fw, inventory.FirmwareComponent{ID: "BIOS", Name: "BIOS", Version: hw.BIOS.Version})
	}
	return fw
}

// Node returns the node the BMC was made from.
func (b *BMC) Node() Node { return b.node }

// Serial is the system serial number.
func (b *BMC) Serial() string { return b.node.Hardware.System.Serial }

// Addr is the address a Fleet serves the BMC on (invalid before).
func (b *BMC) Addr() netip.AddrPort {
	if p := b.addr.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// Endpoint is the BMC's base URL, "https://127.10.0.1:8443" (empty before a
// Fleet serves it).
func (b *BMC) Endpoint() string {
	a := b.Addr()
	if !a.IsValid() {
		return ""
	}
	return b.scheme + "://" + a.String()
}

// Requests counts the HTTP requests the BMC has answered.
func (b *BMC) Requests() uint64 { return b.requests.Load() }

// ErrorReplies counts the answers with an error status (4xx or 5xx): a
// client that knows the BMC's quirks sends no request it refuses.
func (b *BMC) ErrorReplies() uint64 { return b.errorRepl.Load() }

// maxReqLog bounds RequestLog.
const maxReqLog = 256

// RequestLog returns the last requests the BMC answered (at most 256),
// oldest first, as "METHOD /path status".
func (b *BMC) RequestLog() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.reqLog)
}

func (b *BMC) logRequest(method, path string, status int) {
	if status >= 400 {
		b.errorRepl.Add(1)
	}
	b.mu.Lock()
	b.reqLog = append(b.reqLog, fmt.Sprintf("%s %s %d", method, path, status))
	if over := len(b.reqLog) - maxReqLog; over > 0 {
		b.reqLog = slices.Delete(b.reqLog, 0, over)
	}
	b.mu.Unlock()
}

// SetFaults replaces the BMC's faults.
func (b *BMC) SetFaults(f Faults) {
	b.mu.Lock()
	b.faults = f
	b.mu.Unlock()
}

// Faults returns the BMC's faults.
func (b *BMC) Faults() Faults {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.faults
}

// connFault says how a new connection to the BMC is treated.
func (b *BMC) connFault() (refuse, blackhole bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	down := b.opts.Clock().Before(b.downUntil)
	return b.faults.Refuse || down, b.faults.Blackhole
}

// OnPowerChange registers fn to be called after every power change. Observers
// run in the goroutine that caused the change, after the BMC's lock is
// released, in registration order; a slow observer delays that request.
func (b *BMC) OnPowerChange(fn func(PowerEvent)) {
	b.mu.Lock()
	b.onPower = append(b.onPower, fn)
	b.mu.Unlock()
}

// OnBoot registers fn to be called whenever the host starts booting.
func (b *BMC) OnBoot(fn func(BootEvent)) {
	b.mu.Lock()
	b.onBoot = append(b.onBoot, fn)
	b.mu.Unlock()
}

// PowerState is the true power state (faults do not affect it).
func (b *BMC) PowerState() PowerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.power
}

// SetPower sets the power state as a front-panel button would, consuming a
// one-time boot override on power-on and notifying observers.
func (b *BMC) SetPower(s PowerState, cause string) {
	b.mu.Lock()
	var ev events
	switch s {
	case PowerOn:
		b.powerOnLocked(cause, &ev)
	case PowerOff:
		b.powerOffLocked(cause, &ev)
	}
	b.mu.Unlock()
	b.fire(ev)
}

// HostPowerOff is the host turning itself off (an OS shutdown).
func (b *BMC) HostPowerOff(cause string) {
	if cause == "" {
		cause = "host"
	}
	b.SetPower(PowerOff, cause)
}

// BootOverride returns the current boot override.
func (b *BMC) BootOverride() BootOverride {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boot
}

// Media returns the virtual media slots.
func (b *BMC) Media() []Media {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Media, len(b.media))
	for i, m := range b.media {
		out[i] = *m
		out[i].MediaTypes = slices.Clone(m.MediaTypes)
	}
	return out
}

// SEL returns the event log, oldest first.
func (b *BMC) SEL() []LogEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sel)
}

// Log appends an entry to the event log.
func (b *BMC) Log(severity, message string) {
	b.mu.Lock()
	b.logLocked(severity, message)
	b.mu.Unlock()
}

// Sessions is the number of open Redfish sessions.
func (b *BMC) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Firmware returns the firmware inventory as the BMC reports it now.
func (b *BMC) Firmware() []inventory.FirmwareComponent {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceTasksLocked()
	return slices.Clone(b.firmware)
}

func (b *BMC) logLocked(severity, message string) {
	b.selSeq++
	b.sel = append(b.sel, LogEntry{ID: fmt.Sprint(b.selSeq), Created: b.opts.Clock().UTC(), Severity: severity, Message: message})
	if over := len(b.sel) - b.opts.SELCapacity; over > 0 {
		b.sel = slices.Delete(b.sel, 0, over)
	}
}

// events collects what a locked transition has to report once unlocked.
type events struct {
	power []PowerEvent
	boot  []BootEvent
}

func (b *BMC) fire(ev events) {
	if len(ev.power) == 0 && len(ev.boot) == 0 {
		return
	}
	b.mu.Lock()
	onPower, onBoot := slices.Clone(b.onPower), slices.Clone(b.onBoot)
	b.mu.Unlock()
	for _, e := range ev.power {
		for _, fn := range onPower {
			fn(e)
		}
	}
	for _, e := range ev.boot {
		for _, fn := range onBoot {
			fn(e)
		}
	}
}

func (b *BMC) powerOnLocked(cause string, ev *events) {
	if b.power == PowerOn {
		return
	}
	now := b.opts.Clock()
	b.startLagLocked(now)
	b.power = PowerOn
	b.gen++
	boot := BootEvent{BMC: b, Target: "Hdd", Mode: "UEFI", At: now}
	if b.boot.Mode != "" {
		boot.Mode = b.boot.Mode
	}
	if b.boot.Enabled != "Disabled" && b.boot.Target != "None" && b.boot.Target != "" {
		boot.Target, boot.Override = b.boot.Target, true
		boot.HTTPBootURI = b.boot.HTTPBootURI
		if b.boot.Enabled == "Once" {
			b.boot.Enabled, b.boot.Target = "Disabled", "None"
		}
	}
	if boot.Target == "Cd" {
		for _, m := range b.media {
			if m.Inserted && slices.Contains(m.MediaTypes, "CD") {
				boot.Image = m.Image
			}
		}
	}
	b.logLocked("OK", "System power on ("+cause+"); booting from "+boot.Target)
	ev.power = append(ev.power, PowerEvent{BMC: b, From: PowerOff, To: PowerOn, Cause: cause, At: now})
	ev.boot = append(ev.boot, boot)
}

func (b *BMC) powerOffLocked(cause string, ev *events) {
	if b.power == PowerOff {
		return
	}
	b.startLagLocked(b.opts.Clock())
	b.power = PowerOff
	b.gen++
	b.logLocked("OK", "System power off ("+cause+")")
	ev.power = append(ev.power, PowerEvent{BMC: b, From: PowerOn, To: PowerOff, Cause: cause, At: b.opts.Clock()})
}

// reportedPowerLocked is the power state as the BMC reports it, which
// FlappingPower falsifies.
func (b *BMC) reportedPowerLocked() PowerState {
	if !b.faults.FlappingPower {
		if b.opts.Clock().Before(b.lagUntil) {
			return b.lagged
		}
		return b.power
	}
	b.flap = !b.flap
	if b.flap {
		return PowerOn
	}
	return PowerOff
}

// startLagLocked makes the BMC go on reporting the current power state for
// the spec's power lag, when it has one. Within a lag (a restart is off then
// on) the first state is kept.
func (b *BMC) startLagLocked(now time.Time) {
	if b.spec.powerLag <= 0 {
		return
	}
	if !now.Before(b.lagUntil) {
		b.lagged = b.power
	}
	b.lagUntil = now.Add(b.spec.powerLag)
}

// firmwareVersionLocked is the current version of a firmware component.
func (b *BMC) firmwareVersionLocked(id, fallback string) string {
	for _, c := range b.firmware {
		if c.ID == id && c.Version != "" {
			return c.Version
		}
	}
	return fallback
}
