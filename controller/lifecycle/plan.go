package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rackstrap/rackstrap/controller/model"
)

// kind says which limits a step runs under.
type kind int

const (
	// kindBMC steps talk to the BMC: one at a time per BMC, a worker slot,
	// and a per-rack slot (the power-on stagger).
	kindBMC kind = iota
	// kindStream steps move image bytes: a worker slot and a per-rack slot.
	kindStream
	// kindWork steps compute or talk to the host: a worker slot.
	kindWork
	// kindWait steps wait for the machine; they hold no slot, so thousands
	// of booting nodes do not starve the workers.
	kindWait
)

// step is one unit of work with its own intent/outcome record.
type step struct {
	name  string
	kind  kind
	class model.FailureClass // when the error does not say
	// timeoutClass is the class when the deadline passes.
	timeoutClass model.FailureClass
	run          func(ctx context.Context, e Edge, n model.Node, key string, prior results) (json.RawMessage, error)
}

// results are the outputs of the steps already done in this pass.
type results map[string]json.RawMessage

// transition is the work done while a node is in a state, and where it goes.
type transition struct {
	steps []step
	// next picks the state after the steps succeeded.
	next func(results) (model.State, error)
	// guard, when set, is the state this move leads to that gates may hold
	// the node from (see Gate).
	guard model.State
}

func to(s model.State) func(results) (model.State, error) {
	return func(results) (model.State, error) { return s, nil }
}

// Step names, as they appear in timelines and idempotency keys.
const (
	StepEnroll         = "enroll"
	StepSetBootNetwork = "set-boot-network"
	StepBootNetwork    = "boot-network"
	StepWaitNetboot    = "wait-netboot-checkin"
	StepInspect        = "inspect"
	StepValidate       = "validate"
	StepImage          = "image"
	StepSetBootDisk    = "set-boot-disk"
	StepBootDisk       = "boot-disk"
	StepWaitFirstBoot  = "wait-firstboot-checkin"
	StepBurnIn         = "burn-in"
	StepHandOff        = "hand-off"
	StepRelease        = "release"
	StepPowerOff       = "power-off"
)

var (
	enroll = step{name: StepEnroll, kind: kindBMC, class: model.ClassBMCUnreachable, timeoutClass: model.ClassBMCUnreachable,
		run: func(ctx context.Context, e Edge, n model.Node, _ string, _ results) (json.RawMessage, error) {
			id, err := e.Enroll(ctx, n)
			if err != nil {
				return nil, err
			}
			return json.Marshal(id)
		}}
	setBootNetwork = bmcStep(StepSetBootNetwork, func(ctx context.Context, e Edge, n model.Node, key string) error {
		return e.SetBoot(ctx, n, BootNetwork, key)
	})
	bootNetwork = bmcStep(StepBootNetwork, func(ctx context.Context, e Edge, n model.Node, key string) error { return e.Boot(ctx, n, key) })
	waitNetboot = step{name: StepWaitNetboot, kind: kindWait, class: model.ClassCheckinTimeout, timeoutClass: model.ClassCheckinTimeout,
		run: func(ctx context.Context, e Edge, n model.Node, _ string, _ results) (json.RawMessage, error) {
			return nil, e.WaitCheckIn(ctx, n, PhaseNetboot)
		}}
	inspect = step{name: StepInspect, kind: kindWork, class: model.ClassInspectFailed, timeoutClass: model.ClassInspectFailed,
		run: func(ctx context.Context, e Edge, n model.Node, _ string, _ results) (json.RawMessage, error) {
			return e.Inspect(ctx, n)
		}}
	validate = step{name: StepValidate, kind: kindWork, class: model.ClassValidationFailed, timeoutClass: model.ClassValidationFailed,
		run: func(ctx context.Context, e Edge, n model.Node, _ string, prior results) (json.RawMessage, error) {
			v, err := e.Validate(ctx, n, prior[StepInspect])
			if err != nil {
				return nil, err
			}
			return json.Marshal(v)
		}}
	image = step{name: StepImage, kind: kindStream, class: model.ClassImageFailed, timeoutClass: model.ClassImageFailed,
		run: func(ctx context.Context, e Edge, n model.Node, key string, _ results) (json.RawMessage, error) {
			return nil, e.Image(ctx, n, key)
		}}
	setBootDisk = bmcStep(StepSetBootDisk, func(ctx context.Context, e Edge, n model.Node, key string) error {
		return e.SetBoot(ctx, n, BootDisk, key)
	})
	bootDisk      = bmcStep(StepBootDisk, func(ctx context.Context, e Edge, n model.Node, key string) error { return e.Boot(ctx, n, key) })
	waitFirstBoot = step{name: StepWaitFirstBoot, kind: kindWait, class: model.ClassCheckinTimeout, timeoutClass: model.ClassCheckinTimeout,
		run: func(ctx context.Context, e Edge, n model.Node, _ string, _ results) (json.RawMessage, error) {
			return nil, e.WaitCheckIn(ctx, n, PhaseFirstBoot)
		}}
	burnIn = step{name: StepBurnIn, kind: kindWork, class: model.ClassBurnInFailed, timeoutClass: model.ClassBurnInFailed,
		run: func(ctx context.Context, e Edge, n model.Node, key string, _ results) (json.RawMessage, error) {
			return e.BurnIn(ctx, n, key)
		}}
	handOff = step{name: StepHandOff, kind: kindWork, class: model.ClassHandOffFailed, timeoutClass: model.ClassHandOffFailed,
		run: func(ctx context.Context, e Edge, n model.Node, key string, _ results) (json.RawMessage, error) {
			return nil, e.HandOff(ctx, n, key)
		}}
	release = step{name: StepRelease, kind: kindWork, class: model.ClassHandOffFailed, timeoutClass: model.ClassHandOffFailed,
		run: func(ctx context.Context, e Edge, n model.Node, key string, _ results) (json.RawMessage, error) {
			return nil, e.Release(ctx, n, key)
		}}
	powerOff = bmcStep(StepPowerOff, func(ctx context.Context, e Edge, n model.Node, key string) error { return e.PowerOff(ctx, n, key) })
)

