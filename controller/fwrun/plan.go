package fwrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// RunRequest asks for a firmware run (POST /api/v1/firmware/runs).
type RunRequest struct {
	// Baseline names a baseline file in the controller's firmware
	// directory (default: the controller's --firmware-baseline).
	Baseline string `json:"baseline,omitempty"`
	// Rack and Nodes narrow the run (default: every node).
	Rack  string   `json:"rack,omitempty"`
	Nodes []string `json:"nodes,omitempty"`
	// Canary, WaveSize and MaxFailures shape the waves (defaults 1, 10, 1).
	Canary      int `json:"canary,omitempty"`
	WaveSize    int `json:"waveSize,omitempty"`
	MaxFailures int `json:"maxFailures,omitempty"`
	// DryRun plans and answers; nothing is stored or sent to any BMC but
	// inventory reads.
	DryRun bool `json:"dryRun,omitempty"`
}

// PlanReply is a run's plan: what a dry run answers, and what a run
// starts with.
type PlanReply struct {
	DryRun   bool                `json:"dryRun"`
	Baseline string              `json:"baseline"`
	Policy   firmware.WavePolicy `json:"policy"`
	Waves    [][]string          `json:"waves"`
	Nodes    []NodePlan          `json:"nodes"`
	// Run is the stored run (absent for a dry run or when nothing needs
	// an update).
	Run *store.FirmwareRun `json:"run,omitempty"`
}

// NodePlan is one node of a plan.
type NodePlan struct {
	Node    string            `json:"node"`
	State   model.State       `json:"state"`
	Status  []firmware.Status `json:"status,omitempty"`
	Updates []firmware.Update `json:"updates,omitempty"`
	// Skipped says why the node is left out (not at rest, BMC unreadable).
	Skipped string `json:"skipped,omitempty"`
}

// atRest says whether the lifecycle leaves n alone, so that its firmware
// may be updated, and if not, why. Validated and Ready nodes that want to
// move on are held by the gate while their update runs.
func (r *Runner) atRest(ctx context.Context, n model.Node) (bool, string) {
	provision := n.Desired == model.WantReady || n.Desired == model.WantHandedOff
	switch n.State {
	case model.Quarantined:
		return true, ""
	case model.Enrolled:
		if !provision {
			return true, ""
		}
		return false, "about to be inspected"
	case model.Validated:
		if provision {
			return true, "" // held before imaging by the gate
		}
		return false, "being decommissioned"
	case model.Ready:
		switch n.Desired {
		case model.WantReady:
			return true, ""
		case model.WantHandedOff:
			// Held before the hand-off by the gate, unless the hand-off
			// has begun.
			h, err := r.db.StepHistory(ctx, n.Name, n.Seq, lifecycle.StepHandOff)
			if err != nil {
				return false, err.Error()
			}
			if h.Last == nil {
				return true, ""
			}
			return false, "being handed off"
		}
		return false, "being decommissioned"
	}
	return false, "not at rest"
}

