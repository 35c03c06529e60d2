// Package realfleet provisions racks of SIMULATED machines that speak the
// real protocols through a real controller, and measures it: `rackstrap
// simulate fleet --protocols real` and `make bench-fleet` (test/bench/fleet).
//
// The controller (store, lifecycle engine, API, DHCP, TFTP, HTTP) runs in
// the calling process. The machines run in a process of their own, started
// by the caller (Config.Machines) and served by ServeMachines: a Redfish
// BMC simulator per machine (bmc/redfishsim, driven by bmclib) and a host
// (test/fleet) that, once powered on, does DHCP through its rack's relay
// (giaddr per rack, option 82 per slot), TFTP and HTTP boot, agent check-in
// with inventory, the signed image streamed and hashed, and its first-boot
// check-in. Two processes, so that the controller's memory and CPU are
// measured apart from the machines', as they would be on a site.
package realfleet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	"github.com/rackstrap/rackstrap/test/fleet"
	"github.com/rackstrap/rackstrap/test/lab"
)

// MachinesEnv carries the machines' configuration (JSON) to the machines'
// process; a process started with it set should call ServeMachines.
const MachinesEnv = "RACKSTRAP_FLEET_MACHINES"

// Config is one run.
type Config struct {
	Racks, PerRack int
	// Workers and MaxInFlight are the engine's (serve --workers,
	// --max-in-flight; 0: their defaults).
	Workers, MaxInFlight int
	ImageSize            int64         // bytes of the signed OS image (default 256 KiB)
	Timeout              time.Duration // give up after (default 20 minutes)
	Dir                  string        // scratch: artifacts, the store
	Database             string        // PostgreSQL URL; "" is SQLite in Dir
	// Machines is the command that starts the machines' process (this
	// package sets its environment, stdin and stdout); it must call
	// ServeMachines.
	Machines *exec.Cmd
	// Progress, when set, is called every ProgressEvery with the nodes per
	// state.
	Progress      func(elapsed time.Duration, counts map[model.State]int)
	ProgressEvery time.Duration
	Log           *slog.Logger // the controller's (default: discard)
}

// Result is what a run measured.
type Result struct {
	Nodes           int                 `json:"nodes"`
	Racks           int                 `json:"racks"`
	Workers         int                 `json:"workers"`
	MaxInFlight     int                 `json:"maxInFlight"`
	WallSeconds     float64             `json:"wallSeconds"`
	NodesPerSecond  float64             `json:"nodesPerSecond"`
	CPUSeconds      float64             `json:"controllerCpuSeconds"`
	PeakRSSMiB      float64             `json:"controllerPeakRssMiB"`
	SimCPUSeconds   float64             `json:"machinesCpuSeconds"`
	SimPeakRSSMiB   float64             `json:"machinesPeakRssMiB"`
	RedfishRequests uint64              `json:"redfishRequests"`
	States          map[model.State]int `json:"states"`
	HostStages      map[fleet.Stage]int `json:"hostStages"`
	HostErrors      map[string]int      `json:"hostErrors,omitempty"`
}

// Ready is how many nodes reached Ready.
func (r Result) Ready() int { return r.States[model.Ready] }

// relayOf is rack r's relay address (and the /24 its machines lease in).
func relayOf(r int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 100 + byte(r/250), byte(r % 250), 1})
}

// RackName names rack r (from 0).
func RackName(r int) string { return fmt.Sprintf("rf%03d", r+1) }

