package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
)

// Multi-controller operation: rack ownership through leases in the shared
// store (controller.RackOwnership), bound to each command tree's flag set.
func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		var o controller.RackOwnership
		fl.StringVar(&o.ID, "controller-id", "", "share the store (PostgreSQL) with other controllers: this controller's unique `NAME`; each rack is then driven by one controller at a time, holding a lease, and a survivor takes the racks of one that dies")
		fl.DurationVar(&o.TTL, "rack-lease-ttl", 15*time.Second, "with --controller-id: how long a rack lease lasts unrenewed (a dead controller's racks are taken after 1 to 1⅓ times this)")
		return func() (controller.Feature, error) {
			if o.ID == "" {
				return nil, nil
			}
			return o, nil
		}
	}})
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		var l controller.RackLimits
		fl.IntVar(&l.Streams, "rack-image-streams", 0, "image streams at once per rack (the rack uplink); 0: --rack-limit")
		fl.DurationVar(&l.Stagger, "power-on-stagger", 0, "least time between two power-ons in one rack (inrush, PDU limits), e.g. 2s; 0: none")
		return func() (controller.Feature, error) {
			if l.Streams < 0 || l.Stagger < 0 {
				return nil, fmt.Errorf("--rack-image-streams %d, --power-on-stagger %s: give zero or more", l.Streams, l.Stagger)
			}
			if l.Streams == 0 && l.Stagger == 0 {
				return nil, nil
			}
			return l, nil
		}
	}})
}
