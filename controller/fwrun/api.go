package fwrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
)

// RunView is a run with its steps (GET /api/v1/firmware/runs/{id}).
type RunView struct {
	store.FirmwareRun
	Steps []store.FirmwareStep `json:"steps"`
}

// NodeCompliance is one node's compliance with a baseline.
type NodeCompliance struct {
	Node     string                 `json:"node"`
	Rack     string                 `json:"rack,omitempty"`
	Baseline string                 `json:"baseline"`
	Summary  map[firmware.State]int `json:"summary,omitempty"`
	Status   []firmware.Status      `json:"status"`
	Error    string                 `json:"error,omitempty"`
}

// Extension is the firmware API: runs, compliance, and the packages BMCs
// fetch for SimpleUpdate.
func (r *Runner) Extension() api.Extension {
	return api.Extension{
		Name: "firmware",
		Routes: []api.Route{
			{Method: "POST", Path: "/api/v1/firmware/runs", Perm: api.PermAdmin, Handle: r.handleStart},
			{Method: "GET", Path: "/api/v1/firmware/runs", Perm: api.PermRead, Handle: r.handleList},
			{Method: "GET", Path: "/api/v1/firmware/runs/{id}", Perm: api.PermRead, Handle: r.handleGet},
			{Method: "POST", Path: "/api/v1/firmware/runs/{id}/cancel", Perm: api.PermAdmin, Handle: r.handleCancel},
			{Method: "GET", Path: "/api/v1/firmware/compliance", Perm: api.PermRead, Handle: r.handleCompliance},
			// BMCs fetch packages without an API token; only packages of a
			// baseline a run uses are served, by their sha256.
			{Method: "GET", Path: "/api/v1/firmware/packages/{sha256}/{file}", Perm: api.PermPublic, Handle: r.handlePackage},
		},
		OpenAPI: openAPI,
	}
}

// apiError maps the runner's errors onto API errors.
func apiError(err error) error {
	switch {
	case errors.Is(err, errBadRequest):
		return api.Errorf(http.StatusBadRequest, "bad_request", "check the baseline name and the firmware directory ('rackstrap serve --firmware-dir')", "%s", strings.TrimPrefix(err.Error(), "bad request: "))
	case errors.Is(err, errNotFound):
		return api.Errorf(http.StatusNotFound, "not_found", "list the nodes with 'rackstrap nodes list'", "%s", strings.TrimPrefix(err.Error(), "not found: "))
	case errors.Is(err, errConflict):
		return api.Errorf(http.StatusConflict, "firmware_run_active", "wait for the running firmware run to end ('rackstrap firmware runs')", "%s", strings.TrimPrefix(err.Error(), "conflict: "))
	}
	return err
}

func (r *Runner) handleStart(w http.ResponseWriter, req *http.Request) error {
	var in RunRequest
	dec := json.NewDecoder(io.LimitReader(req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", `send {"baseline": NAME, "rack": R, "waveSize": N, "maxFailures": K, "dryRun": true}`, "firmware run request: %v", err)
	}
	reply, err := r.Plan(req.Context(), in, api.Caller(req))
	if err != nil {
		return apiError(err)
	}
	status := http.StatusOK
	if reply.Run != nil {
		status = http.StatusAccepted
	}
	return api.WriteJSON(w, status, reply)
}

func (r *Runner) handleList(w http.ResponseWriter, req *http.Request) error {
	runs, err := r.db.ListFirmwareRuns(req.Context(), 100)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []store.FirmwareRun{}
	}
	return api.WriteJSON(w, http.StatusOK, runs)
}

func (r *Runner) handleGet(w http.ResponseWriter, req *http.Request) error {
	id, err := strconv.ParseInt(req.PathValue("id"), 10, 64)
	if err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", "list runs with GET /api/v1/firmware/runs", "run id %q is not a number", req.PathValue("id"))
	}
	v, err := r.View(req.Context(), id)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, v)
}

func (r *Runner) handleCancel(w http.ResponseWriter, req *http.Request) error {
	id, err := strconv.ParseInt(req.PathValue("id"), 10, 64)
	if err != nil {
		return api.Errorf(http.StatusBadRequest, "bad_request", "list runs with GET /api/v1/firmware/runs", "run id %q is not a number", req.PathValue("id"))
	}
	run, err := r.Cancel(req.Context(), id, api.Caller(req))
	if errors.Is(err, errConflict) {
		return api.Errorf(http.StatusConflict, "firmware_run_over", "only a running run can be cancelled", "%s", strings.TrimPrefix(err.Error(), "conflict: "))
	}
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, run)
}

// View returns a run with its steps.
func (r *Runner) View(ctx context.Context, id int64) (RunView, error) {
	run, err := r.db.GetFirmwareRun(ctx, id)
	if err != nil {
		return RunView{}, err
	}
	steps, err := r.db.FirmwareSteps(ctx, id)
	if err != nil {
		return RunView{}, err
	}
	if steps == nil {
		steps = []store.FirmwareStep{}
	}
	return RunView{FirmwareRun: run, Steps: steps}, nil
}

