// Package slurmlocal runs a private, throw-away Slurm controller on this
// machine: Debian's slurmctld (22.05) and munged, started in the foreground
// inside a network namespace, with every file in one temporary directory.
// `rackstrap demo` hands its simulated rack to one, the end-to-end test its
// QEMU machine, and the Slurm tests (test/cluster/slurmtest) their nodes.
//
// Nothing it starts is reachable from outside the namespace: slurmctld
// listens on every address of the namespace it runs in (Slurm has no bind
// address), so it always runs in one, either a private namespace Start
// creates (and Close deletes) or one the caller made. The namespace needs a
// non-loopback address: with only lo, getaddrinfo's AI_ADDRCONFIG fails and
// slurmctld dies "Unable to resolve "(null)"", so a private namespace gets a
// veth pair with 10.223.0.1/24.
//
// The configuration is the one cluster/slurm needs (see its package doc):
// dynamic nodes (MaxNodeCount), GresTypes=gpu, PrivateData=cloud, and one
// partition with Nodes=ALL. munged and slurmctld run as root (SlurmUser=root),
// the only user Check accepts: namespaces need CAP_SYS_ADMIN.
//
// Close kills both daemons by PID (SIGTERM, then SIGKILL), deletes the
// namespace it created and removes the directory; it is safe to call more
// than once and after a failed Start.
package slurmlocal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Partition is the default partition of the local cluster (Nodes=ALL).
const Partition = "batch"

// Port is slurmctld's port inside the namespace.
const Port = 16817

// Sentinels for errors.Is: Check's reasons a local controller cannot run.
var (
	// ErrNotInstalled: slurmctld, scontrol, munged or ip is missing.
	ErrNotInstalled = errors.New("slurm controller not installed")
	// ErrNotRoot: network namespaces need root.
	ErrNotRoot = errors.New("not running as root")
)

// binaries maps each program Start runs to its Debian package.
var binaries = map[string]string{"slurmctld": "slurmctld", "scontrol": "slurm-client", "munged": "munge", "ip": "iproute2"}

// Options change the local cluster.
type Options struct {
	// Netns is an existing network namespace to run the daemons in, with
	// a non-loopback address; the caller owns it. Empty: Start creates a
	// private one and Close deletes it.
	Netns string
	// Extra lines appended to slurm.conf (e.g. another partition).
	Extra []string
	// NoPrivateDataCloud leaves PrivateData=cloud out, as a site that
	// forgot it would.
	NoPrivateDataCloud bool
	// NoGresTypes leaves GresTypes=gpu out.
	NoGresTypes bool
	// MaxNodeCount is the dynamic node table's size (default 64).
	MaxNodeCount int
	// MessageTimeout is slurm.conf's MessageTimeout in seconds: about how
	// long scontrol waits for an absent slurmctld (default 10, Slurm's).
	MessageTimeout int
	// StartTimeout bounds each daemon's start: munged's socket, then
	// slurmctld answering 'scontrol ping' (default 60s: generous on a
	// loaded machine; the start takes about a second).
	StartTimeout time.Duration
	// TempDir is where the cluster's directory is made (default
	// os.TempDir()). Keep it short: munged's socket path must fit in
	// 108 bytes.
	TempDir string
	// DieWithParent asks the kernel to kill the daemons when the process
	// that started them dies (PR_SET_PDEATHSIG), so a killed demo leaves
	// no slurmctld behind. Only for programs that never end a locked OS
	// thread: the signal follows the thread that started the daemon.
	DieWithParent bool
}

