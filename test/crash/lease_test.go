package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/test/fleet"
	"github.com/rackstrap/rackstrap/test/lab"
)

// No lease handed out twice: `rackstrap serve` with its own DHCP server
// (the real edge's) is SIGKILLed three times while simulated hosts keep
// taking leases through their rack's relay; each run adds hosts and the
// earlier ones ask again. Every DHCPACK any host received is recorded
// (MAC → IP, lifetime, arrival), and no address may ever have been
// promised to two MACs at once: a server that ACKed a lease before it was
// durable, or forgot leases in a restart, would give a dead run's
// addresses to the next run's new hosts.
func TestSIGKILLNoLeaseHandedOutTwice(t *testing.T) {
	t.Parallel()
	bin := buildRackstrap(t)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	t.Logf("kill moments seed %d", seed)
	const (
		runs    = 4 // three killed, the last one stopped cleanly
		perRun  = 12
		hostsN  = runs * perRun
		perHost = 3 // exchanges each host makes at least, per run it is in
	)
	dir := t.TempDir()
	rack, err := lab.Prepare(lab.Config{Rack: "lz", Nodes: hostsN, Dir: filepath.Join(dir, "artifacts"), ImageSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rack.Close() })
	if err := rack.Start(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "bmc.pass")
	if err := os.WriteFile(pw, []byte("password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := rack.Boot
	sub := b.DHCP.Subnets[0]
	args := []string{"serve", "--data-dir", filepath.Join(dir, "data"), "--api-listen", freeAddr(t),
		"--artifacts", b.ArtifactDir, "--image-store", rack.Edge.SignedImage.StoreDir, "--image", "lab-os:1.0.0", "--trusted-key", rack.TrustedKey(),
		"--boot-url", b.BootBase, "--boot-listen", b.HTTP.Addr.String(),
		"--tftp-listen", b.TFTP.Addr.String(), "--bmc-password-file", pw,
		"--dhcp-listen", fmt.Sprintf("127.0.0.1:%d", b.DHCP.Port), "--dhcp-relay-port", fmt.Sprint(b.DHCP.RelayPort),
		"--dhcp-subnet", sub.Prefix.String(), "--dhcp-range", sub.Pools[0].Start.String() + "-" + sub.Pools[0].End.String(),
		"--log-format", "json", "--log-level", "warn"}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	failLog := func(format string, a ...any) {
		t.Helper()
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf(format+"\ncontroller log tail:\n%s", append(a, tail(log, 3000))...)
	}

	hosts := rack.Hosts()
	for run := 0; run < runs; run++ {
		c := start(t, bin, args, logf)
		active := hosts[:(run+1)*perRun]
		ctx, stop := context.WithCancel(context.Background())
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			done = map[string]int{} // exchanges completed in this run, by MAC
		)
		for _, h := range active {
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := h.DHCP(ctx); err == nil {
						mu.Lock()
						done[h.MAC().String()]++
						mu.Unlock()
					}
				}
			})
		}
		// Every active host completes perHost exchanges with this run's
		// server (a condition, with a generous deadline for a loaded
		// machine); the last run then stops, the others die mid-traffic.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			mu.Lock()
			n := 0
			for _, h := range active {
				if done[h.MAC().String()] >= perHost {
					n++
				}
			}
			mu.Unlock()
			if n == len(active) {
				break
			}
			if time.Now().After(deadline) {
				stop()
				wg.Wait()
				failLog("run %d: only %d of %d hosts completed %d DHCP exchanges within 3 minutes", run+1, n, len(active), perHost)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if run < runs-1 {
			time.Sleep(time.Duration(rng.Int64N(int64(200 * time.Millisecond))))
			t.Logf("SIGKILL %d with %d leases granted so far", run+1, len(rack.Grants()))
			c.kill(t)
		}
		stop()
		wg.Wait()
	}

	grants := rack.Grants()
	if over := fleet.Overlaps(grants); len(over) > 0 {
		var b strings.Builder
		for i, p := range over {
			if i == 10 {
				fmt.Fprintf(&b, "… and %d more\n", len(over)-10)
				break
			}
			fmt.Fprintf(&b, "%v: %s at %s (lease %s), then %s at %s\n", p[0].IP, p[0].MAC, p[0].At.Format(time.StampMicro), p[0].Lease,
				p[1].MAC, p[1].At.Format(time.StampMicro))
		}
		failLog("%d times an address was promised to two MACs at once across the SIGKILLs:\n%s", len(over), b.String())
	}
	ips := map[string]map[string]bool{}
	for _, g := range grants {
		if ips[g.MAC] == nil {
			ips[g.MAC] = map[string]bool{}
		}
		ips[g.MAC][g.IP.String()] = true
	}
	moved := 0
	for _, set := range ips {
		if len(set) > 1 {
			moved++
		}
	}
	if len(ips) != hostsN {
		t.Errorf("%d hosts got a lease, want all %d", len(ips), hostsN)
	}
	t.Logf("%d leases granted to %d hosts over %d runs (3 SIGKILLs); %d hosts were given another address at some point", len(grants), len(ips), runs, moved)
}
