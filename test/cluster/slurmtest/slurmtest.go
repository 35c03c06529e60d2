// Package slurmtest starts a real, throw-away Slurm controller for tests:
// Debian's slurmctld (22.05) and munged, in a network namespace of their own
// with a veth address, their files in a temporary directory. Everything is
// torn down in t.Cleanup, even when the test fails: both daemons killed by
// PID, the namespace deleted, the directory removed. `make test` installs
// the packages (test/apt-packages.txt: slurmctld, munge).
//
// The configuration follows /work/shared/RECIPES.md §4: dynamic nodes
// (MaxNodeCount), GresTypes=gpu, PrivateData=cloud (so powered-down CLOUD
// nodes are shown), one partition with Nodes=ALL. The namespace needs a
// non-loopback address: with only lo, getaddrinfo's AI_ADDRCONFIG fails and
// slurmctld dies "Unable to resolve "(null)"".
package slurmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Partition is the default partition of the test cluster (Nodes=ALL).
const Partition = "batch"

// Options change the test cluster's slurm.conf.
type Options struct {
	// Extra lines appended to slurm.conf (e.g. another partition).
	Extra []string
	// NoPrivateDataCloud leaves PrivateData=cloud out, as a site that
	// forgot it would.
	NoPrivateDataCloud bool
	// NoGresTypes leaves GresTypes=gpu out.
	NoGresTypes bool
	// MaxNodeCount is the dynamic node table's size (default 64).
	MaxNodeCount int
}

// Controller is a running slurmctld with its munged.
type Controller struct {
	Dir   string // the temporary directory with slurm.conf, state and logs
	Conf  string // slurm.conf: give it to scontrol as SLURM_CONF
	Netns string // the namespace slurmctld listens in (127.0.0.1:16817)

	t     testing.TB
	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *bytes.Buffer
}

// Require fails the test unless the binaries the controller needs are
// installed and the test runs as root (network namespaces need
// CAP_NET_ADMIN).
func Require(t testing.TB) {
	t.Helper()
	for bin, pkg := range map[string]string{"slurmctld": "slurmctld", "scontrol": "slurm-client", "munged": "munge", "ip": "iproute2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install the Debian package %s (make test-deps installs test/apt-packages.txt)", bin, pkg)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the Slurm tests run slurmctld in a network namespace and need root; run make test as root")
	}
}

