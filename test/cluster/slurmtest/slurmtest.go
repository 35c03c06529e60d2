// Package slurmtest starts a real, throw-away Slurm controller for tests:
// Debian's slurmctld (22.05) and munged, through cluster/slurm/slurmlocal,
// in a network namespace of their own (or one the test made) with their
// files in a temporary directory. Everything is torn down in t.Cleanup,
// even when the test fails: both daemons killed by PID, the namespace
// deleted, the directory removed. `make test` installs the packages
// (test/apt-packages.txt: slurmctld, munge).
//
// The configuration follows /work/shared/RECIPES.md §4 (slurmlocal's
// package doc has it): dynamic nodes (MaxNodeCount), GresTypes=gpu,
// PrivateData=cloud (so powered-down CLOUD nodes are shown), one partition
// with Nodes=ALL.
package slurmtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cluster/slurm/slurmlocal"
)

// Partition is the default partition of the test cluster (Nodes=ALL).
const Partition = slurmlocal.Partition

// Options change the test cluster's slurm.conf.
type Options struct {
	// Netns is a network namespace the test made (with a non-loopback
	// address) to run slurmctld in, beside the test's own daemons; empty:
	// a private one.
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
}

// Controller is a running slurmctld with its munged.
type Controller struct {
	Dir   string // the temporary directory with slurm.conf, state and logs
	Conf  string // slurm.conf: give it to scontrol as SLURM_CONF
	Netns string // the namespace slurmctld listens in (127.0.0.1:16817)

	t testing.TB
	c *slurmlocal.Cluster
}

// Require fails the test unless the binaries the controller needs are
// installed and the test runs as root (network namespaces need
// CAP_NET_ADMIN).
func Require(t testing.TB) {
	t.Helper()
	if err := slurmlocal.Check(); err != nil {
		t.Fatalf("%v (make test-deps installs test/apt-packages.txt; run make test as root)", err)
	}
}

// Start starts munged and slurmctld and waits until `scontrol ping` says UP.
func Start(t testing.TB, opt Options) *Controller {
	t.Helper()
	Require(t)
	// scontrol gives up on a controller that does not answer after about
	// MessageTimeout; the default 10 s slows the failure tests.
	c, err := slurmlocal.Start(context.Background(), slurmlocal.Options{Netns: opt.Netns, Extra: opt.Extra,
		NoPrivateDataCloud: opt.NoPrivateDataCloud, NoGresTypes: opt.NoGresTypes, MaxNodeCount: opt.MaxNodeCount,
		MessageTimeout: 3, StartTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctl := &Controller{Dir: c.Dir, Conf: c.Conf, Netns: c.Netns, t: t, c: c}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slurm test cluster in %s:\n%s", c.Dir, c.Logs())
		}
		if err := c.Close(); err != nil {
			t.Errorf("stopping the slurm test cluster: %v", err)
		}
	})
	return ctl
}

// Local is the running cluster, for what this package does not wrap.
func (c *Controller) Local() *slurmlocal.Cluster { return c.c }

// StartSlurmctld (re)starts slurmctld in the foreground and waits until it
// answers.
func (c *Controller) StartSlurmctld() {
	c.t.Helper()
	if err := c.c.StartSlurmctld(context.Background()); err != nil {
		c.t.Fatalf("%v\n%s", err, c.Logs())
	}
}

// StopSlurmctld kills slurmctld (by PID) and waits for it to exit; munged
// keeps running.
func (c *Controller) StopSlurmctld() { c.c.StopSlurmctld() }

// StopMunged kills munged (by PID) and waits for it to exit.
func (c *Controller) StopMunged() { c.c.StopMunged() }

// Scontrol runs scontrol against this controller with a 30 s deadline and
// returns its combined output.
func (c *Controller) Scontrol(args ...string) (string, error) {
	return c.c.Scontrol(context.Background(), args...)
}

// ShowNode returns `scontrol show node NAME -o`, failing the test on error.
func (c *Controller) ShowNode(name string) string {
	c.t.Helper()
	out, err := c.Scontrol("show", "node", name, "-o")
	if err != nil {
		c.t.Fatalf("scontrol show node %s -o: %v", name, err)
	}
	return strings.TrimSpace(out)
}

// Logs returns the daemons' logs and output, for failure messages.
func (c *Controller) Logs() string { return c.c.Logs() }