func (o Options) withDefaults() Options {
	if o.MaxNodeCount == 0 {
		o.MaxNodeCount = 64
	}
	if o.MessageTimeout == 0 {
		o.MessageTimeout = 10
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	o.Extra = slices.Clone(o.Extra)
	return o
}

// Cluster is a running local slurmctld with its munged.
type Cluster struct {
	Dir   string // the temporary directory: slurm.conf, state, logs, munge key and socket
	Conf  string // slurm.conf: give it to scontrol as SLURM_CONF
	Netns string // the namespace slurmctld listens in (127.0.0.1:16817 there)

	opt      Options
	ownNetns bool
	mu       sync.Mutex
	procs    map[string]*proc
	closed   bool
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *bytes.Buffer
}

// Check says whether a local controller can run here: every program
// installed and root. Its error matches ErrNotInstalled or ErrNotRoot and
// says what to do.
func Check() error {
	// root first: without it the programs may merely be off PATH (/usr/sbin)
	if os.Geteuid() != 0 {
		return fmt.Errorf("slurmlocal: %w: slurmctld runs in a network namespace of its own, which needs root; run as root", ErrNotRoot)
	}
	var missing []string
	for _, bin := range slices.Sorted(maps.Keys(binaries)) {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		var pkgs []string
		for _, m := range missing {
			if !slices.Contains(pkgs, binaries[m]) {
				pkgs = append(pkgs, binaries[m])
			}
		}
		return fmt.Errorf("slurmlocal: %w: %s not found; install them with 'apt-get install %s'", ErrNotInstalled,
			strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return nil
}

// Start starts munged and slurmctld and returns once `scontrol ping` says
// UP. On failure everything it started is stopped and removed, and the
// error carries the daemons' logs.
func Start(ctx context.Context, opt Options) (_ *Cluster, err error) {
	if err := Check(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	dir, err := os.MkdirTemp(opt.TempDir, "rackstrap-slurm-")
	if err != nil {
		return nil, fmt.Errorf("slurmlocal: %w", err)
	}
	sweep(filepath.Dir(dir))
	if err := searchable(dir); err != nil {
		os.Remove(dir)
		return nil, err
	}
	c := &Cluster{Dir: dir, Conf: filepath.Join(dir, "slurm.conf"), Netns: opt.Netns, opt: opt, procs: map[string]*proc{}}
	defer func() {
		if err != nil {
			logs := c.Logs()
			c.Close()
			err = fmt.Errorf("%w\n%s", err, logs)
		}
	}()
	// munged refuses a socket directory others cannot search, and key,
	// log and seed files others can write.
	for _, d := range []string{dir, filepath.Join(dir, "munge"), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("slurmlocal: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("slurmlocal: %w", err)
		}
	}
	if c.Netns == "" {
		c.Netns, c.ownNetns = "rs-slurm-"+suffix(), true
	}
	// what a sweep by a later Start needs if this process is killed
	owner := fmt.Sprintf("%d %s\n", os.Getpid(), c.Netns)
	if !c.ownNetns {
		owner = fmt.Sprintf("%d\n", os.Getpid())
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
		return nil, fmt.Errorf("slurmlocal: %w", err)
	}
	if c.ownNetns {
		for _, args := range [][]string{
			{"netns", "add", c.Netns},
			{"-n", c.Netns, "link", "set", "lo", "up"},
			{"-n", c.Netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
			{"-n", c.Netns, "addr", "add", "10.223.0.1/24", "dev", "v0"},
			{"-n", c.Netns, "link", "set", "v0", "up"},
			{"-n", c.Netns, "link", "set", "v1", "up"},
		} {
			if err := run(ctx, "ip", args...); err != nil {
				return nil, err
			}
		}
	}

	key := make([]byte, 1024)
	rand.Read(key)
	m := filepath.Join(dir, "munge")
	if err := os.WriteFile(filepath.Join(m, "munge.key"), key, 0o600); err != nil {
		return nil, fmt.Errorf("slurmlocal: %w", err)
	}
	sock := filepath.Join(m, "munge.sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("slurmlocal: munged's socket path %s is longer than a Unix socket allows; use a shorter temporary directory", sock)
	}
	p, err := c.start("munged", "munged", "--foreground", "--socket="+sock, "--key-file="+filepath.Join(m, "munge.key"),
		"--pid-file="+filepath.Join(m, "munged.pid"), "--log-file="+filepath.Join(m, "munged.log"),
		"--seed-file="+filepath.Join(m, "seed"))
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, opt.StartTimeout, p, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return nil, fmt.Errorf("slurmlocal: munged did not create %s: %w", sock, err)
	}

	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("slurmlocal: %w", err)
	}
	host, _, _ = strings.Cut(host, ".")
	conf := []string{
		"ClusterName=rackstrap",
		fmt.Sprintf("SlurmctldHost=%s(127.0.0.1)", host),
		fmt.Sprintf("SlurmctldPort=%d", Port),
		fmt.Sprintf("SlurmdPort=%d", Port+1),
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
		fmt.Sprintf("MessageTimeout=%d", opt.MessageTimeout),
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
		return nil, fmt.Errorf("slurmlocal: %w", err)
	}
	if err := c.StartSlurmctld(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// StartSlurmctld (re)starts slurmctld in the foreground and waits until it
// answers 'scontrol ping'.
func (c *Cluster) StartSlurmctld(ctx context.Context) error {
	p, err := c.start("slurmctld", "slurmctld", "-D", "-f", c.Conf)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, c.opt.StartTimeout, p, func() bool {
		out, _ := c.Scontrol(ctx, "ping")
		return strings.Contains(out, "is UP")
	}); err != nil {
		return fmt.Errorf("slurmlocal: slurmctld did not answer 'scontrol ping': %w", err)
	}
	return nil
}

// StopSlurmctld kills slurmctld (by PID) and waits for it to exit; munged
// keeps running.
func (c *Cluster) StopSlurmctld() { c.stop("slurmctld") }

// StopMunged kills munged (by PID) and waits for it to exit.
func (c *Cluster) StopMunged() { c.stop("munged") }

// Scontrol runs scontrol against this controller (at most 30 s) and returns
// its combined output.
func (c *Cluster) Scontrol(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Netns, "scontrol"}, args...)...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.Conf)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("scontrol %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Nodes returns every node slurmctld shows, one `scontrol show nodes -o`
// line each (slurm.ParseNode reads them), sorted by name.
func (c *Cluster) Nodes(ctx context.Context) ([]string, error) {
	out, err := c.Scontrol(ctx, "show", "nodes", "-o")
	if err != nil {
		return nil, err
	}
	return NodeLines(out), nil
}

// NodeLines splits the output of `scontrol show nodes -o` into its node
// lines, sorted; "No nodes in the system" is none.
func NodeLines(out string) []string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "NodeName=") {
			lines = append(lines, line)
		}
	}
	sort.Strings(lines)
	return lines
}

