package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/test/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	pg, err = pgtest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "store tests need a real PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// engines opens a fresh store on each engine; every test runs on both.
func engines(t *testing.T) map[string]*DB {
	t.Helper()
	ctx := context.Background()
	lite, err := Open(ctx, "", t.TempDir(), Options{RelaxedSync: true})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	dsn, err := pg.NewDatabase("store")
	if err != nil {
		t.Fatal(err)
	}
	pgdb, err := Open(ctx, dsn, "", Options{})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { lite.Close(); pgdb.Close() })
	return map[string]*DB{"sqlite": lite, "postgres": pgdb}
}

func TestCreateNodeIsIdempotent(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			in := model.Node{Name: "n1", Identity: model.Identity{Serial: "S1", MACs: []string{"52:54:00:00:00:01"}, Rack: "r1", Slot: 3}}
			a, created, err := db.CreateNode(ctx, in, "test")
			if err != nil || !created {
				t.Fatalf("CreateNode = %v, %v; want created", created, err)
			}
			if a.State != model.Discovered || a.Desired != model.WantReady {
				t.Errorf("new node state/desired = %s/%s, want Discovered/ready", a.State, a.Desired)
			}
			in.Profile = "changed"
			b, created, err := db.CreateNode(ctx, in, "test")
			if err != nil || created {
				t.Fatalf("second CreateNode = %v, %v; want existing", created, err)
			}
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("re-create changed the node (-first +second):\n%s", diff)
			}
			if _, _, err := db.CreateNode(ctx, model.Node{Name: "bad name"}, "test"); err == nil {
				t.Error("CreateNode accepted a name with a space")
			}
			if _, err := db.GetNode(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetNode(nope) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestApplyTransitionsAndConflicts(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db.CreateNode(ctx, model.Node{Name: "n1", Identity: model.Identity{Rack: "r1"}}, "test")
			n, op, err := db.Apply(ctx, Change{Node: "n1", FromSeq: 0, To: model.Enrolled, Actor: "test", Action: "state.change", StartOp: "provision"})
			if err != nil {
				t.Fatal(err)
			}
			if n.State != model.Enrolled || n.Seq != 1 || op == nil || op.Status != model.OpRunning {
				t.Fatalf("after Apply: state %s seq %d op %+v", n.State, n.Seq, op)
			}
			if _, _, err := db.Apply(ctx, Change{Node: "n1", FromSeq: 0, To: model.Inspecting, Actor: "test", Action: "state.change"}); !errors.Is(err, ErrConflict) {
				t.Fatalf("stale Apply = %v, want ErrConflict", err)
			}
			n, _, err = db.Apply(ctx, Change{Node: "n1", FromSeq: 1, To: model.Failed, Actor: "test", Action: "state.change",
				Failure: &Failure{Class: model.ClassBMCUnreachable, Message: "no answer", From: model.Enrolled}, FinishOps: model.OpFailed})
			if err != nil {
				t.Fatal(err)
			}
			if n.FailureClass != model.ClassBMCUnreachable || n.FailedFrom != model.Enrolled {
				t.Errorf("failure not recorded: %+v", n)
			}
			o, err := db.GetOperation(ctx, op.ID)
			if err != nil || o.Status != model.OpFailed || o.Finished == nil {
				t.Errorf("operation after failure = %+v, %v; want failed and finished", o, err)
			}
			n, _, _ = db.Apply(ctx, Change{Node: "n1", FromSeq: -1, To: model.Enrolled, Actor: "test", Action: "node.retry"})
			if n.FailureClass != "" || n.FailureMsg != "" {
				t.Errorf("retry kept the failure: %+v", n)
			}
			counts, _ := db.CountByState(ctx)
			racks, _ := db.Racks(ctx)
			if counts[model.Enrolled] != 1 || len(racks) != 1 || racks[0].States[model.Enrolled] != 1 {
				t.Errorf("counts %v racks %+v", counts, racks)
			}
			list, _ := db.ListNodes(ctx, NodeFilter{States: []model.State{model.Enrolled}, Rack: "r1"})
			if len(list) != 1 {
				t.Errorf("ListNodes(Enrolled, r1) = %d nodes, want 1", len(list))
			}
		})
	}
}