// Run provisions Racks × PerRack machines from Discovered to Ready. It
// returns an error when the run could not be made; machines that did not
// reach Ready are in Result.States.
func Run(ctx context.Context, cfg Config) (Result, error) {
	// A rack's /24 leases 241 addresses; the relays fill 127.100-103.x.1
	// and the BMCs count up from 127.200.0.1.
	if cfg.Racks < 1 || cfg.Racks > 1000 || cfg.PerRack < 1 || cfg.PerRack > 240 {
		return Result{}, fmt.Errorf("%d racks of %d machines: the simulated fleet has 1 to 1000 racks of 1 to 240 machines", cfg.Racks, cfg.PerRack)
	}
	if cfg.Machines == nil {
		return Result{}, errors.New("realfleet: no command to start the machines' process")
	}
	if cfg.ImageSize <= 0 {
		cfg.ImageSize = 256 << 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Minute
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.Racks * cfg.PerRack
	res := Result{Nodes: n, Racks: cfg.Racks, Workers: cfg.Workers, MaxInFlight: cfg.MaxInFlight}

	// The lab gives the artifacts, the signed image and the boot services'
	// ports; the racks, subnets and BMCs are made here.
	l, err := lab.Prepare(lab.Config{Rack: "unused", Nodes: 0, Dir: filepath.Join(cfg.Dir, "artifacts"), ImageSize: cfg.ImageSize, Log: log})
	if err != nil {
		return res, err
	}
	defer l.Close()
	boot := *l.Boot
	boot.DHCP.Subnets, boot.DHCP.Locations = nil, nil
	for r := range cfg.Racks {
		relay := relayOf(r)
		a := relay.As4()
		boot.DHCP.Subnets = append(boot.DHCP.Subnets, dhcp.Subnet{
			Prefix:     netip.PrefixFrom(relay, 24).Masked(),
			Pools:      []dhcp.Range{{Start: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 10}), End: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 250})}},
			NextServer: netip.MustParseAddr("127.0.0.1"),
		})
		for s := 1; s <= cfg.PerRack; s++ {
			boot.DHCP.Locations = append(boot.DHCP.Locations, fleet.Location(RackName(r), s, relay))
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ccfg := controller.Config{DataDir: filepath.Join(cfg.Dir, "data"), Database: cfg.Database, APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: &boot,
		Engine: lifecycle.Config{MaxAttempts: 3, Workers: cfg.Workers, MaxInFlight: cfg.MaxInFlight,
			Deadlines: map[string]time.Duration{lifecycle.StepWaitNetboot: cfg.Timeout, lifecycle.StepWaitFirstBoot: cfg.Timeout}}}
	ready := make(chan *controller.Controller, 1)
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx, ccfg, log, func(c *controller.Controller) { ready <- c }) }()
	var ctl *controller.Controller
	select {
	case ctl = <-ready:
	case err := <-done:
		return res, fmt.Errorf("controller: %w", err)
	}
	defer func() {
		cancel()
		<-done
	}()

	sim, err := startMachines(cfg.Machines, MachinesConfig{Racks: cfg.Racks, PerRack: cfg.PerRack,
		DHCP: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), boot.DHCP.Port), RelayPort: boot.DHCP.RelayPort,
		TFTPPort: boot.TFTP.Addr.Port(), MaxPoll: 2 * time.Second, CPUProfile: os.Getenv("REALFLEET_SIM_CPUPROFILE")})
	if err != nil {
		return res, err
	}
	defer sim.kill()
	start := time.Now()
	cpu0 := CPUTime()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64) // concurrent declarations share the store's group commits
	for i, ep := range sim.hello.BMCs {
		r, slot := i/cfg.PerRack, i%cfg.PerRack+1
		node := model.Node{Name: fmt.Sprintf("%s-n%02d", RackName(r), slot), Profile: "hgx-h100-8gpu", Desired: model.WantReady,
			Identity: model.Identity{BMC: ep, Rack: RackName(r), Slot: slot}}
		g.Go(func() error {
			_, _, err := ctl.Store.CreateNode(gctx, node, "simulate")
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("declare the machines: %w", err)
	}

	deadline := start.Add(cfg.Timeout)
	nextProgress := start.Add(cfg.ProgressEvery)
	for {
		res.States, err = ctl.Store.CountByState(ctx)
		if err != nil {
			return res, err
		}
		if res.States[model.Ready]+res.States[model.Failed]+res.States[model.Quarantined] == n || time.Now().After(deadline) {
			break
		}
		if cfg.Progress != nil && cfg.ProgressEvery > 0 && time.Now().After(nextProgress) {
			cfg.Progress(time.Since(start), res.States)
			nextProgress = nextProgress.Add(cfg.ProgressEvery)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	wall := time.Since(start)
	res.CPUSeconds = (CPUTime() - cpu0).Seconds()
	res.PeakRSSMiB = PeakRSSMiB()
	res.WallSeconds = wall.Seconds()
	res.NodesPerSecond = float64(res.States[model.Ready]) / wall.Seconds()
	rep, err := sim.stop()
	if err != nil {
		return res, err
	}
	res.SimCPUSeconds, res.SimPeakRSSMiB, res.RedfishRequests = rep.CPUSeconds, rep.PeakRSSMiB, rep.Requests
	res.HostStages, res.HostErrors = rep.Stages, rep.Errors
	return res, nil
}

// MachinesConfig is what the controller's side tells the machines' process.
type MachinesConfig struct {
	Racks, PerRack int
	DHCP           netip.AddrPort // the controller's DHCP server
	RelayPort      uint16         // the DHCP server's relay port
	TFTPPort       uint16
	MaxPoll        time.Duration
	CPUProfile     string // where the machines' process writes its CPU profile ("" none)
}

// hello is the machines' first line: their BMCs, rack by rack, slot by slot.
type hello struct {
	BMCs []string
}

// report is the machines' last line, written when their stdin closes.
type report struct {
	Stages     map[fleet.Stage]int
	Errors     map[string]int // hosts' last errors (their first 80 bytes)
	Requests   uint64         // Redfish requests the BMCs answered
	CPUSeconds float64
	PeakRSSMiB float64
}

// RunIfMachines makes a binary (a test's TestMain) double as the machines'
// process: when MachinesEnv is set it serves the machines and exits.
func RunIfMachines() {
	if os.Getenv(MachinesEnv) == "" {
		return
	}
	if err := ServeMachines(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "machines:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// ServeMachines is the machines' process: it reads its configuration from
// MachinesEnv, starts every rack's BMCs and hosts, writes their BMCs to
// out, and runs them until in closes; then it reports on out.
func ServeMachines(in io.Reader, out io.Writer) error {
	var cfg MachinesConfig
	if err := json.Unmarshal([]byte(os.Getenv(MachinesEnv)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", MachinesEnv, err)
	}
	if cfg.CPUProfile != "" {
		stop, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	n := cfg.Racks * cfg.PerRack
	specs := make([]redfishsim.Node, 0, n)
	for i := range n {
		sn := redfishsim.SampleNode(1000 + i)
		sn.Username, sn.Password = "admin", "password"
		specs = append(specs, sn)
	}
	bmcs, err := redfishsim.Start(redfishsim.Config{First: netip.MustParseAddr("127.200.0.1"), Wildcard: true}, specs...)
	if err != nil {
		return err
	}
	defer bmcs.Close()
	var racks []*fleet.Rack
	defer func() {
		for _, r := range racks {
			r.Close()
		}
	}()
	log := slog.New(slog.DiscardHandler)
	for r := range cfg.Racks {
		fr, err := fleet.NewRack(fleet.Config{DHCPServer: cfg.DHCP, RelayAddr: relayOf(r), RelayPort: cfg.RelayPort,
			TFTPPort: cfg.TFTPPort, MaxPoll: cfg.MaxPoll, Log: log})
		if err != nil {
			return err
		}
		racks = append(racks, fr)
	}
	var hi hello
	for i, b := range bmcs.BMCs() {
		r, slot := i/cfg.PerRack, i%cfg.PerRack+1
		racks[r].Attach(b, fleet.HostOptions{Rack: RackName(r), Slot: slot})
		hi.BMCs = append(hi.BMCs, b.Endpoint())
	}
	// The run starts now: making the BMCs (a key and certificate each) is
	// set-up, not the machines' work.
	cpu0 := CPUTime()
	enc := json.NewEncoder(out)
	if err := enc.Encode(hi); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return err
	}
	rep := report{Stages: map[fleet.Stage]int{}, Errors: map[string]int{}}
	for _, r := range racks {
		for _, h := range r.Hosts() {
			st := h.Stats()
			rep.Stages[st.Stage]++
			if e := st.LastError; e != "" {
				rep.Errors[e[:min(len(e), 80)]]++
			}
		}
	}
	for _, b := range bmcs.BMCs() {
		rep.Requests += b.Requests()
	}
	rep.CPUSeconds = (CPUTime() - cpu0).Seconds()
	rep.PeakRSSMiB = PeakRSSMiB()
	return enc.Encode(rep)
}

// machines is the running machines' process.
type machines struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	hello hello
	done  bool
}

func startMachines(cmd *exec.Cmd, cfg MachinesConfig) (*machines, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), MachinesEnv+"="+string(b))
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the machines' process: %w", err)
	}
	m := &machines{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	if err := m.read(&m.hello); err != nil {
		m.kill()
		return nil, err
	}
	if len(m.hello.BMCs) != cfg.Racks*cfg.PerRack {
		m.kill()
		return nil, fmt.Errorf("the machines' process started %d BMCs, want %d", len(m.hello.BMCs), cfg.Racks*cfg.PerRack)
	}
	return m, nil
}

func (m *machines) read(v any) error {
	line, err := m.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("the machines' process: read its output: %w (its errors are on stderr)", err)
	}
	return json.Unmarshal(line, v)
}

// stop tells the machines to stop and returns their report.
func (m *machines) stop() (report, error) {
	var rep report
	if m.done {
		return rep, errors.New("the machines' process has already stopped")
	}
	m.done = true
	m.stdin.Close()
	err := m.read(&rep)
	if werr := m.cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("the machines' process: %w", werr)
	}
	return rep, err
}

func (m *machines) kill() {
	if m.done {
		return
	}
	m.done = true
	m.cmd.Process.Kill()
	m.cmd.Wait()
}

// CPUTime is the CPU (user and system) this process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// PeakRSSMiB is this process's peak resident set (VmHWM).
func PeakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
