package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config says how to reach the site's Slurm controller.
type Config struct {
	// Scontrol is the scontrol binary: a path, or a name looked up in PATH
	// (default "scontrol").
	Scontrol string
	// Conf is the cluster's slurm.conf, given to scontrol as SLURM_CONF;
	// empty leaves scontrol to its own default (/etc/slurm/slurm.conf or
	// configless DNS SRV lookup).
	Conf string
	// Netns, when set, runs scontrol inside `ip netns exec NETNS` (tests
	// run slurmctld in a namespace of their own).
	Netns string
	// Timeout bounds each scontrol call (default 20s). scontrol itself
	// gives up on an unreachable slurmctld after about MessageTimeout
	// (slurm.conf, default 10 s).
	Timeout time.Duration
	// Partition, when set, is a partition every registered node must be
	// in. A node already in it (Nodes=ALL, or a NodeSet whose Feature the
	// node has) is left alone; otherwise Register appends it to the
	// partition's Nodes=, which slurmctld forgets when it restarts from
	// slurm.conf, so prefer NodeSets with Features (see the package doc).
	Partition string
	// Features are added to every node's features (e.g. "rackstrap").
	Features []string
}

func (c Config) withDefaults() Config {
	if c.Scontrol == "" {
		c.Scontrol = "scontrol"
	}
	if c.Timeout == 0 {
		c.Timeout = 20 * time.Second
	}
	c.Features = slices.Clone(c.Features)
	return c
}

// Cluster is a Slurm cluster driven through scontrol.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	bin  string   // the program exec runs: scontrol, or ip with Netns
	pre  []string // arguments before scontrol's own: netns exec NS /path/scontrol
	env  []string
	part sync.Mutex // serialises read-modify-write of a partition's Nodes=
}

var netnsRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// New validates cfg and finds scontrol. It does not contact slurmctld.
func New(cfg Config, log *slog.Logger) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("slurm: timeout %s is negative; give a positive timeout, or 0 for the default 20s", cfg.Timeout)
	}
	if cfg.Partition != "" && !nameRE.MatchString(cfg.Partition) {
		return nil, fmt.Errorf("slurm: partition %q: use letters, digits, '.', '_' and '-'", cfg.Partition)
	}
	for _, f := range cfg.Features {
		if err := validFeature(f); err != nil {
			return nil, fmt.Errorf("slurm: cluster features: %w", err)
		}
	}
	if cfg.Conf != "" {
		if _, err := os.Stat(cfg.Conf); err != nil {
			return nil, fmt.Errorf("slurm: configuration: %w: %w; point it at the cluster's slurm.conf", ErrConfig, err)
		}
	}
	scontrol, err := exec.LookPath(cfg.Scontrol)
	if err != nil {
		return nil, fmt.Errorf("slurm: %w: %w; install Debian's slurm-client on the controller host, or set the scontrol path", ErrNotInstalled, err)
	}
	c := &Cluster{cfg: cfg, log: log, bin: scontrol}
	if cfg.Netns != "" {
		if !netnsRE.MatchString(cfg.Netns) {
			return nil, fmt.Errorf("slurm: network namespace %q is not a namespace name", cfg.Netns)
		}
		ip, err := exec.LookPath("ip")
		if err != nil {
			return nil, fmt.Errorf("slurm: running scontrol in namespace %s: %w: %w; install iproute2", cfg.Netns, ErrNotInstalled, err)
		}
		c.bin, c.pre = ip, []string{"netns", "exec", cfg.Netns, scontrol}
	}
	c.env = os.Environ()
	if cfg.Conf != "" {
		c.env = append(c.env, "SLURM_CONF="+cfg.Conf) // exec keeps the last of duplicates
	}
	return c, nil
}

// Action is what Reconcile did.
type Action string

const (
	Created   Action = "created"   // the node did not exist
	Unchanged Action = "unchanged" // the node existed with the same facts
	Updated   Action = "updated"   // address, Gres or features changed in place
	Replaced  Action = "replaced"  // CPU topology or memory changed: deleted and created again
)

