package crash

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/simedge"
)

const fleetNodes = 1000

// At fleet size: `rackstrap simulate fleet` (a whole controller with the
// simulated edge, 1,000 machines in 25 racks, group commit under load) is
// SIGKILLed three times mid-run and started again on the same store and
// journal. The last run finishes: every machine Ready, every side effect in
// the machines' journal exactly once, the audit chain intact.
func TestSIGKILLThreeTimesAtFleetSize(t *testing.T) {
	t.Parallel()
	bin := buildRackstrap(t)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("kill moments seed %d", seed)
	dir := t.TempDir()
	args := []string{"simulate", "fleet", "--nodes", fmt.Sprint(fleetNodes), "--rack-size", "40", "--data-dir", dir,
		"--boot-time", "400ms", "--image-time", "800ms", "--burn-in-time", "100ms", "--reply-latency", "20ms",
		"--progress", "1s", "--timeout", "4m", "--log-level", "warn", "-o", "json"}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	journal := filepath.Join(dir, "simulated-edge.journal")
	for kill := 1; kill <= 3; kill++ {
		before, _ := simedge.ReadJournal(journal)
		c := start(t, bin, args, logf)
		// Wait until this run has applied side effects of its own, then
		// kill it at a random moment after: mid-lifecycle, mid-batch.
		deadline := time.Now().Add(90 * time.Second)
		for {
			now, _ := simedge.ReadJournal(journal)
			if len(now) > len(before)+50 {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logf.Name())
				t.Fatalf("run %d applied no side effects within 90 s\nlog tail:\n%s", kill, tail(log, 3000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
		now, _ := simedge.ReadJournal(journal)
		t.Logf("SIGKILL %d with %d side effects applied", kill, len(now))
		c.kill(t)
	}

	out, err := finish(bin, args, logf, 4*time.Minute)
	if err != nil {
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf("last run: %v\nlog tail:\n%s", err, tail(log, 3000))
	}
	var res struct {
		Nodes, Ready, Failed, Quarantined int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("last run printed %q: %v", out, err)
	}
	if res.Ready != fleetNodes {
		t.Fatalf("after three SIGKILLs: %+v, want all %d Ready", res, fleetNodes)
	}

	effects, err := simedge.ReadJournal(journal)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	seen := map[string]int{}
	for _, ef := range effects {
		if keys[ef.Key] {
			t.Errorf("side effect %s journalled twice", ef.Key)
		}
		keys[ef.Key] = true
		seen[ef.Node+" "+ef.Action+" "+ef.Arg]++
	}
	want := map[string]int{"set-boot network": 1, "boot ": 2, "image ": 1, "set-boot disk": 1}
	bad := 0
	for i := range fleetNodes {
		node := fmt.Sprintf("fr%03d-n%02d", i/40+1, i%40+1)
		for fx, n := range want {
			if got := seen[node+" "+fx]; got != n && bad < 20 {
				bad++
				t.Errorf("%s: side effect %q applied %d times, want %d", node, fx, got, n)
			}
		}
	}
	if len(effects) != fleetNodes*5 {
		t.Errorf("journal has %d side effects, want %d (5 per node)", len(effects), fleetNodes*5)
	}
	if out, err := exec.Command(bin, "audit", "verify", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Errorf("audit verify after the kills: %v\n%s", err, out)
	}
}

// finish runs the command to its end (killing it at the deadline) and
// returns its standard output.
func finish(bin string, args []string, logf *os.File, limit time.Duration) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	done := make(chan struct{})
	timer := time.AfterFunc(limit, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.Output()
	close(done)
	return out, err
}