// Logs returns the end of the daemons' logs and output, for error messages.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, f := range []string{"slurmctld.log", "munge/munged.log"} {
		data, err := os.ReadFile(filepath.Join(c.Dir, f))
		if err == nil {
			fmt.Fprintf(&b, "--- %s\n%s", f, tail(data, 40))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(c.procs)) {
		fmt.Fprintf(&b, "--- %s output\n%s", name, tail(c.procs[name].out.Bytes(), 20))
	}
	return b.String()
}

// Close stops both daemons, deletes the namespace Start created and removes
// the directory. It may be called more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stop("slurmctld")
	c.stop("munged")
	var errs []error
	if c.ownNetns {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := run(ctx, "ip", "netns", "del", c.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("slurmlocal: %w", err))
	}
	return errors.Join(errs...)
}

// ownerFile in a cluster's directory holds the PID of the process that
// started it and the namespace Start created for it, if any.
const ownerFile = "owner"

var ownNetnsRE = regexp.MustCompile(`^rs-slurm-[0-9a-f]{8}$`)

// sweep removes what clusters of processes that died without Close (a
// SIGKILL) left in tmp: their namespace and directory. The daemons died with
// them (DieWithParent) or are killed here when still in the namespace. A
// directory whose owner still runs, or that has no owner file, is left
// alone.
func sweep(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "rackstrap-slurm-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if len(f) > 1 && ownNetnsRE.MatchString(f[1]) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", f[1]).Output(); err == nil {
				for _, p := range strings.Fields(string(out)) {
					if n, err := strconv.Atoi(p); err == nil && n > 0 {
						syscall.Kill(n, syscall.SIGKILL)
					}
				}
			}
			exec.CommandContext(ctx, "ip", "netns", "del", f[1]).Run()
			cancel()
		}
		os.RemoveAll(d)
	}
}

// searchable checks that every directory above dir lets others search it:
// munged refuses a socket it cannot prove others may reach.
func searchable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("slurmlocal: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("slurmlocal: munged needs every directory above its socket searchable by all, and %s is %s: "+
				"run 'chmod o+x %s' or choose another temporary directory (TMPDIR)", d, fi.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("slurmlocal: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start runs a daemon in the foreground inside the namespace; ip netns exec
// execs it, so the PID is the daemon's. It runs in a process group of its
// own, so a Ctrl-C at the terminal reaches the program that started it,
// which stops it in order.
func (c *Cluster) start(name string, args ...string) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("slurmlocal: start %s: the cluster is closed", name)
	}
	p := &proc{done: make(chan struct{}), out: &bytes.Buffer{}}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", c.Netns}, args...)...)
	p.cmd.Env = append(os.Environ(), "SLURM_CONF="+c.Conf)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{&c.mu, p.out}, lockedWriter{&c.mu, p.out}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.opt.DieWithParent {
		p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("slurmlocal: start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	if old := c.procs[name]; old != nil {
		// a restart: the old one must be gone (StopSlurmctld) for the
		// port; keep nothing of it but its exit
		select {
		case <-old.done:
		default:
			old.cmd.Process.Kill()
		}
	}
	c.procs[name] = p
	return p, nil
}

// stop sends SIGTERM to one daemon by PID, SIGKILL after 10 s, and waits
// for it to exit.
func (c *Cluster) stop(name string) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
	}
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

// waitFor polls cond until it holds, the daemon p exits, ctx ends or limit
// passes.
func waitFor(ctx context.Context, limit time.Duration, p *proc, cond func() bool) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-p.done:
			if cond() {
				return nil
			}
			return fmt.Errorf("it exited (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			if cond() {
				return nil
			}
			return fmt.Errorf("not within %s; its log below says why", limit)
		case <-tick.C:
		}
	}
}