// Register makes the node known to slurmctld as a dynamic CLOUD node with
// its facts, and confirms it by reading the node back. It is idempotent: a
// node that exists with the same facts is left alone; one whose address,
// Gres or features differ is updated in place; one whose CPUs, topology or
// memory differ (which scontrol cannot update) is deleted and created again,
// keeping a drain. The node's state is not changed: Resume makes it
// schedulable. key is the controller's idempotency key, logged with every
// change.
func (c *Cluster) Register(ctx context.Context, n Node, key string) error {
	_, err := c.Reconcile(ctx, n, key)
	return err
}

// Reconcile is Register, and also says what it did, for the audit log.
func (c *Cluster) Reconcile(ctx context.Context, n Node, key string) (Action, error) {
	const op = "register"
	if err := n.validate(); err != nil {
		err.(*Error).Op = op
		return "", err
	}
	n.Features = c.features(n.Features)
	cur, err := c.state(ctx, op, n.Name)
	var action Action
	var changes []string
	switch {
	case errors.Is(err, ErrNotFound):
		if _, err := c.scontrol(ctx, op, n.Name, createArgs(n)...); err != nil {
			return "", err
		}
		action = Created
	case err != nil:
		return "", err
	default:
		replace, update := diff(cur, n)
		changes = append(replace, update...)
		switch {
		case len(replace) > 0:
			if !cur.Dynamic() {
				return "", &Error{Op: op, Node: n.Name, Kind: ErrConflict,
					Err:    fmt.Errorf("node is defined in slurm.conf (State=%s) and differs: %s", cur.State, strings.Join(replace, ", ")),
					Remedy: "change or remove its NodeName line in slurm.conf; Rackstrap only replaces the dynamic nodes it creates"}
			}
			if _, err := c.scontrol(ctx, op, n.Name, "delete", "NodeName="+n.Name); err != nil && !errors.Is(err, ErrNotFound) {
				err.(*Error).Remedy = "changing CPUs or memory re-creates the node: drain it and wait for its jobs to end (squeue -w " +
					n.Name + "); " + err.(*Error).Remedy
				return "", err
			}
			if _, err := c.scontrol(ctx, op, n.Name, createArgs(n)...); err != nil {
				return "", err
			}
			if cur.Drained() {
				reason := cur.Reason
				if reason == "" {
					reason = "rackstrap: drained before re-registration"
				}
				if _, err := c.scontrol(ctx, op, n.Name, "update", "NodeName="+n.Name, "State=DRAIN", "Reason="+reason); err != nil {
					return "", err
				}
			}
			action = Replaced
		case len(update) > 0:
			if !cur.Dynamic() {
				return "", &Error{Op: op, Node: n.Name, Kind: ErrConflict,
					Err:    fmt.Errorf("node is defined in slurm.conf (State=%s) and differs: %s", cur.State, strings.Join(update, ", ")),
					Remedy: "change its NodeName line in slurm.conf; Rackstrap only changes the dynamic nodes it creates"}
			}
			args := []string{"update", "NodeName=" + n.Name}
			if cur.Addr != n.Addr {
				args = append(args, "NodeAddr="+n.Addr)
			}
			if gresNames(cur.Gres) != gresNames(n.gres()) {
				args = append(args, "Gres="+n.gres())
			}
			if !sameSet(cur.Features, n.Features) {
				f := strings.Join(n.Features, ",")
				args = append(args, "AvailableFeatures="+f, "ActiveFeatures="+f)
			}
			if _, err := c.scontrol(ctx, op, n.Name, args...); err != nil {
				return "", err
			}
			action = Updated
		default:
			action = Unchanged
		}
	}
	got := cur
	if action != Unchanged {
		got, err = c.state(ctx, op, n.Name)
		if errors.Is(err, ErrNotFound) {
			return "", &Error{Op: op, Node: n.Name, Kind: ErrNotApplied, Err: errors.New("scontrol create succeeded but slurmctld does not show the node"),
				Remedy: "slurmctld's log says why: raise MaxNodeCount in slurm.conf if the node table is full, and set PrivateData=cloud so powered-down CLOUD nodes are shown"}
		}
		if err != nil {
			return "", err
		}
		if replace, update := diff(got, n); len(replace)+len(update) > 0 {
			remedy := "slurmctld's log says why it kept the old values"
			if gresNames(got.Gres) != gresNames(n.gres()) {
				remedy = "slurm.conf needs GresTypes=gpu for GPU nodes; " + remedy
			}
			return "", &Error{Op: op, Node: n.Name, Kind: ErrNotApplied,
				Err: fmt.Errorf("slurmctld shows the node %s", strings.Join(append(replace, update...), ", ")), Remedy: remedy}
		}
	}
	if err := c.ensurePartition(ctx, got, key); err != nil {
		return "", err
	}
	if action == Unchanged {
		c.log.Info("slurm node already registered", "node", n.Name, "action", action, "key", key)
	} else {
		c.log.Info("slurm node registered", "node", n.Name, "action", action, "key", key, "gres", n.gres(),
			"features", strings.Join(n.Features, ","), "changes", changes)
	}
	return action, nil
}

