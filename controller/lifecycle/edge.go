// Package lifecycle drives each node through its states: it decides the next
// steps from the node's state and desired outcome, runs them through the
// hardware Edge under concurrency limits, retries with backoff, and records
// intent before every side effect and outcome after, so a controller killed at
// any instant resumes without doing anything twice.
package lifecycle

import (
	"context"
	"encoding/json"

	"github.com/rackstrap/rackstrap/controller/model"
)

// Edge is the hardware the engine drives. The engine never knows whether it
// is real (bmc, pxe, images, hwprofiles, cluster) or simulated (simedge).
//
// Every method that changes a machine takes an idempotency key
// (node/step/attempt). After a crash the engine replays an unfinished intent
// with the same key; the edge must then report the earlier result instead of
// acting again.
//
// A method that must not act now (the local policy's no-power window)
// returns a *HeldError: the node is held, not failed, and the step is tried
// again with the same key when the hold ends (see Engine.WrapEdge).
type Edge interface {
	// Enroll checks that the node's BMC answers with working credentials
	// and returns the identity it reports (serial, UUID, MACs).
	Enroll(ctx context.Context, n model.Node) (model.Identity, error)
	// SetBoot sets a one-time boot override.
	SetBoot(ctx context.Context, n model.Node, dev BootDevice, key string) error
	// Boot starts the machine from its boot override: power on when off,
	// power cycle when on.
	Boot(ctx context.Context, n model.Node, key string) error
	// PowerOff turns the machine off.
	PowerOff(ctx context.Context, n model.Node, key string) error
	// WaitCheckIn returns once the node's agent has checked in for phase.
	WaitCheckIn(ctx context.Context, n model.Node, phase Phase) error
	// Inspect returns the node's inventory (hwprofiles/inventory JSON).
	Inspect(ctx context.Context, n model.Node) (json.RawMessage, error)
	// Validate checks an inventory against the node's profile.
	Validate(ctx context.Context, n model.Node, inventory json.RawMessage) (Verdict, error)
	// Image streams the node's OS image to its disk and verifies it.
	Image(ctx context.Context, n model.Node, key string) error
	// BurnIn runs the profile's burn-in checks and returns their results.
	BurnIn(ctx context.Context, n model.Node, key string) (json.RawMessage, error)
	// HandOff registers the node with the local cluster.
	HandOff(ctx context.Context, n model.Node, key string) error
	// Release takes the node out of the local cluster (drain, remove).
	Release(ctx context.Context, n model.Node, key string) error
}

// BootDevice is a one-time boot target.
type BootDevice string

const (
	BootNetwork BootDevice = "network"
	BootDisk    BootDevice = "disk"
)

// Phase is which boot a check-in belongs to.
type Phase string

const (
	// PhaseNetboot: the agent in the netboot initramfs.
	PhaseNetboot Phase = "netboot"
	// PhaseFirstBoot: the agent on the installed OS's first boot.
	PhaseFirstBoot Phase = "firstboot"
)

// Verdict is the outcome of validation.
type Verdict struct {
	Pass     bool            `json:"pass"`
	Summary  string          `json:"summary,omitempty"`
	Findings json.RawMessage `json:"findings,omitempty"`
}

// Classified is implemented by edge errors that know their failure class
// ("bmc-unreachable", "no-pxe-request", …). Edge packages implement it
// without importing the controller.
type Classified interface {
	FailureClass() string
}
