package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/rackstrap/rackstrap/controller/model"
)

func TestFirmwareRunIsDurable(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for _, n := range []string{"n1", "n2"} {
				if _, _, err := db.CreateNode(ctx, model.Node{Name: n}, "test"); err != nil {
					t.Fatal(err)
				}
			}
			plan := json.RawMessage(`[{"component":"BMC"}]`)
			run, err := db.CreateFirmwareRun(ctx, FirmwareRun{Baseline: "b1", Policy: json.RawMessage(`{"canary":1}`), Waves: json.RawMessage(`[["n1"],["n2"]]`), Actor: "test"},
				[]FirmwareRunNode{{Node: "n1", Wave: 0, Plan: plan}, {Node: "n2", Wave: 1, Plan: plan}})
			if err != nil {
				t.Fatalf("CreateFirmwareRun = %v", err)
			}
			if run.ID == 0 || run.Status != FirmwareRunning || len(run.Nodes) != 2 || run.Nodes[0].Node != "n1" || string(run.Nodes[1].Plan) != string(plan) {
				t.Fatalf("run = %+v", run)
			}
			if _, err := db.CreateFirmwareRun(ctx, FirmwareRun{Baseline: "b2", Policy: json.RawMessage(`{}`), Waves: json.RawMessage(`[]`), Actor: "test"}, nil); !errors.Is(err, ErrFirmwareRunActive) {
				t.Errorf("second CreateFirmwareRun = %v, want ErrFirmwareRunActive", err)
			}
			if id, err := db.FirmwareHold(ctx, "n1"); err != nil || id != run.ID {
				t.Errorf("FirmwareHold(n1) = %d, %v; want %d", id, err, run.ID)
			}
			st, created, err := db.BeginFirmwareStep(ctx, FirmwareStep{Key: "k1", RunID: run.ID, Node: "n1", Component: "BMC"}, "test", map[string]string{"to": "1.5.0"})
			if err != nil || !created || st.Status != FirmwareStepStarted {
				t.Fatalf("BeginFirmwareStep = %+v, %v, %v", st, created, err)
			}
			if err := db.SetFirmwareTask(ctx, "k1", "n1", "/redfish/v1/TaskService/Tasks/1", "test"); err != nil {
				t.Fatal(err)
			}
			st, created, err = db.BeginFirmwareStep(ctx, FirmwareStep{Key: "k1", RunID: run.ID, Node: "n1", Component: "BMC"}, "test", nil)
			if err != nil || created || st.Task != "/redfish/v1/TaskService/Tasks/1" {
				t.Errorf("BeginFirmwareStep again = %+v, %v, %v; want the recorded step with its task", st, created, err)
			}
			if err := db.FinishFirmwareStep(ctx, "k1", FirmwareStepDone, json.RawMessage(`{"to":"1.5.0"}`), "", []AuditInput{{Actor: "test", Action: "firmware.verify", Node: "n1", Outcome: "ok"}}); err != nil {
				t.Fatal(err)
			}
			if err := db.FinishFirmwareNode(ctx, run.ID, "n1", FirmwareSucceeded, "updated", "test"); err != nil {
				t.Fatal(err)
			}
			if err := db.FinishFirmwareNode(ctx, run.ID, "n1", FirmwareFailed, "again", "test"); err != nil {
				t.Fatal(err)
			}
			if id, _ := db.FirmwareHold(ctx, "n1"); id != 0 {
				t.Errorf("FirmwareHold(n1) after its outcome = %d, want 0", id)
			}
			steps, err := db.FirmwareSteps(ctx, run.ID)
			if err != nil || len(steps) != 1 || steps[0].Status != FirmwareStepDone || string(steps[0].Result) != `{"to":"1.5.0"}` {
				t.Errorf("FirmwareSteps = %+v, %v", steps, err)
			}
			if err := db.FinishFirmwareRun(ctx, run.ID, FirmwareStopped, "canary failed", "test"); err != nil {
				t.Fatal(err)
			}
			got, err := db.GetFirmwareRun(ctx, run.ID)
			if err != nil || got.Status != FirmwareStopped || got.Finished == nil || got.Nodes[0].Outcome != FirmwareSucceeded || got.Nodes[0].Message != "updated" {
				t.Errorf("GetFirmwareRun = %+v, %v", got, err)
			}
			if r, err := db.RunningFirmwareRun(ctx); err != nil || r != nil {
				t.Errorf("RunningFirmwareRun = %+v, %v; want none", r, err)
			}
			if id, _ := db.FirmwareHold(ctx, "n2"); id != 0 {
				t.Errorf("FirmwareHold(n2) after the run stopped = %d, want 0", id)
			}
			if err := db.PutFirmwareInventory(ctx, "n1", json.RawMessage(`[{"id":"BMC","version":"1.5.0"}]`)); err != nil {
				t.Fatal(err)
			}
			if inv, _, err := db.FirmwareInventory(ctx, "n1"); err != nil || string(inv) != `[{"id":"BMC","version":"1.5.0"}]` {
				t.Errorf("FirmwareInventory = %s, %v", inv, err)
			}
			if _, _, err := db.FirmwareInventory(ctx, "n2"); !errors.Is(err, ErrNotFound) {
				t.Errorf("FirmwareInventory(n2) = %v, want ErrNotFound", err)
			}
			var actions []string
			entries, _ := db.ListAudit(ctx, AuditFilter{})
			for _, e := range entries {
				if len(e.Action) > 9 && e.Action[:9] == "firmware." {
					actions = append(actions, e.Action)
				}
			}
			want := []string{"firmware.run.start", "firmware.flash", "firmware.task", "firmware.verify", "firmware.node.succeeded", "firmware.run.stopped"}
			if len(actions) != len(want) {
				t.Fatalf("audited %q, want %q", actions, want)
			}
			for i := range want {
				if actions[i] != want[i] {
					t.Errorf("audited %q, want %q", actions, want)
					break
				}
			}
			if res, err := db.VerifyAudit(ctx); err != nil || res.Entries == 0 {
				t.Errorf("VerifyAudit = %+v, %v", res, err)
			}
		})
	}
}