// features is the cluster's features followed by the node's, without
// repeats.
func (c *Cluster) features(node []string) []string {
	var out []string
	for _, f := range append(slices.Clone(c.cfg.Features), node...) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// createArgs are the arguments of `scontrol create` for n. Slurm 22.05
// creates dynamic nodes only in State=FUTURE or State=CLOUD; CLOUD nodes
// are schedulable once resumed and are shown by `scontrol show node` (with
// PrivateData=cloud), FUTURE ones only with -F.
func createArgs(n Node) []string {
	args := []string{"create", "NodeName=" + n.Name, "NodeAddr=" + n.Addr, "CPUs=" + strconv.Itoa(n.CPUs)}
	if n.Sockets > 0 {
		args = append(args, "Sockets="+strconv.Itoa(n.Sockets), "CoresPerSocket="+strconv.Itoa(n.CoresPerSocket),
			"ThreadsPerCore="+strconv.Itoa(n.ThreadsPerCore))
	}
	args = append(args, "RealMemory="+strconv.Itoa(n.RealMemoryMiB))
	if g := n.gres(); g != "" {
		args = append(args, "Gres="+g)
	}
	if len(n.Features) > 0 {
		args = append(args, "Feature="+strings.Join(n.Features, ","))
	}
	return append(args, "State=CLOUD")
}

// diff compares the node slurmctld shows with the wanted one: replace lists
// the differences scontrol cannot update in place, update those it can.
func diff(cur NodeState, n Node) (replace, update []string) {
	ne := func(list *[]string, field string, got, want any) {
		if got != want {
			*list = append(*list, fmt.Sprintf("%s=%v (want %v)", field, got, want))
		}
	}
	ne(&replace, "CPUTot", cur.CPUs, n.CPUs)
	if n.Sockets > 0 {
		ne(&replace, "Sockets", cur.Sockets, n.Sockets)
		ne(&replace, "CoresPerSocket", cur.CoresPerSocket, n.CoresPerSocket)
		ne(&replace, "ThreadsPerCore", cur.ThreadsPerCore, n.ThreadsPerCore)
	}
	ne(&replace, "RealMemory", cur.RealMemoryMiB, n.RealMemoryMiB)
	ne(&update, "NodeAddr", cur.Addr, n.Addr)
	ne(&update, "Gres", gresNames(cur.Gres), gresNames(n.gres()))
	if !sameSet(cur.Features, n.Features) {
		update = append(update, fmt.Sprintf("AvailableFeatures=%s (want %s)", strings.Join(cur.Features, ","), strings.Join(n.Features, ",")))
	}
	return replace, update
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// ensurePartition puts the node into Config.Partition when it is not
// already there.
func (c *Cluster) ensurePartition(ctx context.Context, got NodeState, key string) error {
	const op = "register"
	p := c.cfg.Partition
	if p == "" || slices.Contains(got.Partitions, p) {
		return nil
	}
	c.part.Lock()
	defer c.part.Unlock()
	out, err := c.scontrol(ctx, op, got.Name, "show", "partition", p, "-o")
	if errors.Is(err, ErrNotFound) {
		err.(*Error).Remedy = fmt.Sprintf("define PartitionName=%s in slurm.conf (Nodes=ALL, or a NodeSet by Feature), or change Rackstrap's Slurm partition", p)
	}
	if err != nil {
		return err
	}
	var f map[string]string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "PartitionName="+p+" ") {
			f, _, err = ParseFields(line)
			break
		}
	}
	if f == nil || err != nil {
		return &Error{Op: op, Node: got.Name, Cmd: "scontrol show partition " + p + " -o", Output: out,
			Err: fmt.Errorf("unreadable partition line: %v", err), Remedy: "check that scontrol and slurmctld are Slurm 22.05 or later"}
	}
	if ns := value(f["NodeSets"]); ns != "" {
		return &Error{Op: op, Node: got.Name, Kind: ErrConflict, Err: fmt.Errorf("partition %s is made of NodeSets=%s", p, ns),
			Remedy: "give the node the NodeSet's Feature (Rackstrap's Slurm features) instead of naming the partition"}
	}
	nodes := got.Name
	if cur := value(f["Nodes"]); cur != "" {
		nodes = cur + "," + got.Name
	}
	if _, err := c.scontrol(ctx, op, got.Name, "update", "PartitionName="+p, "Nodes="+nodes); err != nil {
		return err
	}
	after, err := c.state(ctx, op, got.Name)
	if err != nil {
		return err
	}
	if !slices.Contains(after.Partitions, p) {
		return &Error{Op: op, Node: got.Name, Kind: ErrNotApplied, Err: fmt.Errorf("node is in partitions %v, not %s", after.Partitions, p),
			Remedy: "slurmctld's log says why"}
	}
	c.log.Info("slurm node added to partition", "node", got.Name, "partition", p, "key", key)
	return nil
}

