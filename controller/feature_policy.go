package controller

import (
	"context"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/policy"
)

// NewPolicyFeature applies a local policy file (controller/policy): the
// image served must be signed by a signer the policy names and allowed for
// each node's profile, nodes pass validation (and, when the policy says
// so, firmware compliance) before imaging and hand-off, and no power
// action (boot, power cycle, power off) happens inside a no-power window.
// Violations hold the node, naming the rule, on its audited timeline and
// in GET /api/v1/holds; a node held by a window moves on when it ends.
func NewPolicyFeature(p *policy.Policy) Feature { return &policyFeature{p: p} }

// NewPolicyFeatureAt is NewPolicyFeature reading no-power windows on the
// clock now (tests).
func NewPolicyFeatureAt(p *policy.Policy, now func() time.Time) Feature {
	return &policyFeature{p: p, now: now}
}

type policyFeature struct {
	p   *policy.Policy
	now func() time.Time
}

func (f *policyFeature) Name() string { return "policy" }

func (f *policyFeature) Start(ctx context.Context, rt *Runtime) error {
	env := policy.Env{Store: rt.Store, API: rt.API, Engine: rt.Engine, Log: rt.Log.With("feature", "policy"), Now: f.now}
	if e := rt.Config.Edge; e != nil {
		if si := e.SignedImage; si != nil {
			env.ImageStore, env.ImageName, env.ImageVersion = si.StoreDir, si.Name, si.Version
		} else if e.Image != "" {
			env.PlainImage = e.Image
		}
	}
	for _, other := range rt.Config.Features {
		if ff, ok := other.(*firmwareFeature); ok && ff.c.Baseline != "" {
			env.Firmware = baselineChecker{ff}
		}
	}
	if err := f.p.Attach(ctx, env); err != nil {
		return err
	}
	return extendHolds(rt)
}

// powerHold is the policy's no-power window now, as the firmware runner
// asks before a package that restarts the host.
func (f *policyFeature) powerHold() *lifecycle.HeldError {
	now := time.Now
	if f.now != nil {
		now = f.now
	}
	return f.p.PowerHold(now())
}
