//go:build !linux

package lldp

import (
	"context"
	"errors"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Listen is Linux-only.
func Listen(ctx context.Context, ifname string) (*inventory.LLDP, error) {
	return nil, errors.New("lldp: listening is only supported on Linux")
}

// Send is Linux-only.
func Send(ifname string, frame []byte) error {
	return errors.New("lldp: sending is only supported on Linux")
}
