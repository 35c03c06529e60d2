package fwrun

import (
	"context"
	"fmt"
	"strings"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/firmware"
)

// Gate is the lifecycle gate of firmware: it holds a node that a running
// firmware run has not finished with, and (by the Hold setting) a node
// behind its baseline, from imaging or hand-off.
func (r *Runner) Gate() lifecycle.Gate { return gate{r} }

// Gate rules, as holds name them.
const (
	RuleFirmwareRun      = "firmware-run"
	RuleFirmwareBaseline = "firmware-baseline"
)

type gate struct{ r *Runner }

var _ lifecycle.RuledGate = gate{}

func (gate) Name() string { return "firmware" }

func (g gate) Hold(ctx context.Context, n model.Node, next model.State) (string, error) {
	_, reason, err := g.HoldRule(ctx, n, next)
	return reason, err
}

func (g gate) HoldRule(ctx context.Context, n model.Node, next model.State) (string, string, error) {
	r := g.r
	run, err := r.db.FirmwareHold(ctx, n.Name)
	if err != nil {
		return RuleFirmwareRun, "", err
	}
	if run != 0 {
		return RuleFirmwareRun, fmt.Sprintf("firmware run %d is updating this node; it moves on once its update is verified ('rackstrap firmware runs %d')", run, run), nil
	}
	switch {
	case r.cfg.Hold == HoldImaging && (next == model.Imaging || next == model.HandedOff):
	case r.cfg.Hold == HoldHandoff && next == model.HandedOff:
	default:
		return "", "", nil
	}
	behind, err := r.Behind(ctx, n)
	if behind == "" && err == nil {
		return "", "", nil
	}
	return RuleFirmwareBaseline, behind, err
}

// HasBaseline reports whether the runner has a baseline to check nodes
// against (Config.Baseline).
func (r *Runner) HasBaseline() bool { return r.cfg.Baseline != "" }

// Behind returns why n's firmware is behind the baseline (each component
// behind, and what to run), or "" when it complies. The local policy's
// firmware-compliance rule asks it.
func (r *Runner) Behind(ctx context.Context, n model.Node) (string, error) {
	if r.cfg.Baseline == "" {
		return "", fmt.Errorf("no firmware baseline to check %s against; start serve with --firmware-baseline", n.Name)
	}
	b, err := r.policyBaseline()
	if err != nil {
		return "", err
	}
	comps, err := r.components(ctx, n)
	if err != nil {
		return "", fmt.Errorf("read the firmware of %s: %w", n.Name, err)
	}
	var behind []string
	for _, s := range firmware.Compliance(b, comps) {
		if s.State == firmware.Behind {
			behind = append(behind, fmt.Sprintf("%s %s is behind baseline %s", s.Component, s.Current, strings.TrimPrefix(s.Required, ">= ")))
		}
	}
	if len(behind) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%s: run 'rackstrap firmware apply --baseline %s'", strings.Join(behind, "; "), r.cfg.Baseline), nil
}
