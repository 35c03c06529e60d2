package fleet

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/test/fleet"
)

// The simulated machines run in a process of their own (this test binary,
// started again with roleEnv set), so that the controller's memory and CPU
// are measured apart from theirs, as they would be on a real site.
const (
	roleEnv   = "REALFLEET_ROLE"
	configEnv = "REALFLEET_SIM_CONFIG"
)

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "simulator" {
		if err := simulate(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "simulator:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// simConfig is what the controller's side tells the simulator process.
type simConfig struct {
	Racks, PerRack int
	DHCP           netip.AddrPort // the controller's DHCP server
	RelayPort      uint16         // the DHCP server's relay port
	TFTPPort       uint16
	MaxPoll        time.Duration
	CPUProfile     string // where the simulator writes its CPU profile ("" none)
}

// simHello is the simulator's first line: its BMCs, rack by rack, slot by slot.
type simHello struct {
	BMCs []string
}

// simReport is the simulator's last line, written when its stdin closes.
type simReport struct {
	Stages     map[fleet.Stage]int
	Errors     map[string]int // hosts' last errors (their first 80 bytes)
	Requests   uint64         // Redfish requests the BMCs answered
	CPUSeconds float64
	PeakRSSMiB float64
}

// relayOf is rack r's relay address (and the /24 its machines lease in).
func relayOf(r int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 100 + byte(r/250), byte(r % 250), 1})
}

func rackName(r int) string { return fmt.Sprintf("rf%03d", r+1) }

// simulate runs the simulator process: BMCs and hosts of every rack, until
// in closes; then it reports on out.
func simulate(in io.Reader, out io.Writer) error {
	var cfg simConfig
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", configEnv, err)
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
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
	var hello simHello
	for i, b := range bmcs.BMCs() {
		r, slot := i/cfg.PerRack, i%cfg.PerRack+1
		racks[r].Attach(b, fleet.HostOptions{Rack: rackName(r), Slot: slot})
		hello.BMCs = append(hello.BMCs, b.Endpoint())
	}
	// The run starts now: making the BMCs (a key and certificate each) is
	// set-up, not the machines' work.
	cpu0 := cpuTime()
	enc := json.NewEncoder(out)
	if err := enc.Encode(hello); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return err
	}
	rep := simReport{Stages: map[fleet.Stage]int{}, Errors: map[string]int{}}
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
	rep.CPUSeconds = (cpuTime() - cpu0).Seconds()
	rep.PeakRSSMiB = peakRSSMiB()
	return enc.Encode(rep)
}

// simProcess is a running simulator process.
type simProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	Hello simHello
	done  bool
}

// startSimulator starts the simulator process and reads its BMCs. The
// process ends with the test.
func startSimulator(t *testing.T, cfg simConfig) *simProcess {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=simulator", configEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the simulator process: %v", err)
	}
	p := &simProcess{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		if !p.done {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if err := p.read(&p.Hello); err != nil {
		t.Fatalf("simulator process: %v", err)
	}
	if len(p.Hello.BMCs) != cfg.Racks*cfg.PerRack {
		t.Fatalf("simulator process: %d BMCs, want %d", len(p.Hello.BMCs), cfg.Racks*cfg.PerRack)
	}
	return p
}

func (p *simProcess) read(v any) error {
	line, err := p.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read its output: %w (its errors are on stderr above)", err)
	}
	return json.Unmarshal(line, v)
}

// Stop tells the simulator to stop and returns its report.
func (p *simProcess) Stop() (simReport, error) {
	var rep simReport
	if p.done {
		return rep, errors.New("simulator already stopped")
	}
	p.done = true
	p.stdin.Close()
	err := p.read(&rep)
	if werr := p.cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("simulator process: %w", werr)
	}
	return rep, err
}
