package crash

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
	"github.com/rackstrap/rackstrap/test/pgtest"
)

// Two `rackstrap serve` share one PostgreSQL, each with a rack of simulated
// machines (one simulated fleet: a shared journal). Each drives only the
// rack it holds a lease on. One is SIGKILLed mid-run: the survivor takes
// its rack within 30 s and brings every machine of both racks to Ready,
// and every side effect happened exactly once.
func TestSurvivorTakesTheRacksOfAKilledController(t *testing.T) {
	t.Parallel()
	bin := buildRackstrap(t)
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	dsn, err := pg.NewDatabase("ha")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "controllers.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	const perRack = 16
	ttl := 3 * time.Second
	args := func(id, rack, addr string) []string {
		return []string{"serve", "--database", dsn, "--data-dir", dir, "--api-listen", addr,
			"--controller-id", id, "--rack-lease-ttl", ttl.String(),
			"--simulate", fmt.Sprint(perRack), "--simulate-rack", rack,
			"--simulate-boot-time", "500ms", "--simulate-image-time", "1s", "--rack-limit", "2", "--log-format", "json"}
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := start(t, bin, args("ctl-a", "ra", addrA), logf)
	waitAPI(t, addrA, logf)
	start(t, bin, args("ctl-b", "rb", addrB), logf)
	waitAPI(t, addrB, logf)

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holder := func(rack string) string {
		var h string
		db.QueryRowContext(context.Background(), `SELECT holder FROM rack_leases WHERE rack = $1`, rack).Scan(&h)
		return h
	}
	// Kill A once its rack is under way and not finished.
	deadline := time.Now().Add(90 * time.Second)
	for {
		counts, err := nodesByState(addrB)
		if err == nil && holder("ra") == "ctl-a" && counts[model.Enrolled]+counts[model.Inspecting]+counts[model.Validated]+counts[model.Imaging] > perRack/2 {
			t.Logf("SIGKILL ctl-a at %v (ra held by %s, rb by %s)", counts, holder("ra"), holder("rb"))
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("run did not get under way: %v, %v; ra held by %q\nlog tail:\n%s", counts, err, holder("ra"), tail(log, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.kill(t)
	killed := time.Now()

	for holder("ra") != "ctl-b" {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("30 s after ctl-a died its rack is held by %q, want ctl-b", holder("ra"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ctl-b took rack ra %s after ctl-a died", time.Since(killed).Round(100*time.Millisecond))

	deadline = time.Now().Add(2 * time.Minute)
	for {
		counts, err := nodesByState(addrB)
		if err == nil && counts[model.Ready] == 2*perRack {
			break
		}
		if err == nil && (counts[model.Failed] > 0 || counts[model.Quarantined] > 0) {
			t.Fatalf("nodes failed after the takeover: %v (see %s)", counts, logf.Name())
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("not all %d nodes reached Ready: %v, %v\nlog tail:\n%s", 2*perRack, counts, err, tail(log, 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}

	effects, err := simedge.ReadJournal(filepath.Join(dir, "simulated-edge.journal"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	seen := map[string]int{}
	for _, ef := range effects {
		if keys[ef.Key] {
			t.Errorf("side effect %s applied twice", ef.Key)
		}
		keys[ef.Key] = true
		seen[ef.Node+" "+ef.Action+" "+ef.Arg]++
	}
	want := map[string]int{"set-boot network": 1, "boot ": 2, "image ": 1, "set-boot disk": 1}
	for _, rack := range []string{"ra", "rb"} {
		for i := 1; i <= perRack; i++ {
			node := fmt.Sprintf("%s-n%02d", rack, i)
			for fx, n := range want {
				if got := seen[node+" "+fx]; got != n {
					t.Errorf("%s: side effect %q applied %d times, want %d", node, fx, got, n)
				}
			}
		}
	}
	if out, err := runCmd(bin, "audit", "verify", "--database", dsn); err != nil {
		t.Errorf("audit verify after the takeover: %v\n%s", err, out)
	}
}

// waitAPI waits until a controller's API answers.
func waitAPI(t *testing.T, addr string, logf *os.File) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := nodesByState(addr); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("controller at %s did not answer within 60 s\nlog tail:\n%s", addr, tail(log, 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runCmd runs a short command with a deadline (killed at it).
func runCmd(bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}
