package controller

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/rackstrap/rackstrap/controller/fwrun"
	"github.com/rackstrap/rackstrap/controller/model"
)

// NewFirmwareFeature returns the firmware feature: staged, durable firmware
// runs (API /api/v1/firmware/...), the packages BMCs fetch, and the gate
// that holds nodes a run is updating, or (by --firmware-hold) nodes behind
// their baseline, from imaging or hand-off. The local policy's
// firmware-compliance rule checks nodes against the same baseline.
func NewFirmwareFeature(c fwrun.Config) Feature { return &firmwareFeature{c: c} }

type firmwareFeature struct {
	c      fwrun.Config
	runner atomic.Pointer[fwrun.Runner]
}

func (f *firmwareFeature) Name() string { return "firmware" }

func (f *firmwareFeature) Start(_ context.Context, rt *Runtime) error {
	deps := fwrun.Deps{Store: rt.Store, Secrets: rt.Secrets, Log: rt.Log.With("feature", "firmware"), APIURL: rt.APIURL, Wake: rt.Engine.Wake, Registry: rt.Registry}
	if e := rt.Config.Edge; e != nil {
		deps.DefaultUser, deps.DefaultPassword = e.Login.Username, e.Login.Password
	}
	for _, other := range rt.Config.Features {
		if pf, ok := other.(*policyFeature); ok && pf.p.HasPowerWindows() {
			deps.PowerHold = pf.powerHold // a package that restarts the host waits out no-power windows
		}
	}
	r, err := fwrun.New(f.c, deps)
	if err != nil {
		return err
	}
	if err := rt.API.Extend(r.Extension()); err != nil {
		return err
	}
	rt.Engine.AddGate(r.Gate())
	if err := extendHolds(rt); err != nil {
		return err
	}
	f.runner.Store(r)
	rt.Go("firmware", r.Serve)
	return nil
}

// baselineChecker is the firmware feature as the policy's firmware check:
// its runner exists once the feature has started, which is before the
// engine asks any gate.
type baselineChecker struct{ f *firmwareFeature }

func (b baselineChecker) Behind(ctx context.Context, n model.Node) (string, error) {
	r := b.f.runner.Load()
	if r == nil {
		return "", errors.New("the firmware feature has not started")
	}
	return r.Behind(ctx, n)
}
