package lab

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/test/cluster/slurmtest"
)

// TestHandOffToSlurm provisions two simulated machines to HandedOff with a
// real slurmctld as the site's cluster: each becomes a Slurm node with the
// GPUs validation verified, and decommissioning drains and removes it.
func TestHandOffToSlurm(t *testing.T) {
	t.Parallel()
	sc := slurmtest.Start(t, slurmtest.Options{})
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := Prepare(Config{Rack: "h1", Nodes: 2, Dir: filepath.Join(dir, "artifacts"), ImageSize: 1 << 20, Desired: model.WantHandedOff, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Edge.Slurm = &slurm.Config{Conf: sc.Conf, Netns: sc.Netns}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := controller.Config{DataDir: filepath.Join(dir, "data"), APIListen: "127.0.0.1:0", Edge: l.Edge, Boot: l.Boot,
		Engine: lifecycle.Config{MaxAttempts: 2, BackoffBase: 50 * time.Millisecond, Poll: 50 * time.Millisecond}}
	ctl, done := startController(ctx, t, cfg, log)
	for _, n := range l.Nodes {
		ctl.Store.CreateNode(ctx, n, "test")
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	wait := func(name string, want model.State) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			n, _ := ctl.Store.GetNode(ctx, name)
			if n.State == want {
				return
			}
			if n.State == model.Failed || time.Now().After(deadline) {
				t.Fatalf("%s is %s (%s: %s), want %s\nslurmctld log:\n%s", name, n.State, n.FailureClass, n.FailureMsg, want, sc.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("h1-n01", model.HandedOff)
	wait("h1-n02", model.HandedOff)
	show := sc.ShowNode("h1-n01")
	for _, want := range []string{"Gres=gpu:h100:8", "profile-hgx-h100-8gpu", "rack-h1"} {
		if !strings.Contains(show, want) {
			t.Errorf("scontrol show node h1-n01 lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "DRAIN") {
		t.Errorf("a handed-off node is drained:\n%s", show)
	}
	if _, err := lifecycle.Act(ctx, ctl.Store, lifecycle.Request{Node: "h1-n02", Action: lifecycle.ActDecommission, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	wait("h1-n02", model.Enrolled)
	if out, err := sc.Scontrol("show", "node", "h1-n02"); err == nil && strings.Contains(out, "NodeName=h1-n02") {
		t.Errorf("a decommissioned node is still in Slurm:\n%s", out)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("controller stopped with %v", err)
	}
}
