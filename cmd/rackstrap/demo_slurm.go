package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/cluster/slurm/slurmlocal"
)

// The demo's --slurm modes.
const (
	demoSlurmOff  = "off"  // the rack ends at Ready
	demoSlurmAuto = "auto" // hand off when a private slurmctld can run here, else say why and end at Ready
	demoSlurmOn   = "on"   // hand off; fail when a private slurmctld cannot run
)

// demoSlurmHint is how to get the hand-off when it was skipped.
const demoSlurmHint = "to see it handed to a real Slurm controller, run the demo as root with slurmctld and munge installed " +
	"('apt-get install slurmctld munge'; 'make demo' installs them as root on Debian)"

// demoSlurm is the demo's private Slurm controller, started beside the
// rack's preparation.
type demoSlurm struct {
	mode    string
	skipped string // why there is no hand-off ("" when there is one)
	cancel  context.CancelFunc
	started chan struct{}
	cluster *slurmlocal.Cluster
	err     error
}

func validDemoSlurmMode(mode string) error {
	switch mode {
	case demoSlurmOff, demoSlurmAuto, demoSlurmOn:
		return nil
	}
	return fmt.Errorf("--slurm %q: use auto, on or off", mode)
}

// startDemoSlurm starts a private slurmctld in the background unless mode
// is off or one cannot run here (then skipped says why).
func startDemoSlurm(ctx context.Context, mode string) (*demoSlurm, error) {
	s := &demoSlurm{mode: mode, started: make(chan struct{})}
	if mode == demoSlurmOff {
		s.skipped = "--slurm off"
		close(s.started)
		return s, nil
	}
	if err := slurmlocal.Check(); err != nil {
		if mode == demoSlurmOn {
			return nil, fmt.Errorf("demo --slurm on: %w", err)
		}
		s.skipped = err.Error()
		close(s.started)
		return s, nil
	}
	ctx, s.cancel = context.WithCancel(ctx)
	go func() {
		defer close(s.started)
		// a demo killed outright must not leave slurmctld running
		s.cluster, s.err = slurmlocal.Start(ctx, slurmlocal.Options{DieWithParent: true})
	}()
	return s, nil
}

// wait returns the Slurm configuration the controller hands off to, or nil
// when there is no hand-off (skipped then says why). A start that failed
// fails the demo only with --slurm on.
func (s *demoSlurm) wait(ctx context.Context) (*slurm.Config, error) {
	select {
	case <-s.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.err != nil {
		if s.mode == demoSlurmOn || ctx.Err() != nil {
			return nil, fmt.Errorf("demo: start a private slurmctld: %w", s.err)
		}
		s.skipped = "the private slurmctld did not start: " + firstLine(s.err.Error())
		return nil, nil
	}
	if s.cluster == nil {
		return nil, nil
	}
	c := s.cluster
	return &slurm.Config{Conf: c.Conf, Netns: c.Netns, Features: []string{"rackstrap"}, Timeout: time.Minute}, nil
}

// Close stops the private slurmctld and munged and removes their namespace
// and directory, waiting for a start still under way.
func (s *demoSlurm) Close() error {
	if s == nil {
		return nil
	}
	if s.cancel != nil {
		s.cancel()
	}
	<-s.started
	if s.cluster != nil {
		return s.cluster.Close()
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// header says where handed-off nodes go, or why none are.
func (s *demoSlurm) header(out io.Writer) {
	if s.mode == demoSlurmOff {
		return
	}
	if s.cluster == nil {
		fmt.Fprintf(out, "Slurm hand-off skipped: %s\n  The rack ends at Ready; %s\n", strings.TrimPrefix(s.skipped, "slurmlocal: "), demoSlurmHint)
		return
	}
	fmt.Fprintf(out, "Slurm: a private slurmctld (network namespace %s, files in %s) receives every validated node\n",
		s.cluster.Netns, s.cluster.Dir)
}

// summary prints the nodes as slurmctld shows them (`scontrol show nodes`).
func (s *demoSlurm) summary(ctx context.Context, out io.Writer) error {
	if s.cluster == nil {
		if s.mode != demoSlurmOff {
			fmt.Fprintf(out, "\nSlurm hand-off was skipped: %s\n  %s\n", strings.TrimPrefix(s.skipped, "slurmlocal: "), demoSlurmHint)
		}
		return nil
	}
	lines, err := s.cluster.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("demo: read the nodes back from slurmctld: %w", err)
	}
	fmt.Fprintf(out, "\nSlurm nodes (scontrol show nodes, private slurmctld in namespace %s)\n", s.cluster.Netns)
	if err := slurmTable(out, lines); err != nil {
		return err
	}
	if len(lines) > 0 {
		fmt.Fprintln(out, "  (dynamic CLOUD nodes, not drained: no slurmd runs on a simulated machine, so slurmctld shows them POWERED_DOWN; a real node's slurmd registers it)")
	}
	return nil
}

// slurmTable renders `scontrol show nodes -o` lines as a table.
func slurmTable(out io.Writer, lines []string) error {
	if len(lines) == 0 {
		fmt.Fprintln(out, "  no nodes: none was handed off")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tCPUS\tMEMORY\tGRES\tFEATURES\tPARTITIONS\tREASON")
	var errs []error
	for _, line := range lines {
		n, err := slurm.ParseNode(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("scontrol show nodes: %w: %q", err, line))
			continue
		}
		gres := n.Gres
		if gres == "" {
			gres = "-"
		}
		reason := n.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.State, n.CPUs, strconv.Itoa(n.RealMemoryMiB)+"M", gres,
			strings.Join(n.Features, ","), strings.Join(n.Partitions, ","), reason)
	}
	tw.Flush()
	return errors.Join(errs...)
}
