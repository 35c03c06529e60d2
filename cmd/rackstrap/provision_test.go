package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/simedge"
)

// provision --all --watch follows a real controller (simulated machines)
// until every node rests, printing plain progress lines off a terminal.
func TestProvisionWatchFollowsTheRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, controller.Config{
			DataDir: dir, APIListen: "127.0.0.1:0",
			Engine: lifecycle.Config{Poll: 50 * time.Millisecond, BackoffBase: 20 * time.Millisecond},
			Simulate: &controller.SimConfig{Nodes: 6, Rack: "w1", Desired: model.WantEnrolled,
				Edge: simedge.Config{BootTime: 20 * time.Millisecond, ImageTime: 20 * time.Millisecond, BurnInTime: 10 * time.Millisecond}},
		}, slog.New(slog.DiscardHandler), func(c *controller.Controller) { addr <- c.API })
	}()
	t.Cleanup(func() { cancel(); <-done })
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case err := <-done:
		t.Fatalf("controller: %v", err)
	}
	out, err := run(t, "--server", url, "provision", "--all", "--watch", "--every", "200ms")
	if err != nil {
		t.Fatalf("provision --all --watch = %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "6/6 done") || !strings.Contains(last, "Ready 6") || !strings.Contains(last, "nodes/s") {
		t.Errorf("last progress line = %q, want 6/6 done with Ready 6 and a rate\n%s", last, out)
	}
	if strings.Contains(out, "\r") {
		t.Errorf("progress off a terminal has carriage returns:\n%q", out)
	}
}