// Plan plans a run and, unless it is a dry run, stores it and wakes the
// runner. actor is recorded in the audit log.
func (r *Runner) Plan(ctx context.Context, req RunRequest, actor string) (PlanReply, error) {
	name := req.Baseline
	if name == "" {
		name = r.cfg.Baseline
	}
	if name == "" {
		return PlanReply{}, fmt.Errorf("%w: name a baseline (--baseline NAME: a file in the controller's firmware directory)", errBadRequest)
	}
	b, err := r.loadBaseline(name)
	if err != nil {
		return PlanReply{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if req.Canary < 0 || req.WaveSize < 0 || req.MaxFailures < 0 {
		return PlanReply{}, fmt.Errorf("%w: canary, wave size and max failures must not be negative", errBadRequest)
	}
	policy := firmware.WavePolicy{Canary: req.Canary, WaveSize: req.WaveSize, MaxFailures: req.MaxFailures}
	if policy.Canary == 0 {
		policy.Canary = 1
	}
	if policy.WaveSize == 0 {
		policy.WaveSize = 10
	}
	if policy.MaxFailures == 0 {
		policy.MaxFailures = 1
	}
	nodes, err := r.db.ListNodes(ctx, store.NodeFilter{Rack: req.Rack})
	if err != nil {
		return PlanReply{}, err
	}
	if len(req.Nodes) > 0 {
		nodes = slices.DeleteFunc(nodes, func(n model.Node) bool { return !slices.Contains(req.Nodes, n.Name) })
		if len(nodes) != len(req.Nodes) {
			return PlanReply{}, fmt.Errorf("%w: some of the nodes %v are not known (or not in rack %q)", errNotFound, req.Nodes, req.Rack)
		}
	}
	if len(nodes) == 0 {
		return PlanReply{}, fmt.Errorf("%w: no nodes (rack %q); declare them with 'rackstrap apply'", errNotFound, req.Rack)
	}
	reply := PlanReply{DryRun: req.DryRun, Baseline: b.Name, Policy: policy, Nodes: make([]NodePlan, len(nodes)), Waves: [][]string{}}
	// Read the BMCs of the nodes at rest, a few at a time.
	invs := make([][]inventory.FirmwareComponent, len(nodes))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, n := range nodes {
		reply.Nodes[i] = NodePlan{Node: n.Name, State: n.State}
		if ok, why := r.atRest(ctx, n); !ok {
			reply.Nodes[i].Skipped = fmt.Sprintf("%s: %s; run again once it rests", n.State, why)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ep, err := r.endpoint(ctx, n)
			if err == nil {
				invs[i], err = r.client.Inventory(ctx, ep)
			}
			if err != nil {
				reply.Nodes[i].Skipped = "its firmware could not be read: " + err.Error()
			}
		}()
	}
	wg.Wait()
	var pending []string
	plans := map[string][]firmware.Update{}
	for i, np := range reply.Nodes {
		if np.Skipped != "" {
			continue
		}
		p := firmware.Plan(b, firmware.NodeInventory{Node: np.Node, Components: invs[i]})[0]
		reply.Nodes[i].Status, reply.Nodes[i].Updates = p.Status, p.Updates
		if len(p.Updates) > 0 {
			pending = append(pending, np.Node)
			plans[np.Node] = p.Updates
		}
		if !req.DryRun {
			if raw, err := json.Marshal(invs[i]); err == nil {
				_ = r.db.PutFirmwareInventory(ctx, np.Node, raw) // the gate's view; best effort
			}
		}
	}
	reply.Waves = firmware.Waves(pending, policy)
	if reply.Waves == nil {
		reply.Waves = [][]string{}
	}
	if req.DryRun || len(pending) == 0 {
		return reply, nil
	}
	for _, ups := range plans {
		for _, u := range ups {
			// Refuse a bad package now rather than in the middle of a run.
			if err := firmware.VerifyPackage(u.Package, r.cfg.TrustedKeys, r.cfg.AllowUnsigned); err != nil {
				return reply, fmt.Errorf("%w: %v", errBadRequest, err)
			}
		}
	}
	policyJSON, _ := json.Marshal(policy)
	wavesJSON, _ := json.Marshal(reply.Waves)
	var rows []store.FirmwareRunNode
	for w, wave := range reply.Waves {
		for _, n := range wave {
			plan, err := json.Marshal(plans[n])
			if err != nil {
				return reply, err
			}
			rows = append(rows, store.FirmwareRunNode{Node: n, Wave: w, Plan: plan})
		}
	}
	run, err := r.db.CreateFirmwareRun(ctx, store.FirmwareRun{Baseline: name, Rack: req.Rack, Policy: policyJSON, Waves: wavesJSON, Actor: actor}, rows)
	if errors.Is(err, store.ErrFirmwareRunActive) {
		return reply, fmt.Errorf("%w: %v; wait for it to end ('rackstrap firmware runs')", errConflict, err)
	}
	if err != nil {
		return reply, err
	}
	reply.Run = &run
	r.Wake()
	return reply, nil
}

// Request errors, mapped onto HTTP statuses by the API.
var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
	errConflict   = errors.New("conflict")
)

// components is a node's firmware as the gate sees it: the BMC's last
// reading (a run's, or the gate's own), with what the agent reported
// in-band added for components the BMC does not list.
func (r *Runner) components(ctx context.Context, n model.Node) ([]inventory.FirmwareComponent, error) {
	var out []inventory.FirmwareComponent
	raw, _, err := r.db.FirmwareInventory(ctx, n.Name)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("stored firmware inventory of %s: %w", n.Name, err)
		}
	case errors.Is(err, store.ErrNotFound):
		if n.Identity.BMC != "" {
			ep, err := r.endpoint(ctx, n)
			if err != nil {
				return nil, err
			}
			if out, err = r.client.Inventory(ctx, ep); err != nil {
				return nil, err
			}
			if raw, err := json.Marshal(out); err == nil {
				_ = r.db.PutFirmwareInventory(ctx, n.Name, raw)
			}
		}
	default:
		return nil, err
	}
	if len(n.Inventory) > 0 {
		var inv inventory.Inventory
		if json.Unmarshal(n.Inventory, &inv) == nil {
			has := func(id string) bool {
				return slices.ContainsFunc(out, func(c inventory.FirmwareComponent) bool { return c.ID == id })
			}
			for _, c := range inv.Firmware {
				if !has(c.ID) {
					out = append(out, c)
				}
			}
			if !has("BIOS") && inv.BIOS.Version != "" {
				out = append(out, inventory.FirmwareComponent{ID: "BIOS", Name: "BIOS", Version: inv.BIOS.Version})
			}
			if !has("BMC") && inv.BMC.FirmwareVersion != "" {
				out = append(out, inventory.FirmwareComponent{ID: "BMC", Name: "BMC Firmware", Version: inv.BMC.FirmwareVersion})
			}
		}
	}
	return out, nil
}
