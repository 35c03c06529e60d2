// Package firmware_test proves the firmware run's promise against a real
// `rackstrap serve`: a controller SIGKILLed in the middle of a staged
// firmware run, and restarted, finishes the run and flashes every package
// exactly once (the simulated BMCs count what they accepted).
package firmware_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
	imgstore "github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/test/pgtest"
)

const nodes = 4

func buildRackstrap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rackstrap")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/rackstrap/rackstrap/cmd/rackstrap")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build rackstrap: %v\n%s", err, out)
	}
	return bin
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

// start runs `rackstrap serve` with a deadline; cleanup kills it by PID.
func start(t *testing.T, bin string, args []string, logf *os.File) *controller {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &controller{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	deadline := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	t.Cleanup(func() { deadline.Stop(); cmd.Process.Kill(); <-c.done })
	return c
}

func (c *controller) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-c.done
}

// call sends a JSON request to the API and decodes the answer into out.
func call(addr, method, path string, in, out any) (int, error) {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequest(method, "http://"+addr+path, &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// firmwareDir writes a signed baseline (BMC 1.5.0 with a BMC reset, BIOS
// 2.2.0) and returns the directory and the public key file.
func firmwareDir(t *testing.T) (string, string) {
	t.Helper()
	dir, keys := t.TempDir(), t.TempDir()
	pubFile := filepath.Join(keys, "fw.pub")
	if _, err := imgstore.GenerateKey(filepath.Join(keys, "fw.key"), pubFile); err != nil {
		t.Fatal(err)
	}
	priv, err := imgstore.LoadPrivateKey(filepath.Join(keys, "fw.key"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, p := range []struct{ id, file, version, reset string }{{"BMC", "bmc-1.5.0.bin", "1.5.0", "bmc"}, {"BIOS", "bios-2.2.0.bin", "2.2.0", "none"}} {
		file := filepath.Join(dir, p.file)
		if err := os.WriteFile(file, []byte("firmware "+p.file), 0o644); err != nil {
			t.Fatal(err)
		}
		sig, sha, err := firmware.SignPackage(file, priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file+".sig", sig, 0o644); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, fmt.Sprintf("  - id: %s\n    version: %s\n    package: {file: %s, sha256: %s, signature: %s.sig, reset: %s}\n", p.id, p.version, p.file, sha, p.file, p.reset))
	}
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte("name: fleet-2026q4\ncomponents:\n"+strings.Join(rules, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, pubFile
}

func TestSIGKILLMidRunFlashesEachPackageOnce(t *testing.T) {
	t.Parallel()
	bin := buildRackstrap(t)
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	dsn, err := pg.NewDatabase("firmware")
	if err != nil {
		t.Fatal(err)
	}
	for name, database := range map[string]string{"sqlite": "", "postgres": dsn} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sigkillRun(t, bin, database)
		})
	}
}

func sigkillRun(t *testing.T, bin, database string) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("kill moments seed %d", seed)

	var simNodes []redfishsim.Node
	for i := 1; i <= nodes; i++ {
		simNodes = append(simNodes, redfishsim.SampleNode(i))
	}
	// Each task runs 700ms, and a BMC reset keeps the BMC away 300ms: a
	// run of ~3s for the kills to land in.
	fleet, err := redfishsim.Start(redfishsim.Config{Options: redfishsim.Options{UpdateDuration: 700 * time.Millisecond, ResetDowntime: 300 * time.Millisecond}}, simNodes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	bmcs := fleet.BMCs()

	fwDir, pub := firmwareDir(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"serve", "--data-dir", dir, "--api-listen", addr, "--simulate", "0", "--log-format", "json",
		"--firmware-dir", fwDir, "--firmware-trusted-key", pub, "--firmware-poll-interval", "50ms"}
	if database != "" {
		args = append(args, "--database", database)
	}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c := start(t, bin, args, logf)
	waitAPI(t, addr)

	for i, b := range bmcs {
		name := fmt.Sprintf("fw-n%02d", i+1)
		node := map[string]any{"name": name, "identity": model.Identity{BMC: b.Endpoint(), Rack: "fw", Slot: i + 1}, "desired": model.WantEnrolled}
		if code, err := call(addr, "POST", "/api/v1/nodes", node, nil); err != nil || code/100 != 2 {
			t.Fatalf("create %s: %d %v", name, code, err)
		}
		if code, err := call(addr, "PUT", "/api/v1/nodes/"+name+"/bmc-credentials", map[string]string{"username": "admin", "password": "password"}, nil); err != nil || code/100 != 2 {
			t.Fatalf("credentials of %s: %d %v", name, code, err)
		}
	}
	waitFor(t, "every node Enrolled", func() bool {
		var list []model.Node
		if _, err := call(addr, "GET", "/api/v1/nodes", nil, &list); err != nil {
			return false
		}
		n := 0
		for _, x := range list {
			if x.State == model.Enrolled {
				n++
			}
		}
		return n == nodes
	})

	// The CLI's dry run plans and changes nothing.
	out, err := exec.Command(bin, "firmware", "apply", "--server", "http://"+addr, "--baseline", "fleet", "--rack", "fw", "--wave-size", "3", "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Dry run: 2 wave(s)") || !strings.Contains(string(out), "fw-n01  Enrolled  canary  BMC") {
		t.Fatalf("firmware apply --dry-run: %v\n%s", err, out)
	}
	for _, b := range bmcs {
		if len(b.Updates()) != 0 {
			t.Fatalf("a dry run flashed %+v", b.Updates())
		}
	}

	out, err = exec.Command(bin, "firmware", "apply", "--server", "http://"+addr, "--baseline", "fleet", "--rack", "fw", "--wave-size", "3", "--max-failures", "1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Started firmware run 1") {
		t.Fatalf("firmware apply: %v\n%s", err, out)
	}
	for kill := 1; kill <= 2; kill++ {
		// The first kill lands in the canary wave, the second in the
		// next one (a wave takes about 2s: BMC task, BMC reset, BIOS task).
		if kill == 2 {
			waitFor(t, "the second wave", func() bool { return accepted(bmcs) > 2 })
		}
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		var run store.FirmwareRun
		call(addr, "GET", "/api/v1/firmware/runs/1", nil, &run)
		t.Logf("SIGKILL %d at %d accepted updates, run %s", kill, accepted(bmcs), run.Status)
		c.kill(t)
		c = start(t, bin, args, logf)
		waitAPI(t, addr)
	}
	var run store.FirmwareRun
	waitFor(t, "the run to end", func() bool {
		_, err := call(addr, "GET", "/api/v1/firmware/runs/1", nil, &run)
		return err == nil && run.Status != store.FirmwareRunning
	})
	if run.Status != store.FirmwareDone {
		log, _ := os.ReadFile(logf.Name())
		var outcomes []string
		for _, n := range run.Nodes {
			outcomes = append(outcomes, n.Node+": "+n.Outcome+" "+n.Message)
		}
		t.Fatalf("run = %s %q\n%s\nlog tail:\n%s", run.Status, run.Reason, strings.Join(outcomes, "\n"), tail(log, 4000))
	}
	for i, b := range bmcs {
		var got []string
		for _, u := range b.Updates() {
			got = append(got, u.Target+" "+u.Version)
		}
		if strings.Join(got, ", ") != "BMC 1.5.0, BIOS 2.2.0" {
			t.Errorf("fw-n%02d: the BMC accepted %q, want BMC 1.5.0 and BIOS 2.2.0 once each", i+1, got)
		}
	}
	out, err = exec.Command(bin, "firmware", "runs", "1", "--server", "http://"+addr).CombinedOutput()
	if err != nil || strings.Count(string(out), "succeeded") != nodes {
		t.Errorf("firmware runs 1: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "firmware", "compliance", "--server", "http://"+addr, "--baseline", "fleet", "--rack", "fw").CombinedOutput()
	if err != nil || strings.Count(string(out), "COMPLIANT") != 2*nodes {
		t.Errorf("firmware compliance after the run: %v\n%s", err, out)
	}
	c.kill(t)
	verify := []string{"audit", "verify", "--data-dir", dir}
	if database != "" {
		verify = []string{"audit", "verify", "--database", database}
	}
	if out, err := exec.Command(bin, verify...).CombinedOutput(); err != nil {
		t.Errorf("audit verify after the kills: %v\n%s", err, out)
	}
}

func accepted(bmcs []*redfishsim.BMC) int {
	n := 0
	for _, b := range bmcs {
		n += len(b.Updates())
	}
	return n
}

func waitAPI(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, "the API", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
