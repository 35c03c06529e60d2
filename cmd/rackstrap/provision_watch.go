package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/model"
)

// runProgress is one look at a provisioning run.
type runProgress struct {
	counts map[model.State]int
	done   int // resting: reached the goal, Failed or Quarantined
	total  int
}

// measure counts the states of the nodes in names (all of rack when rack
// is set, every node when names is the whole fleet).
func measure(ctx context.Context, c *api.Client, rack string, names map[string]bool, handOff bool) (runProgress, error) {
	nodes, err := c.Nodes(ctx, "", rack)
	if err != nil {
		return runProgress{}, err
	}
	p := runProgress{counts: map[model.State]int{}}
	for _, n := range nodes {
		if !names[n.Name] {
			continue
		}
		p.total++
		p.counts[n.State]++
		switch n.State {
		case model.Failed, model.Quarantined, model.HandedOff:
			p.done++
		case model.Ready:
			if !handOff {
				p.done++
			}
		}
	}
	return p, nil
}

// line renders p with the rate since start and an ETA.
func (p runProgress) line(elapsed time.Duration, done0 int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d done", p.done, p.total)
	for _, s := range model.States {
		if n := p.counts[s]; n > 0 {
			fmt.Fprintf(&b, "  %s %d", s, n)
		}
	}
	rate := float64(p.done-done0) / elapsed.Seconds()
	fmt.Fprintf(&b, "  |  %.1f nodes/s", rate)
	if left := p.total - p.done; left > 0 && rate > 0 {
		fmt.Fprintf(&b, "  ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintf(&b, "  (%s)", elapsed.Round(time.Second))
	return b.String()
}

// watchProgress follows the nodes in names until every one rests. On a
// terminal it keeps one line up to date; otherwise it prints a line every
// every, and one when the run ends.
func watchProgress(ctx context.Context, c *api.Client, w io.Writer, rack string, names []string, handOff bool, every time.Duration) error {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	tty := isTerminal(w)
	tick := time.Second
	start := time.Now()
	first, err := measure(ctx, c, rack, want, handOff)
	if err != nil {
		return err
	}
	var lastPrint time.Time
	p := first
	for {
		elapsed := max(time.Since(start), time.Millisecond)
		finished := p.done >= p.total
		switch {
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", p.line(elapsed, first.done))
			if finished {
				fmt.Fprintln(w)
			}
		case finished || time.Since(lastPrint) >= every:
			fmt.Fprintln(w, p.line(elapsed, first.done))
			lastPrint = time.Now()
		}
		if finished {
			if bad := p.counts[model.Failed] + p.counts[model.Quarantined]; bad > 0 {
				return fmt.Errorf("%d of %d nodes need a technician (Failed or Quarantined): see 'rackstrap status'", bad, p.total)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return ctx.Err()
		case <-time.After(tick):
		}
		if p, err = measure(ctx, c, rack, want, handOff); err != nil {
			return err
		}
	}
}
