// Package crash proves the controller's central promise: a `rackstrap serve`
// killed with SIGKILL at random moments, and restarted each time, brings
// every node to Ready and applies every side effect exactly once.
package crash

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/test/pgtest"
)

const nodes = 50

// builtBin is the rackstrap binary TestMain builds once for every test.
var builtBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rackstrap-crash-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	builtBin = filepath.Join(dir, "rackstrap")
	cmd := exec.Command("go", "build", "-o", builtBin, "github.com/rackstrap/rackstrap/cmd/rackstrap")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build rackstrap: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildRackstrap(t *testing.T) string {
	t.Helper()
	return builtBin
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type controller struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(t *testing.T, bin string, args []string, logf *os.File) *controller {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &controller{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-c.done })
	return c
}

func (c *controller) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-c.done
}

func nodesByState(addr string) (map[model.State]int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/nodes")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []model.Node
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := map[model.State]int{}
	for _, n := range list {
		out[n.State]++
	}
	return out, nil
}

func TestSIGKILLThreeTimesEverythingOnce(t *testing.T) {
	t.Parallel()
	bin := buildRackstrap(t)
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	dsn, err := pg.NewDatabase("crash")
	if err != nil {
		t.Fatal(err)
	}
	for name, database := range map[string]string{"sqlite": "", "postgres": dsn} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			crashRun(t, bin, database)
		})
	}
}

func crashRun(t *testing.T, bin, database string) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("kill moments seed %d", seed)
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"serve", "--data-dir", dir, "--api-listen", addr, "--simulate", fmt.Sprint(nodes),
		"--simulate-boot-time", "600ms", "--simulate-image-time", "1s", "--log-format", "json", "--rack-limit", "8"}
	if database != "" {
		args = append(args, "--database", database)
	}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	for kill := 1; kill <= 3; kill++ {
		c := start(t, bin, args, logf)
		// A random moment of the run: from the first instant of startup
		// (store opening, migrations) to well into the lifecycle. The
		// simulated rack takes over 10 s, so all three land mid-run.
		time.Sleep(time.Duration(rng.Int64N(int64(2500 * time.Millisecond))))
		counts, _ := nodesByState(addr)
		t.Logf("SIGKILL %d at %v", kill, counts)
		c.kill(t)
	}
	start(t, bin, args, logf)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		counts, err := nodesByState(addr)
		if err == nil && counts[model.Ready] == nodes {
			break
		}
		if err == nil && (counts[model.Failed] > 0 || counts[model.Quarantined] > 0) {
			t.Fatalf("nodes failed after the kills: %v (see %s)", counts, logf.Name())
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("not all %d nodes reached Ready: %v, %v\nlog tail:\n%s", nodes, counts, err, tail(log, 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}

	effects, err := simedge.ReadJournal(filepath.Join(dir, "simulated-edge.journal"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ef := range effects {
		seen[ef.Node+" "+ef.Action+" "+ef.Arg]++
	}
	want := map[string]int{"set-boot network": 1, "boot ": 2, "image ": 1, "set-boot disk": 1}
	for i := 1; i <= nodes; i++ {
		node := fmt.Sprintf("sim-r1-n%02d", i)
		for fx, n := range want {
			if got := seen[node+" "+fx]; got != n {
				t.Errorf("%s: side effect %q applied %d times, want %d", node, fx, got, n)
			}
		}
	}
	if len(effects) != nodes*5 {
		t.Errorf("journal has %d side effects, want %d (5 per node)", len(effects), nodes*5)
	}

	verify := []string{"audit", "verify", "--data-dir", dir}
	if database != "" {
		verify = []string{"audit", "verify", "--database", database}
	}
	if out, err := exec.Command(bin, verify...).CombinedOutput(); err != nil {
		t.Errorf("audit verify after the kills: %v\n%s", err, out)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