// Resume makes a drained or down node schedulable (`scontrol update
// State=RESUME`) and confirms it is no longer drained. A node that is
// neither is left alone: 22.05 refuses RESUME on it.
func (c *Cluster) Resume(ctx context.Context, name string) error {
	const op = "resume"
	cur, err := c.state(ctx, op, name)
	if err != nil {
		return err
	}
	if !cur.Drained() && !cur.Has("DOWN") && !cur.Has("FAIL") {
		c.log.Debug("slurm node already resumed", "node", name, "state", cur.State)
		return nil
	}
	if _, err := c.scontrol(ctx, op, name, "update", "NodeName="+name, "State=RESUME"); err != nil {
		return err
	}
	got, err := c.state(ctx, op, name)
	if err != nil {
		return err
	}
	if got.Drained() {
		return &Error{Op: op, Node: name, Kind: ErrNotApplied, Err: fmt.Errorf("still State=%s Reason=%q", got.State, got.Reason),
			Remedy: "slurmctld's log says why it kept the drain"}
	}
	c.log.Info("slurm node resumed", "node", name, "was", cur.State, "reason", cur.Reason, "state", got.State)
	return nil
}

// Drain stops new jobs going to the node (`scontrol update State=DRAIN
// Reason=…`; running jobs finish) and confirms the drain. A node already
// drained for the same reason is left alone.
func (c *Cluster) Drain(ctx context.Context, name, reason string) error {
	const op = "drain"
	reason = cleanReason(reason)
	if reason == "" {
		return &Error{Op: op, Node: name, Kind: ErrInvalid, Err: errors.New("no reason"), Remedy: "Slurm needs a reason to drain a node; give one"}
	}
	cur, err := c.state(ctx, op, name)
	if err != nil {
		return err
	}
	if cur.Drained() && cur.Reason == reason {
		c.log.Debug("slurm node already drained", "node", name, "reason", reason)
		return nil
	}
	if _, err := c.scontrol(ctx, op, name, "update", "NodeName="+name, "State=DRAIN", "Reason="+reason); err != nil {
		return err
	}
	got, err := c.state(ctx, op, name)
	if err != nil {
		return err
	}
	if !got.Drained() {
		return &Error{Op: op, Node: name, Kind: ErrNotApplied, Err: fmt.Errorf("State=%s after the drain", got.State),
			Remedy: "slurmctld's log says why"}
	}
	c.log.Info("slurm node drained", "node", name, "reason", reason, "state", got.State)
	return nil
}

// cleanReason makes a reason one line of single spaces, at most 256 bytes.
func cleanReason(r string) string {
	r = strings.Join(strings.Fields(r), " ")
	if len(r) > 256 {
		r = strings.ToValidUTF8(r[:256], "")
	}
	return r
}

