package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/test/pgtest"
)

// run executes the CLI with args and returns stdout and the error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

type storeActor struct{ db *store.DB }

func (a storeActor) Act(ctx context.Context, r lifecycle.Request) (model.Operation, error) {
	return lifecycle.Act(ctx, a.db, r)
}

// apiServer serves a fresh store with a few nodes over real HTTP.
func apiServer(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), "", dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []model.Node{
		{Name: "r1-n01", Identity: model.Identity{Rack: "r1", Slot: 1, Serial: "SER1"}},
		{Name: "r1-n02", Identity: model.Identity{Rack: "r1", Slot: 2}},
	} {
		db.CreateNode(context.Background(), n, "test")
	}
	db.Apply(context.Background(), store.Change{Node: "r1-n02", FromSeq: -1, To: model.Failed, Actor: "test", Action: "state.change",
		Failure: &store.Failure{Class: model.ClassBMCUnreachable, Message: "step enroll failed", From: model.Discovered}})
	reg := prometheus.NewRegistry()
	srv, err := api.New(db, storeActor{db}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	box, _ := secrets.New(make([]byte, 32))
	srv.SetSecrets(box)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); db.Close() })
	return ts.URL, dir
}

func TestNodesVerbsAndOutputs(t *testing.T) {
	t.Parallel()
	url, _ := apiServer(t)
	out, err := run(t, "--server", url, "nodes", "list")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "r1-n02") || !strings.Contains(out, "bmc-unreachable") {
		t.Errorf("nodes list = %q, %v", out, err)
	}
	out, err = run(t, "--server", url, "nodes", "list", "--state", "Failed", "-o", "json")
	var nodes []model.Node
	if err != nil || json.Unmarshal([]byte(out), &nodes) != nil || len(nodes) != 1 || nodes[0].Name != "r1-n02" {
		t.Errorf("nodes list --state Failed -o json = %q, %v", out, err)
	}
	out, err = run(t, "--server", url, "nodes", "show", "r1-n01", "-o", "yaml")
	var detail map[string]any
	if err != nil || yaml.Unmarshal([]byte(out), &detail) != nil || detail["name"] != "r1-n01" {
		t.Errorf("nodes show -o yaml = %q, %v", out, err)
	}
	out, err = run(t, "--server", url, "nodes", "show", "r1-n02")
	if err != nil || !strings.Contains(out, "bmc-unreachable") || !strings.Contains(out, "nodes act r1-n02 retry") {
		t.Errorf("nodes show of a failed node = %q, %v; want its failure and the retry command", out, err)
	}
	out, err = run(t, "--server", url, "nodes", "act", "r1-n02", "retry")
	if err != nil || !strings.Contains(out, "retry r1-n02") {
		t.Errorf("nodes act retry = %q, %v", out, err)
	}
	for _, args := range [][]string{
		{"--server", url, "nodes", "show", "ghost"},
		{"--server", url, "nodes", "act", "r1-n01", "retry"},
		{"--server", "http://127.0.0.1:1", "nodes", "list"},
		{"--server", url, "nodes", "list", "-o", "xml"},
		{"--server", "nowhere", "nodes", "list"},
	} {
		if _, err := run(t, args...); err == nil || !strings.ContainsAny(err.Error(), ";:") {
			t.Errorf("rackstrap %v = %v; want an error that says what to do", args, err)
		}
	}
	out, err = run(t, "--server", url, "audit", "verify")
	if err != nil || !strings.Contains(out, "intact") {
		t.Errorf("audit verify through the API = %q, %v", out, err)
	}
}

func TestAuditVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	tamper := map[string]struct {
		sql  string
		want string
	}{
		"flipped byte": {`UPDATE audit SET body = REPLACE(body, '"actor":"test"', '"actor":"tesT"') WHERE seq = 2`, "entry 2"},
		"deleted":      {`DELETE FROM audit WHERE seq = 3`, "entry 3"},
		"swapped": {`UPDATE audit SET body = CASE seq WHEN 2 THEN (SELECT body FROM audit WHERE seq = 3) ELSE (SELECT body FROM audit WHERE seq = 2) END,
			hash = CASE seq WHEN 2 THEN (SELECT hash FROM audit WHERE seq = 3) ELSE (SELECT hash FROM audit WHERE seq = 2) END,
			prev_hash = CASE seq WHEN 2 THEN (SELECT prev_hash FROM audit WHERE seq = 3) ELSE (SELECT prev_hash FROM audit WHERE seq = 2) END
			WHERE seq IN (2, 3)`, "entry 2"},
	}
	for name, tc := range tamper {
		for _, engine := range []string{"sqlite", "postgres"} {
			t.Run(name+"/"+engine, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				dir := t.TempDir()
				var flag, location, driver, dsn string
				if engine == "sqlite" {
					flag, location, driver, dsn = "--data-dir", dir, "sqlite", filepath.Join(dir, "rackstrap.db")
				} else {
					var err error // not the test's: the subtests run in parallel
					if dsn, err = pg.NewDatabase("cli"); err != nil {
						t.Fatal(err)
					}
					flag, location, driver = "--database", dsn, "pgx"
				}
				db, err := store.Open(ctx, map[bool]string{true: dsn}[engine == "postgres"], dir, store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{"a", "b", "c", "d"} {
					db.CreateNode(ctx, model.Node{Name: n}, "test")
				}
				db.Close()
				if out, err := run(t, "audit", "verify", flag, location); err != nil || !strings.Contains(out, "intact: 4 entries") {
					t.Fatalf("audit verify before tampering = %q, %v", out, err)
				}
				raw, err := sql.Open(driver, dsn)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := raw.Exec(tc.sql); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				raw.Close()
				_, err = run(t, "audit", "verify", flag, location)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("audit verify after %s = %v; want an error naming %s", name, err, tc.want)
				}
			})
		}
	}
}

