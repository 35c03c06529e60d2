package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
)

// status shows the nodes a gate holds (why, and until when) beside the
// racks, in the table and in JSON; a controller without the holds route
// (404) shows none.
func TestStatusShowsHolds(t *testing.T) {
	t.Parallel()
	retry := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	holds := []lifecycle.Hold{{Node: "r1-n03", Gate: "policy", Rule: "power-windows", Reason: "no power actions until 06:00 UTC (window night)", RetryAt: retry}}
	serve := func(withHolds bool) string {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /api/v1/racks", func(w http.ResponseWriter, _ *http.Request) {
			json.NewEncoder(w).Encode([]model.RackSummary{{Rack: "r1", Nodes: 3, States: map[model.State]int{model.Inspecting: 3}}})
		})
		mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("[]")) })
		if withHolds {
			mux.HandleFunc("GET /api/v1/holds", func(w http.ResponseWriter, _ *http.Request) { json.NewEncoder(w).Encode(holds) })
		}
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	url := serve(true)
	out, err := run(t, "--server", url, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"HELD", "r1-n03", "policy (power-windows)", retry.Format(time.RFC3339), "no power actions until 06:00 UTC"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "--server", url, "status", "-o", "json")
	var doc struct {
		Held []lifecycle.Hold `json:"held"`
	}
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Held) != 1 || doc.Held[0].Node != "r1-n03" {
		t.Errorf("status -o json = %v\n%s", err, out)
	}
	if out, err := run(t, "--server", serve(false), "status"); err != nil || strings.Contains(out, "HELD") {
		t.Errorf("status against a controller without holds = %v\n%s", err, out)
	}
}