func TestStepsAndTimeline(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db.CreateNode(ctx, model.Node{Name: "n1"}, "test")
			a, err := db.BeginStep(ctx, "n1", 0, "power-on", "test")
			if err != nil {
				t.Fatal(err)
			}
			if a.Key != "n1/power-on/1" || a.Outcome != model.Running {
				t.Fatalf("BeginStep = %+v", a)
			}
			h, _ := db.StepHistory(ctx, "n1", 0, "power-on")
			if h.Last == nil || h.Last.Outcome != model.Running {
				t.Fatalf("history shows no running intent: %+v", h)
			}
			a.Outcome, a.Class, a.Message = model.FailedOut, model.ClassBMCUnreachable, "timeout"
			if _, err := db.FinishStep(ctx, a, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.FinishStep(ctx, a, "test"); !errors.Is(err, ErrConflict) {
				t.Errorf("finishing twice = %v, want ErrConflict", err)
			}
			b, _ := db.BeginStep(ctx, "n1", 0, "power-on", "test")
			b.Outcome, b.Result = model.Succeeded, json.RawMessage(`{"power":"on"}`)
			db.FinishStep(ctx, b, "test")
			h, _ = db.StepHistory(ctx, "n1", 0, "power-on")
			if h.Failures != 1 || h.Last.Attempt != 2 || h.Last.Outcome != model.Succeeded {
				t.Errorf("history = %d failures, last %+v", h.Failures, h.Last)
			}
			// A later pass keeps counting attempts, so keys never repeat.
			c, _ := db.BeginStep(ctx, "n1", 5, "power-on", "test")
			if c.Attempt != 3 {
				t.Errorf("attempt in a new pass = %d, want 3", c.Attempt)
			}
			tl, err := db.Timeline(ctx, "n1")
			if err != nil || len(tl) != 3 || tl[0].Ended == nil || string(tl[1].Result) != `{"power":"on"}` {
				t.Errorf("Timeline = %+v, %v", tl, err)
			}
			if _, err := db.Timeline(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Timeline(ghost) = %v, want ErrNotFound", err)
			}
		})
	}
}

// fill makes an audit chain of n entries (one node creation each).
func fill(t *testing.T, db *DB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, _, err := db.CreateNode(context.Background(), model.Node{Name: fmt.Sprintf("n%d", i)}, "test"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditChainDetectsTampering(t *testing.T) {
	t.Parallel()
	tamper := map[string]struct {
		sql     string
		wantSeq int64
	}{
		"flipped byte": {`UPDATE audit SET body = REPLACE(body, '"actor":"test"', '"actor":"tesu"') WHERE seq = 3`, 3},
		"deleted":      {`DELETE FROM audit WHERE seq = 2`, 2},
		"swapped": {`UPDATE audit SET body = CASE seq WHEN 2 THEN (SELECT body FROM audit WHERE seq = 3) ELSE (SELECT body FROM audit WHERE seq = 2) END,
			hash = CASE seq WHEN 2 THEN (SELECT hash FROM audit WHERE seq = 3) ELSE (SELECT hash FROM audit WHERE seq = 2) END,
			prev_hash = CASE seq WHEN 2 THEN (SELECT prev_hash FROM audit WHERE seq = 3) ELSE (SELECT prev_hash FROM audit WHERE seq = 2) END
			WHERE seq IN (2, 3)`, 2},
		"hash rewritten": {`UPDATE audit SET hash = REPLACE(hash, SUBSTR(hash, 1, 1), 'x') WHERE seq = 4`, 4},
	}
	for tname, tc := range tamper {
		for ename, db := range engines(t) {
			t.Run(tname+"/"+ename, func(t *testing.T) {
				ctx := context.Background()
				fill(t, db, 5)
				res, err := db.VerifyAudit(ctx)
				if err != nil || res.Entries != 5 || len(res.Head) != 64 {
					t.Fatalf("VerifyAudit(intact) = %+v, %v", res, err)
				}
				if _, err := db.w.ExecContext(ctx, tc.sql); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				_, err = db.VerifyAudit(ctx)
				var ce *ChainError
				if !errors.As(err, &ce) || ce.Seq != tc.wantSeq {
					t.Fatalf("VerifyAudit(%s) = %v, want chain error at %d", tname, err, tc.wantSeq)
				}
			})
		}
	}
}

func TestAuditListAndDetail(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			fill(t, db, 3)
			if err := db.Audit(ctx, AuditInput{Actor: "op", Action: "power.on", Node: "n1", Outcome: "ok", Detail: map[string]any{"b": 1, "a": "x"}}); err != nil {
				t.Fatal(err)
			}
			all, err := db.ListAudit(ctx, AuditFilter{})
			if err != nil || len(all) != 4 {
				t.Fatalf("ListAudit = %d, %v", len(all), err)
			}
			mine, _ := db.ListAudit(ctx, AuditFilter{Node: "n1"})
			if len(mine) != 2 || mine[1].Action != "power.on" || string(mine[1].Detail) != `{"a":"x","b":1}` {
				t.Errorf("ListAudit(n1) = %+v", mine)
			}
			if all[0].PrevHash != genesisHash || all[1].PrevHash != all[0].Hash {
				t.Error("entries are not chained")
			}
			later, _ := db.ListAudit(ctx, AuditFilter{After: 2})
			if len(later) != 2 || later[0].Seq != 3 {
				t.Errorf("ListAudit(after 2) = %+v", later)
			}
		})
	}
}

func TestOpenErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for in, want := range map[string]string{
		"mysql://x": "unsupported --database",
		"postgres://u:secret@127.0.0.1:1/nothing": "check that the database is running",
	} {
		_, err := Open(ctx, in, "", Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) leaked the password: %v", in, err)
		}
	}
	if _, err := Open(ctx, "", "", Options{}); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("Open with nothing = %v, want a hint about --data-dir", err)
	}
}

func TestAgentTokensAreOneTimeAndBound(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db.CreateNode(ctx, model.Node{Name: "n1"}, "test")
			tok, err := db.IssueToken(ctx, "n1", "netboot", time.Hour, "test")
			if err != nil || len(tok) < 40 {
				t.Fatalf("IssueToken = %q, %v", tok, err)
			}
			if _, err := db.RecordCheckIn(ctx, tok, "firstboot", "v1", nil, "agent"); !errors.Is(err, ErrWrongPhase) {
				t.Errorf("check-in in the wrong phase = %v, want ErrWrongPhase", err)
			}
			before := time.Now().Add(-time.Second)
			node, err := db.RecordCheckIn(ctx, tok, "netboot", "v1", json.RawMessage(`{"system":{}}`), "agent")
			if err != nil || node != "n1" {
				t.Fatalf("RecordCheckIn = %q, %v", node, err)
			}
			if _, err := db.RecordCheckIn(ctx, tok, "netboot", "v1", nil, "agent"); !errors.Is(err, ErrTokenUsed) {
				t.Errorf("second use = %v, want ErrTokenUsed", err)
			}
			if _, err := db.RecordCheckIn(ctx, "forged", "netboot", "v1", nil, "agent"); !errors.Is(err, ErrTokenInvalid) {
				t.Errorf("unknown token = %v, want ErrTokenInvalid", err)
			}
			old, _ := db.IssueToken(ctx, "n1", "netboot", -time.Second, "test")
			if _, err := db.RecordCheckIn(ctx, old, "netboot", "v1", nil, "agent"); !errors.Is(err, ErrTokenExpired) {
				t.Errorf("expired token = %v, want ErrTokenExpired", err)
			}
			c, err := db.LatestCheckIn(ctx, "n1", "netboot", before)
			if err != nil || c == nil || string(c.Inventory) != `{"system":{}}` {
				t.Errorf("LatestCheckIn = %+v, %v", c, err)
			}
			if c, _ := db.LatestCheckIn(ctx, "n1", "netboot", time.Now().Add(time.Hour)); c != nil {
				t.Errorf("LatestCheckIn(since the future) = %+v, want none", c)
			}
			entries, _ := db.ListAudit(ctx, AuditFilter{Node: "n1"})
			for _, e := range entries {
				if strings.Contains(string(e.Detail), tok) {
					t.Errorf("audit entry %d contains the token", e.Seq)
				}
			}
		})
	}
}

func TestNodeByMACFollowsIdentity(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db.CreateNode(ctx, model.Node{Name: "n1", Identity: model.Identity{MACs: []string{"52:54:00:00:00:01"}}}, "test")
			db.CreateNode(ctx, model.Node{Name: "n2"}, "test")
			if got, err := db.NodeByMAC(ctx, "52:54:00:00:00:01"); err != nil || got != "n1" {
				t.Errorf("NodeByMAC = %q, %v", got, err)
			}
			// Enrolment learns the real MACs from the BMC.
			db.Apply(ctx, Change{Node: "n1", FromSeq: -1, Identity: &model.Identity{MACs: []string{"52:54:00:00:00:0a"}}, Actor: "test", Action: "x"})
			if _, err := db.NodeByMAC(ctx, "52:54:00:00:00:01"); !errors.Is(err, ErrNotFound) {
				t.Errorf("old MAC still maps: %v", err)
			}
			db.FillIdentity(ctx, "n2", model.Identity{MACs: []string{"52:54:00:00:00:02"}}, "", "test")
			for mac, want := range map[string]string{"52:54:00:00:00:0a": "n1", "52:54:00:00:00:02": "n2"} {
				if got, err := db.NodeByMAC(ctx, mac); err != nil || got != want {
					t.Errorf("NodeByMAC(%s) = %q, %v; want %s", mac, got, err, want)
				}
			}
		})
	}
}

func TestBoundIP(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			db.CommitLeases(ctx, []LeaseRow{
				{IP: "10.0.0.5", MAC: "52:54:00:00:00:01", State: "released", Expires: now, Updated: now},
				{IP: "10.0.0.6", MAC: "52:54:00:00:00:02", State: "bound", Expires: now.Add(time.Hour), Updated: now},
			})
			for macs, want := range map[string]string{"52:54:00:00:00:01": "", "52:54:00:00:00:01,52:54:00:00:00:02": "10.0.0.6"} {
				if got, err := db.BoundIP(ctx, strings.Split(macs, ",")); err != nil || got != want {
					t.Errorf("BoundIP(%s) = %q, %v; want %q", macs, got, err, want)
				}
			}
		})
	}
}