func (r *Runner) handleCompliance(w http.ResponseWriter, req *http.Request) error {
	out, err := r.Compliance(req.Context(), req.URL.Query().Get("baseline"), req.URL.Query().Get("rack"))
	if err != nil {
		return apiError(err)
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

// Compliance compares every node's firmware (of a rack, or all) with a
// baseline (default the controller's).
func (r *Runner) Compliance(ctx context.Context, name, rack string) ([]NodeCompliance, error) {
	if name == "" {
		name = r.cfg.Baseline
	}
	if name == "" {
		return nil, fmt.Errorf("%w: name a baseline (?baseline=NAME)", errBadRequest)
	}
	b, err := r.loadBaseline(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	nodes, err := r.db.ListNodes(ctx, store.NodeFilter{Rack: rack})
	if err != nil {
		return nil, err
	}
	out := make([]NodeCompliance, 0, len(nodes))
	for _, n := range nodes {
		c := NodeCompliance{Node: n.Name, Rack: n.Identity.Rack, Baseline: b.Name, Status: []firmware.Status{}}
		comps, err := r.components(ctx, n)
		if err != nil {
			c.Error = err.Error()
		} else {
			c.Status = firmware.Compliance(b, comps)
			c.Summary = firmware.Summary(c.Status)
		}
		out = append(out, c)
	}
	return out, nil
}

func (r *Runner) handlePackage(w http.ResponseWriter, req *http.Request) error {
	sha := strings.ToLower(req.PathValue("sha256"))
	r.mu.Lock()
	file, ok := r.packages[sha]
	r.mu.Unlock()
	if !ok || filepath.Base(file) != req.PathValue("file") {
		return api.Errorf(http.StatusNotFound, "not_found", "packages are served only while a firmware run uses them", "no firmware package %s/%s", sha, req.PathValue("file"))
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, req, filepath.Base(file), fi.ModTime(), f)
	return nil
}

var openAPI = []byte(`{
  "paths": {
    "/api/v1/firmware/runs": {
      "post": {
        "summary": "Plan a staged firmware update and, unless dryRun, start it (admin)",
        "operationId": "startFirmwareRun",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FirmwareRunRequest"}}}},
        "responses": {
          "200": {"description": "The plan (a dry run, or nothing to update)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FirmwarePlan"}}}},
          "202": {"description": "The plan, and the run it started", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FirmwarePlan"}}}},
          "400": {"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "409": {"description": "Another run is running", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      },
      "get": {
        "summary": "Firmware runs, newest first",
        "operationId": "listFirmwareRuns",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/FirmwareRun"}}}}}}
      }
    },
    "/api/v1/firmware/runs/{id}": {
      "get": {
        "summary": "One firmware run: its nodes, outcomes and steps",
        "operationId": "getFirmwareRun",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
        "responses": {
          "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FirmwareRun"}}}},
          "404": {"description": "No such run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      }
    },
    "/api/v1/firmware/runs/{id}/cancel": {
      "post": {
        "summary": "Cancel a running firmware run: nodes being updated are finished, no other node starts (admin)",
        "operationId": "cancelFirmwareRun",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
        "responses": {
          "200": {"description": "The cancelled run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FirmwareRun"}}}},
          "404": {"description": "No such run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "409": {"description": "The run is over already", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      }
    },
    "/api/v1/firmware/compliance": {
      "get": {
        "summary": "Each node's firmware compared with a baseline",
        "operationId": "firmwareCompliance",
        "parameters": [
          {"name": "baseline", "in": "query", "schema": {"type": "string"}},
          {"name": "rack", "in": "query", "schema": {"type": "string"}}
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/FirmwareCompliance"}}}}}}
      }
    },
    "/api/v1/firmware/packages/{sha256}/{file}": {
      "get": {
        "summary": "A firmware package a running run uses, for BMCs that fetch it (SimpleUpdate)",
        "operationId": "firmwarePackage",
        "parameters": [
          {"name": "sha256", "in": "path", "required": true, "schema": {"type": "string"}},
          {"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}
        ],
        "responses": {
          "200": {"description": "The package", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
          "404": {"description": "Not a package of a run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
      }
    }
  },
  "components": {
    "schemas": {
      "FirmwareRunRequest": {
        "type": "object",
        "properties": {
          "baseline": {"type": "string"}, "rack": {"type": "string"}, "nodes": {"type": "array", "items": {"type": "string"}},
          "canary": {"type": "integer"}, "waveSize": {"type": "integer"}, "maxFailures": {"type": "integer"}, "dryRun": {"type": "boolean"}
        }
      },
      "FirmwarePlan": {
        "type": "object",
        "properties": {
          "dryRun": {"type": "boolean"}, "baseline": {"type": "string"}, "policy": {"type": "object"},
          "waves": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
          "nodes": {"type": "array", "items": {"type": "object"}},
          "run": {"$ref": "#/components/schemas/FirmwareRun"}
        }
      },
      "FirmwareRun": {
        "type": "object",
        "properties": {
          "id": {"type": "integer"}, "baseline": {"type": "string"}, "rack": {"type": "string"}, "status": {"type": "string", "enum": ["running", "done", "stopped", "cancelled"]},
          "reason": {"type": "string"}, "actor": {"type": "string"}, "policy": {"type": "object"},
          "waves": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
          "nodes": {"type": "array", "items": {"type": "object"}}, "steps": {"type": "array", "items": {"type": "object"}},
          "createdAt": {"type": "string", "format": "date-time"}, "finishedAt": {"type": "string", "format": "date-time"}
        }
      },
      "FirmwareCompliance": {
        "type": "object",
        "properties": {
          "node": {"type": "string"}, "rack": {"type": "string"}, "baseline": {"type": "string"}, "summary": {"type": "object"},
          "status": {"type": "array", "items": {"type": "object"}}, "error": {"type": "string"}
        }
      }
    }
  }
}`)
