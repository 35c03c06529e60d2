package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

// TestApplySendsHandOffTargets: the targets a manifest declares (per rack,
// overridden per node) reach the controller, before any provisioning.
func TestApplySendsHandOffTargets(t *testing.T) {
	t.Parallel()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	srv, err := api.New(db, storeActor{db}, log, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	feat, err := controller.NewClusterFeature(controller.ClusterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := feat.Start(context.Background(), &controller.Runtime{Store: db, API: srv, Log: log, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	m := filepath.Join(t.TempDir(), "rack.yaml")
	body := "racks:\n  - name: r7\n    profile: qemu-vm\n    handoff: slurm\n    nodes:\n      - slot: 1\n      - slot: 2\n        handoff: kubernetes\n"
	if err := os.WriteFile(m, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "--server", ts.URL, "apply", m); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	resp, err := http.Get(ts.URL + "/api/v1/handoff-targets")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"r7-n01": "slurm"`, `"r7-n02": "kubernetes"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("hand-off targets after apply = %s, want %s", got, want)
		}
	}
}