// Start starts munged and slurmctld and waits until `scontrol ping` says UP.
func Start(t testing.TB, opt Options) *Controller {
	t.Helper()
	Require(t)
	if opt.MaxNodeCount == 0 {
		opt.MaxNodeCount = 64
	}
	dir, err := os.MkdirTemp("", "rackstrap-slurm-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{Dir: dir, Conf: filepath.Join(dir, "slurm.conf"), Netns: "rs-slurm-" + suffix(), t: t, procs: map[string]*proc{}}
	t.Cleanup(c.cleanup)

	// munged refuses a socket directory others cannot search, and key,
	// log and seed files others can write.
	for _, d := range []string{dir, filepath.Join(dir, "munge"), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	c.run("ip", "netns", "add", c.Netns)
	c.run("ip", "-n", c.Netns, "link", "set", "lo", "up")
	c.run("ip", "-n", c.Netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	c.run("ip", "-n", c.Netns, "addr", "add", "10.223.0.1/24", "dev", "v0")
	c.run("ip", "-n", c.Netns, "link", "set", "v0", "up")
	c.run("ip", "-n", c.Netns, "link", "set", "v1", "up")

	key := make([]byte, 1024)
	rand.Read(key)
	m := filepath.Join(dir, "munge")
	if err := os.WriteFile(filepath.Join(m, "munge.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(m, "munge.sock")
	c.start("munged", "munged", "--foreground", "--socket="+sock, "--key-file="+filepath.Join(m, "munge.key"),
		"--pid-file="+filepath.Join(m, "munged.pid"), "--log-file="+filepath.Join(m, "munged.log"),
		"--seed-file="+filepath.Join(m, "seed"))
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }) {
		t.Fatalf("munged did not create %s within 10s\n%s", sock, c.Logs())
	}

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ = strings.Cut(host, ".")
	conf := []string{
		"ClusterName=rackstrap",
		fmt.Sprintf("SlurmctldHost=%s(127.0.0.1)", host),
		"SlurmctldPort=16817",
		"SlurmdPort=16818",
		"SlurmUser=root",
		"AuthType=auth/munge",
		"AuthInfo=socket=" + sock,
		"StateSaveLocation=" + filepath.Join(dir, "state"),
		"SlurmdSpoolDir=" + filepath.Join(dir, "slurmd"),
		"SlurmctldPidFile=" + filepath.Join(dir, "slurmctld.pid"),
		"SlurmctldLogFile=" + filepath.Join(dir, "slurmctld.log"),
		"ProctrackType=proctrack/linuxproc",
		"TaskPlugin=task/none",
		"SelectType=select/cons_tres",
		fmt.Sprintf("MaxNodeCount=%d", opt.MaxNodeCount),
		"TreeWidth=65533",
		// scontrol gives up on a controller that does not answer after
		// about MessageTimeout; the default 10 s slows the failure tests.
		"MessageTimeout=3",
		"JobCompType=jobcomp/none",
		"AccountingStorageType=accounting_storage/none",
		"PartitionName=" + Partition + " Nodes=ALL Default=YES State=UP",
	}
	if !opt.NoGresTypes {
		conf = append(conf, "GresTypes=gpu")
	}
	if !opt.NoPrivateDataCloud {
		conf = append(conf, "PrivateData=cloud")
	}
	conf = append(conf, opt.Extra...)
	if err := os.WriteFile(c.Conf, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.StartSlurmctld()
	return c
}

// StartSlurmctld (re)starts slurmctld in the foreground and waits until it
// answers.
func (c *Controller) StartSlurmctld() {
	c.t.Helper()
	p := c.start("slurmctld", "slurmctld", "-D", "-f", c.Conf)
	up := waitFor(20*time.Second, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		out, _ := c.Scontrol("ping")
		return strings.Contains(out, "is UP")
	})
	select {
	case <-p.done:
		c.t.Fatalf("slurmctld exited at start: %v\n%s", p.cmd.ProcessState, c.Logs())
	default:
	}
	if !up {
		c.t.Fatalf("slurmctld did not answer 'scontrol ping' within 20s\n%s", c.Logs())
	}
}

// StopSlurmctld kills slurmctld (by PID) and waits for it to exit; munged
// keeps running.
func (c *Controller) StopSlurmctld() {
	c.stop("slurmctld")
}

// StopMunged kills munged (by PID) and waits for it to exit.
func (c *Controller) StopMunged() {
	c.stop("munged")
}

// Scontrol runs scontrol against this controller with a 30 s deadline and
// returns its combined output.
func (c *Controller) Scontrol(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Netns, "scontrol"}, args...)...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.Conf)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ShowNode returns `scontrol show node NAME -o`, failing the test on error.
func (c *Controller) ShowNode(name string) string {
	c.t.Helper()
	out, err := c.Scontrol("show", "node", name, "-o")
	if err != nil {
		c.t.Fatalf("scontrol show node %s -o: %v\n%s", name, err, out)
	}
	return strings.TrimSpace(out)
}

// Logs returns the daemons' logs and output, for failure messages.
func (c *Controller) Logs() string {
	var b strings.Builder
	for _, f := range []string{"slurmctld.log", "munge/munged.log"} {
		data, err := os.ReadFile(filepath.Join(c.Dir, f))
		if err == nil {
			fmt.Fprintf(&b, "--- %s\n%s", f, tail(data, 40))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, p := range c.procs {
		fmt.Fprintf(&b, "--- %s output\n%s", name, tail(p.out.Bytes(), 20))
	}
	return b.String()
}

func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func (c *Controller) run(args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// start runs a daemon in the foreground inside the namespace; ip netns exec
// execs it, so the PID is the daemon's.
func (c *Controller) start(name string, args ...string) *proc {
	c.t.Helper()
	p := &proc{done: make(chan struct{}), out: &bytes.Buffer{}}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", c.Netns}, args...)...)
	p.cmd.Env = append(os.Environ(), "SLURM_CONF="+c.Conf)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{&c.mu, p.out}, lockedWriter{&c.mu, p.out}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

// stop sends SIGTERM to one daemon by PID, SIGKILL after 5 s.
func (c *Controller) stop(name string) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (c *Controller) cleanup() {
	if c.t.Failed() {
		c.t.Logf("slurm test cluster in %s:\n%s", c.Dir, c.Logs())
	}
	c.stop("slurmctld")
	c.stop("munged")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec.CommandContext(ctx, "ip", "netns", "del", c.Netns).Run()
	os.RemoveAll(c.Dir)
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func suffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}
