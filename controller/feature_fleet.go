package controller

import (
	"context"
	"time"
)

// RackOwnership is the Feature that lets several controllers share one
// PostgreSQL store: each rack is driven by one controller at a time, the
// holder of its lease row (migration 8, store.AcquireRacks), and a survivor
// takes the racks of a controller that stops renewing. See ha.go.
type RackOwnership struct {
	// ID names this controller in the lease rows; unique per controller.
	ID string
	// TTL is how long a lease lasts unrenewed (renewed every TTL/3).
	TTL time.Duration
}

// Name implements Feature.
func (o RackOwnership) Name() string { return "rack ownership" }

// Start implements Feature: the engine drives only the racks this
// controller holds, and the leases are taken once before any service
// starts, so a controller starting alone begins at once.
func (o RackOwnership) Start(ctx context.Context, rt *Runtime) error {
	h, err := newRackLeases(o.ID, o.TTL)
	if err != nil {
		return err
	}
	h.db, h.eng, h.log = rt.Store, rt.Engine, rt.Log
	rt.Engine.OwnRacks(h.owns)
	if err := h.renew(ctx); err != nil {
		return err
	}
	rt.Go("rack leases", h.serve)
	return nil
}

// RackLimits is the Feature that sets per-rack limits beyond --rack-limit:
// image streams at once per rack and the power-on stagger.
type RackLimits struct {
	Streams int           // image streams at once per rack; 0: the rack limit
	Stagger time.Duration // least time between two power-ons in a rack
}

// Name implements Feature.
func (l RackLimits) Name() string { return "rack limits" }

// Start implements Feature.
func (l RackLimits) Start(_ context.Context, rt *Runtime) error {
	rt.Engine.SetRackLimits(l.Streams, l.Stagger)
	return nil
}