func TestHelpIsComplete(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	for _, c := range root.Commands() {
		if c.Short == "" {
			t.Errorf("rackstrap %s has no short help", c.Name())
		}
	}
	out, err := run(t, "serve", "--help")
	if err != nil || !strings.Contains(out, "--data-dir") || !strings.Contains(out, "--database") || !strings.Contains(out, "--api-listen") {
		t.Errorf("serve --help = %q, %v", out, err)
	}
	if _, err := run(t, "serve", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--simulate") {
		t.Errorf("serve without an edge = %v; want a hint to pass --simulate", err)
	}
	if _, err := run(t, "serve", "--simulate", "1", "--simulate-fault", "x=melted"); err == nil || !strings.Contains(err.Error(), "bad-gpu") {
		t.Errorf("unknown fault = %v; want the list of faults", err)
	}
	if out, err := run(t, "version", "-o", "json"); err != nil || !strings.Contains(out, `"version"`) {
		t.Errorf("version -o json = %q, %v", out, err)
	}
}

func TestDemoRunsToTheEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, err := run(t, "demo", "--data-dir", dir, "--boot-delay", "10ms", "--image-mib", "4")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"Discovered 8 Redfish BMCs", "enrolled 8", "Summary", "1 Quarantined, 6 Ready, 1 Failed", "reseat GPU", "image-verify-failed", "Audit chain intact", dir} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	url, _ := apiServer(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m := write("rack.yaml", "racks:\n  - name: r9\n    profile: qemu-vm\n    nodes:\n      - slot: 1\n        serial: S1\n      - slot: 2\n")
	out, err := run(t, "--server", url, "apply", m, "-o", "json")
	var first []applied
	if err != nil || json.Unmarshal([]byte(out), &first) != nil || len(first) != 2 || first[0].Result != "created" {
		t.Fatalf("first apply = %q, %v", out, err)
	}
	out, err = run(t, "--server", url, "apply", m, "-o", "json")
	var second []applied
	if err != nil || json.Unmarshal([]byte(out), &second) != nil || second[0].Result != "unchanged" || second[1].Result != "unchanged" {
		t.Errorf("second apply = %q, %v; want both unchanged", out, err)
	}
	changed := write("changed.yaml", "racks:\n  - name: r9\n    nodes:\n      - slot: 1\n        serial: S1-NEW\n")
	out, err = run(t, "--server", url, "apply", changed)
	if err != nil || !strings.Contains(out, "differs") || !strings.Contains(out, `manifest "S1-NEW", controller "S1"`) {
		t.Errorf("apply of a changed manifest = %q, %v", out, err)
	}
	bad := write("bad.yaml", "racks:\n  - name: r9\n    colour: blue\n")
	if _, err := run(t, "--server", url, "apply", bad); err == nil || !strings.Contains(err.Error(), "bad.yaml:3") || !strings.Contains(err.Error(), "nothing was applied") {
		t.Errorf("apply of a bad manifest = %v", err)
	}
	out, err = run(t, "--server", url, "apply", m, "--provision")
	if err != nil {
		t.Fatalf("apply --provision: %v", err)
	}
	if out, _ := run(t, "--server", url, "nodes", "show", "r9-n01", "-o", "json"); !strings.Contains(out, `"desired": "ready"`) {
		t.Errorf("node after apply --provision: %s", out)
	}
}

func TestStatusAndProvision(t *testing.T) {
	t.Parallel()
	url, _ := apiServer(t)
	out, err := run(t, "--server", url, "status")
	if err != nil || !strings.Contains(out, "r1") || !strings.Contains(out, "Discovered 1, Failed 1") || !strings.Contains(out, "r1-n02") {
		t.Errorf("status = %q, %v", out, err)
	}
	out, err = run(t, "--server", url, "provision", "--rack", "r1", "--hand-off", "-o", "json")
	if err != nil || !strings.Contains(out, `"running"`) || !strings.Contains(out, "skipped") {
		t.Errorf("provision --rack r1 = %q, %v; want one provisioned and the Failed one skipped", out, err)
	}
	if out, _ := run(t, "--server", url, "nodes", "show", "r1-n01", "-o", "json"); !strings.Contains(out, `"desired": "handed-off"`) {
		t.Errorf("r1-n01 after provision --hand-off: %s", out)
	}
	for _, args := range [][]string{{"provision"}, {"provision", "--all", "x"}, {"provision", "--rack", "nowhere"}} {
		if _, err := run(t, append([]string{"--server", url}, args...)...); err == nil {
			t.Errorf("rackstrap %v succeeded", args)
		}
	}
}
