package controller

import (
	"context"

	"github.com/rackstrap/rackstrap/controller/fwrun"
)

// NewFirmwareFeature returns the firmware feature: staged, durable firmware
// runs (API /api/v1/firmware/...), the packages BMCs fetch, and the gate
// that holds nodes a run is updating, or (by policy) nodes behind their
// baseline, from imaging or hand-off.
func NewFirmwareFeature(c fwrun.Config) Feature { return &firmwareFeature{c: c} }

type firmwareFeature struct{ c fwrun.Config }

func (f *firmwareFeature) Name() string { return "firmware" }

func (f *firmwareFeature) Start(_ context.Context, rt *Runtime) error {
	deps := fwrun.Deps{Store: rt.Store, Secrets: rt.Secrets, Log: rt.Log.With("feature", "firmware"), APIURL: rt.APIURL, Wake: rt.Engine.Wake, Registry: rt.Registry}
	if e := rt.Config.Edge; e != nil {
		deps.DefaultUser, deps.DefaultPassword = e.Login.Username, e.Login.Password
	}
	r, err := fwrun.New(f.c, deps)
	if err != nil {
		return err
	}
	if err := rt.API.Extend(r.Extension()); err != nil {
		return err
	}
	rt.Engine.AddGate(r.Gate())
	rt.Go("firmware", r.Serve)
	return nil
}
