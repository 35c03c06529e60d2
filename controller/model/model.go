// Package model holds the controller's value types: a node, its lifecycle
// states, its timeline of steps, audit entries and operations. It is a leaf:
// the store, the lifecycle engine and the API all speak it.
package model

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"
)

// State is where a node stands in its lifecycle.
type State string

// The lifecycle states. A node moves Discovered → Enrolled → Inspecting →
// Validated (or Quarantined) → Imaging → FirstBoot → BurnIn → Ready →
// HandedOff; Failed and Decommissioning can be reached from any working state.
const (
	Discovered      State = "Discovered"
	Enrolled        State = "Enrolled"
	Inspecting      State = "Inspecting"
	Validated       State = "Validated"
	Quarantined     State = "Quarantined"
	Imaging         State = "Imaging"
	FirstBoot       State = "FirstBoot"
	BurnIn          State = "BurnIn"
	Ready           State = "Ready"
	HandedOff       State = "HandedOff"
	Failed          State = "Failed"
	Decommissioning State = "Decommissioning"
)

// States lists every state in lifecycle order (for reports and metrics).
var States = []State{Discovered, Enrolled, Inspecting, Validated, Quarantined, Imaging, FirstBoot, BurnIn, Ready, HandedOff, Failed, Decommissioning}

// ParseState accepts a state name in any letter case.
func ParseState(s string) (State, error) {
	for _, st := range States {
		if strings.EqualFold(string(st), s) {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown state %q; one of %s", s, joinStates(States))
}

func joinStates(ss []State) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Desired is the outcome an operator asked for; the engine drives the node
// until it rests there.
type Desired string

const (
	// WantEnrolled parks a node: the engine enrolls it and does nothing more.
	WantEnrolled Desired = "enrolled"
	// WantReady provisions a node up to Ready (imaged, burned in).
	WantReady Desired = "ready"
	// WantHandedOff provisions a node and hands it to the local cluster.
	WantHandedOff Desired = "handed-off"
	// WantDecommissioned takes a node out of service: release from the
	// cluster, power off, and park it Enrolled.
	WantDecommissioned Desired = "decommissioned"
)

// ParseDesired validates a desired outcome.
func ParseDesired(s string) (Desired, error) {
	switch d := Desired(s); d {
	case WantEnrolled, WantReady, WantHandedOff, WantDecommissioned:
		return d, nil
	}
	return "", fmt.Errorf("unknown desired outcome %q; one of enrolled, ready, handed-off, decommissioned", s)
}

// FailureClass names why a node failed, in words a technician can act on.
type FailureClass string

const (
	ClassBMCUnreachable    FailureClass = "bmc-unreachable"
	ClassBMCAuth           FailureClass = "bmc-auth-failed"
	ClassNoPXERequest      FailureClass = "no-pxe-request"
	ClassCheckinTimeout    FailureClass = "checkin-timeout"
	ClassInspectFailed     FailureClass = "inspect-failed"
	ClassValidationFailed  FailureClass = "validation-failed"
	ClassImageVerifyFailed FailureClass = "image-verify-failed"
	ClassImageFailed       FailureClass = "image-failed"
	ClassBurnInFailed      FailureClass = "burnin-failed"
	ClassHandOffFailed     FailureClass = "handoff-failed"
	ClassInternal          FailureClass = "internal"
)

// Identity is what tells one machine from another, as learned from its BMC,
// its DHCP traffic and the rack manifest.
type Identity struct {
	Serial string   `json:"serial,omitempty"`
	UUID   string   `json:"uuid,omitempty"`
	BMC    string   `json:"bmc,omitempty"` // BMC endpoint: host[:port] or URL
	MACs   []string `json:"macs,omitempty"`
	Rack   string   `json:"rack,omitempty"`
	Slot   int      `json:"slot,omitempty"`
}

// Node is one machine under Rackstrap's care.
type Node struct {
	Name     string   `json:"name"`
	Identity Identity `json:"identity"`
	Profile  string   `json:"profile,omitempty"`
	Desired  Desired  `json:"desired"`
	State    State    `json:"state"`
	// Seq counts state changes; a step belongs to the transition out of the
	// state entered at that Seq, which is how a restarted controller tells
	// this pass's completed steps from an earlier pass's.
	Seq          int64           `json:"seq"`
	FailureClass FailureClass    `json:"failureClass,omitempty"`
	FailureMsg   string          `json:"failureMessage,omitempty"`
	FailedFrom   State           `json:"failedFrom,omitempty"` // the state a retry resumes from
	Inventory    json.RawMessage `json:"inventory,omitempty"`
	Findings     json.RawMessage `json:"findings,omitempty"`
	CreatedAt    time.Time       `json:"createdAt"`
	UpdatedAt    time.Time       `json:"updatedAt"`
}

// NormalizeMAC returns a MAC in lower-case colon form, or an error naming it.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("invalid MAC address %q: use the form aa:bb:cc:dd:ee:ff", s)
	}
	return hw.String(), nil
}

// Outcome is how a step attempt ended.
type Outcome string

const (
	// Running marks an intent recorded before its side effect: a step row
	// left Running by a killed controller is resumed with the same key.
	Running   Outcome = "running"
	Succeeded Outcome = "succeeded"
	FailedOut Outcome = "failed"
	TimedOut  Outcome = "timed-out"
)

// Step is one attempt of one lifecycle step: a line of the node's timeline.
type Step struct {
	ID      int64           `json:"id"`
	Node    string          `json:"node"`
	Seq     int64           `json:"seq"`
	Name    string          `json:"step"`
	Attempt int             `json:"attempt"`
	Key     string          `json:"idempotencyKey"`
	Outcome Outcome         `json:"outcome"`
	Class   FailureClass    `json:"failureClass,omitempty"`
	Message string          `json:"message,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Started time.Time       `json:"startedAt"`
	Ended   *time.Time      `json:"endedAt,omitempty"`
}

// Duration is how long the attempt took (so far, while running).
func (s Step) Duration(now time.Time) time.Duration {
	if s.Ended != nil {
		return s.Ended.Sub(s.Started)
	}
	return now.Sub(s.Started)
}

// IdempotencyKey names one attempt of one step of one node. Edges use it to
// recognise a replayed side effect after a controller restart.
func IdempotencyKey(node, step string, attempt int) string {
	return fmt.Sprintf("%s/%s/%d", node, step, attempt)
}

// AuditEntry is one link of the hash-chained audit log.
type AuditEntry struct {
	Seq     int64           `json:"seq"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Node    string          `json:"node,omitempty"`
	Outcome string          `json:"outcome"`
	Detail  json.RawMessage `json:"detail,omitempty"`
	// PrevHash and Hash are hex sha256: Hash = sha256(PrevHash || Body).
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
}

// Operation is an action asked through the API, tracked until the node rests.
type Operation struct {
	ID       int64      `json:"id"`
	Node     string     `json:"node"`
	Action   string     `json:"action"`
	Actor    string     `json:"actor"`
	Status   string     `json:"status"` // running, succeeded, failed
	Message  string     `json:"message,omitempty"`
	Created  time.Time  `json:"createdAt"`
	Finished *time.Time `json:"finishedAt,omitempty"`
}

// Operation statuses.
const (
	OpRunning   = "running"
	OpSucceeded = "succeeded"
	OpFailed    = "failed"
)

// RackSummary counts a rack's nodes by state.
type RackSummary struct {
	Rack   string        `json:"rack"`
	Nodes  int           `json:"nodes"`
	States map[State]int `json:"states"`
}