func bmcStep(name string, fn func(ctx context.Context, e Edge, n model.Node, key string) error) step {
	return step{name: name, kind: kindBMC, class: model.ClassBMCUnreachable, timeoutClass: model.ClassBMCUnreachable,
		run: func(ctx context.Context, e Edge, n model.Node, key string, _ results) (json.RawMessage, error) {
			return nil, fn(ctx, e, n, key)
		}}
}

// afterValidation sends a node with any error finding to Quarantined.
func afterValidation(r results) (model.State, error) {
	var v Verdict
	if err := json.Unmarshal(r[StepValidate], &v); err != nil {
		return "", fmt.Errorf("read validation verdict: %w", err)
	}
	if v.Pass {
		return model.Validated, nil
	}
	return model.Quarantined, nil
}

// plan returns the work for a node in its current state, or nil when the
// node rests (it has reached what was asked, or waits for an operator).
func plan(n model.Node) *transition {
	if n.Desired == model.WantDecommissioned {
		switch n.State {
		case model.Discovered, model.Enrolled:
			return nil
		case model.Decommissioning:
			return &transition{steps: []step{release, powerOff}, next: to(model.Enrolled)}
		default:
			return &transition{next: to(model.Decommissioning)}
		}
	}
	provision := n.Desired == model.WantReady || n.Desired == model.WantHandedOff
	switch n.State {
	case model.Discovered:
		if n.Identity.BMC == "" && n.Desired == model.WantEnrolled {
			// Found by its own network boot: it waits here, its inventory
			// checked in, until its BMC is known.
			return nil
		}
		return &transition{steps: []step{enroll}, next: to(model.Enrolled)}
	case model.Enrolled:
		if provision {
			return &transition{next: to(model.Inspecting)}
		}
	case model.Inspecting:
		return &transition{steps: []step{setBootNetwork, bootNetwork, waitNetboot, inspect, validate}, next: afterValidation}
	case model.Validated:
		if provision {
			return &transition{next: to(model.Imaging), guard: model.Imaging}
		}
	case model.Imaging:
		return &transition{steps: []step{image, setBootDisk, bootDisk}, next: to(model.FirstBoot)}
	case model.FirstBoot:
		return &transition{steps: []step{waitFirstBoot}, next: to(model.BurnIn)}
	case model.BurnIn:
		return &transition{steps: []step{burnIn}, next: to(model.Ready)}
	case model.Ready:
		if n.Desired == model.WantHandedOff {
			return &transition{steps: []step{handOff}, next: to(model.HandedOff), guard: model.HandedOff}
		}
	case model.Decommissioning:
		// An operator changed their mind mid-decommission: finish it anyway,
		// a half-released node is worse than either end.
		return &transition{steps: []step{release, powerOff}, next: to(model.Enrolled)}
	}
	return nil
}

// resting reports whether a node in state s with desired d needs no work.
func resting(s model.State, d model.Desired) bool {
	return plan(model.Node{State: s, Desired: d}) == nil
}
