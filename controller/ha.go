package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/store"
)

// rackLeases keeps this controller's leases on racks and answers the
// lifecycle engine's "is this rack mine?".
//
// Every TTL/3 it takes or renews a lease on every rack with nodes that is
// free, expired or already its own (store.AcquireRacks), so when a
// controller dies its racks are taken by a survivor between TTL and
// TTL·4/3 later. A controller that cannot renew (its database is gone)
// stops driving its racks after TTL·2/3, before anyone else may take them.
// A step in flight when a rack changes hands is safe: the new holder finds
// its intent open and replays it with the same idempotency key.
type rackLeases struct {
	id  string
	ttl time.Duration
	db  *store.DB
	eng *lifecycle.Engine
	log *slog.Logger

	mu     sync.Mutex
	held   map[string]bool
	lastOK time.Time
}

func (h *rackLeases) owns(rack string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[rack]
}

// renew takes and renews leases once.
func (h *rackLeases) renew(ctx context.Context) error {
	racks, err := h.db.NodeRacks(ctx)
	if err == nil {
		var got []string
		if got, err = h.db.AcquireRacks(ctx, h.id, racks, h.ttl); err == nil {
			h.mu.Lock()
			var gained, lost []string
			now := map[string]bool{}
			for _, r := range got {
				now[r] = true
				if !h.held[r] {
					gained = append(gained, r)
				}
			}
			for r := range h.held {
				if !now[r] {
					lost = append(lost, r)
				}
			}
			h.held, h.lastOK = now, time.Now()
			h.mu.Unlock()
			if len(gained) > 0 {
				slices.Sort(gained)
				h.log.Info("rack leases taken", "controller", h.id, "racks", gained, "holding", len(now))
				h.eng.Wake()
			}
			if len(lost) > 0 {
				slices.Sort(lost)
				h.log.Warn("rack leases lost to another controller", "controller", h.id, "racks", lost)
			}
			return nil
		}
	}
	h.mu.Lock()
	if len(h.held) > 0 && time.Since(h.lastOK) > h.ttl*2/3 {
		h.log.Error("rack leases: cannot renew; no longer driving any rack until the database answers", "controller", h.id, "racks", len(h.held), "err", err)
		h.held = map[string]bool{}
	}
	h.mu.Unlock()
	return err
}

func (h *rackLeases) serve(ctx context.Context) error {
	t := time.NewTicker(h.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.held = map[string]bool{}
			h.mu.Unlock()
			rel, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := h.db.ReleaseRacks(rel, h.id); err != nil && !errors.Is(err, store.ErrClosed) {
				h.log.Warn("rack leases: release at shutdown", "controller", h.id, "err", err)
			}
			return nil
		case <-t.C:
		}
		if err := h.renew(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("rack leases: renew", "controller", h.id, "err", err)
		}
	}
}

// newRackLeases validates the ownership settings.
func newRackLeases(id string, ttl time.Duration) (*rackLeases, error) {
	if id == "" {
		return nil, errors.New("rack leases: a controller id is required (--controller-id)")
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("rack leases: lease time %s is too short; use at least 1s (15s is a good start)", ttl)
	}
	return &rackLeases{id: id, ttl: ttl, held: map[string]bool{}}, nil
}
