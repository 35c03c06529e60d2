package controller

import (
	"context"

	"github.com/rackstrap/rackstrap/controller/policy"
)

// NewPolicyFeature applies a local policy file (controller/policy): the
// image served must be signed by a signer the policy names and allowed for
// each node's profile, nodes pass validation (and, when the policy says
// so, firmware compliance) before imaging and hand-off, and no node is
// power-cycled into imaging inside a no-power window. Violations hold the
// node, naming the rule, on its audited timeline.
func NewPolicyFeature(p *policy.Policy) Feature { return &policyFeature{p: p} }

type policyFeature struct{ p *policy.Policy }

func (f *policyFeature) Name() string { return "policy" }

func (f *policyFeature) Start(ctx context.Context, rt *Runtime) error {
	env := policy.Env{Store: rt.Store, API: rt.API, Engine: rt.Engine, Log: rt.Log.With("feature", "policy")}
	if e := rt.Config.Edge; e != nil {
		if si := e.SignedImage; si != nil {
			env.ImageStore, env.ImageName, env.ImageVersion = si.StoreDir, si.Name, si.Version
		} else if e.Image != "" {
			env.PlainImage = e.Image
		}
	}
	for _, other := range rt.Config.Features {
		if other.Name() == "firmware" {
			env.FirmwareFeature = true
		}
	}
	return f.p.Attach(ctx, env)
}