// Remove deletes the node from slurmctld (`scontrol delete`), which also
// takes it out of its partitions. A node slurmctld does not know is already
// removed. slurmctld refuses while jobs run on it: Drain first and let them
// finish.
func (c *Cluster) Remove(ctx context.Context, name string) error {
	const op = "remove"
	cur, err := c.state(ctx, op, name)
	switch {
	case err == nil && !cur.Dynamic():
		return &Error{Op: op, Node: name, Kind: ErrConflict, Err: fmt.Errorf("node is defined in slurm.conf (State=%s)", cur.State),
			Remedy: "remove its NodeName line from slurm.conf and restart slurmctld; Rackstrap only deletes the dynamic nodes it creates"}
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	// Delete even when not shown: without PrivateData=cloud slurmctld
	// hides powered-down CLOUD nodes yet deletes them.
	if _, err := c.scontrol(ctx, op, name, "delete", "NodeName="+name); err != nil {
		if errors.Is(err, ErrNotFound) {
			c.log.Debug("slurm node already removed", "node", name)
			return nil
		}
		err.(*Error).Remedy = "drain the node and wait for its jobs to end (squeue -w " + name + "); " + err.(*Error).Remedy
		return err
	}
	if _, err := c.state(ctx, op, name); !errors.Is(err, ErrNotFound) {
		if err != nil {
			return err
		}
		return &Error{Op: op, Node: name, Kind: ErrNotApplied, Err: errors.New("slurmctld still shows the node after scontrol delete"),
			Remedy: "slurmctld's log says why"}
	}
	c.log.Info("slurm node removed", "node", name, "was", cur.State)
	return nil
}

// State reads the node back from slurmctld (`scontrol show node NAME -o`).
// A node slurmctld does not show is an error matching ErrNotFound.
func (c *Cluster) State(ctx context.Context, name string) (NodeState, error) {
	return c.state(ctx, "state", name)
}

func (c *Cluster) state(ctx context.Context, op, name string) (NodeState, error) {
	if err := validName(name); err != nil {
		return NodeState{}, &Error{Op: op, Node: name, Kind: ErrInvalid, Err: err, Remedy: "use the node's Slurm name"}
	}
	out, err := c.scontrol(ctx, op, name, "show", "node", name, "-o")
	if err != nil {
		return NodeState{}, err
	}
	for _, line := range strings.Split(out, "\n") {
		if line == "NodeName="+name || strings.HasPrefix(line, "NodeName="+name+" ") {
			s, err := ParseNode(line)
			if err != nil {
				return NodeState{}, &Error{Op: op, Node: name, Cmd: "scontrol show node " + name + " -o", Output: line, Err: err,
					Remedy: "check that scontrol and slurmctld are Slurm 22.05 or later"}
			}
			return s, nil
		}
	}
	return NodeState{}, &Error{Op: op, Node: name, Cmd: "scontrol show node " + name + " -o", Output: out, Kind: ErrNotFound,
		Err: ErrNotFound, Remedy: notFoundRemedy}
}

// scontrol runs scontrol with args under Config.Timeout and returns its
// standard output. Failures are *Error with what scontrol printed.
func (c *Cluster) scontrol(ctx context.Context, op, node string, args ...string) (string, error) {
	runCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, c.bin, append(slices.Clone(c.pre), args...)...)
	cmd.Env = c.env
	cmd.WaitDelay = time.Second // a killed scontrol's stray children must not hold the pipes
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	c.log.Debug("scontrol", "args", args, "took", time.Since(start).Round(time.Millisecond), "err", err)
	if err == nil {
		return stdout.String(), nil
	}
	e := &Error{Op: op, Node: node, Cmd: "scontrol " + quoteArgs(args), Output: strings.TrimSpace(stderr.String())}
	if out := strings.TrimSpace(stdout.String()); out != "" && !strings.HasPrefix(out, "NodeName=") {
		e.Output = strings.TrimSpace(out + "\n" + e.Output) // "Node x not found" goes to stdout
	}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		e.Err = ctx.Err()
	case runCtx.Err() != nil:
		e.Kind, e.Err = ErrTimeout, fmt.Errorf("no answer within %s", c.cfg.Timeout)
		e.Remedy = "check that slurmctld runs and answers ('scontrol ping'); raise Rackstrap's Slurm timeout if it is only slow"
	case !errors.As(err, &exit):
		e.Kind, e.Err = ErrNotInstalled, err
		e.Remedy = "install Debian's slurm-client on the controller host, or set the scontrol path"
	default:
		e.Err = err
		e.Kind, e.Remedy = c.classify(e.Output)
	}
	return "", e
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t\"'") {
			k, v, _ := strings.Cut(a, "=")
			a = k + "=" + strconv.Quote(v)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
