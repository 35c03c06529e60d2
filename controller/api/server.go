// Package api serves the controller's REST API under /api/v1, its OpenAPI
// document, /healthz and Prometheus /metrics, and holds the Go client the
// CLI uses.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

//go:embed openapi.json
var openAPI []byte

// Actor applies operator actions; the lifecycle engine implements it.
type Actor interface {
	Act(ctx context.Context, r lifecycle.Request) (model.Operation, error)
}

// Server is the HTTP API.
type Server struct {
	db      *store.DB
	actor   Actor
	log     *slog.Logger
	gather  prometheus.Gatherer
	started time.Time
	mux     *http.ServeMux
	secrets *secrets.Box
	// all is every route served: the built-in table plus extensions.
	all []Route
	// authorize, when set, decides every request (SetAuthorizer).
	authorize Authorizer
	perms     map[string]Permission // mux pattern → permission
	// doc is the OpenAPI document served: openapi.json merged with the
	// extensions' fragments.
	doc []byte
}

// SetSecrets enables storing BMC logins (sealed with box).
func (s *Server) SetSecrets(box *secrets.Box) { s.secrets = box }

// route is one built-in API endpoint. The table is the list the mux is
// built from (with the extensions), and the test checks it against the
// served OpenAPI document both ways.
type route struct {
	method, path string
	perm         Permission
	handle       func(*Server, http.ResponseWriter, *http.Request) error
}

var routes = []route{
	{"GET", "/healthz", PermPublic, (*Server).health},
	{"GET", "/metrics", PermPublic, nil}, // promhttp
	{"GET", "/api/v1/openapi.json", PermPublic, (*Server).openapi},
	{"GET", "/api/v1/nodes", PermRead, (*Server).listNodes},
	{"POST", "/api/v1/nodes", PermOperate, (*Server).createNode},
	{"GET", "/api/v1/nodes/{name}", PermRead, (*Server).getNode},
	{"GET", "/api/v1/nodes/{name}/timeline", PermRead, (*Server).timeline},
	{"POST", "/api/v1/nodes/{name}/actions", PermOperate, (*Server).act},
	{"PUT", "/api/v1/nodes/{name}/bmc-credentials", PermAdmin, (*Server).setBMCCredentials},
	{"GET", "/api/v1/racks", PermRead, (*Server).listRacks},
	{"GET", "/api/v1/racks/{rack}", PermRead, (*Server).getRack},
	{"GET", "/api/v1/audit", PermAudit, (*Server).listAudit},
	{"GET", "/api/v1/audit/verify", PermAudit, (*Server).verifyAudit},
	{"GET", "/api/v1/operations", PermRead, (*Server).listOperations},
	{"GET", "/api/v1/operations/{id}", PermRead, (*Server).getOperation},
	{"POST", "/api/v1/agent/checkin", PermAgent, (*Server).checkIn},
	{"GET", "/api/v1/agent/task", PermAgent, (*Server).nextTask},
	{"POST", "/api/v1/agent/task/result", PermAgent, (*Server).taskResult},
}

// New builds the API. reg receives the API's own series (nodes per state);
// gather is what /metrics exposes (usually the same registry).
func New(db *store.DB, actor Actor, log *slog.Logger, reg prometheus.Registerer, gather prometheus.Gatherer) (*Server, error) {
	if db == nil || actor == nil || log == nil || reg == nil || gather == nil {
		return nil, errors.New("api: New needs a store, an actor, a logger and a metrics registry")
	}
	s := &Server{db: db, actor: actor, log: log, gather: gather, started: time.Now(), mux: http.NewServeMux(), doc: openAPI, perms: map[string]Permission{}}
	if err := reg.Register(&stateCollector{db: db}); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	for _, r := range routes {
		pattern := r.method + " " + r.path
		s.all = append(s.all, Route{Method: r.method, Path: r.path, Perm: r.perm})
		s.perms[pattern] = r.perm
		if r.handle == nil {
			s.mux.Handle(pattern, promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
			continue
		}
		h := r.handle
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			if err := h(s, w, req); err != nil {
				s.fail(w, req, err)
			}
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s", req.Method, req.URL.Path), "see /api/v1/openapi.json for the routes")
	})
	return s, nil
}

// ServeHTTP logs and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: 200}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("api: panic", "method", r.Method, "path", r.URL.Path, "panic", p)
			writeError(rec, http.StatusInternalServerError, "internal", "internal error", "see the controller log")
		}
		level := slog.LevelDebug
		if r.Method != http.MethodGet || rec.status >= 500 {
			level = slog.LevelInfo
		}
		s.log.Log(r.Context(), level, "api", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
	}()
	if s.authorize != nil {
		var err error
		if r, err = s.authorizeRequest(r); err != nil {
			s.fail(rec, r, err)
			return
		}
	}
	s.mux.ServeHTTP(rec, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Error is the JSON body of every error response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// httpError carries a status and hint to fail.
type httpError struct {
	status int
	body   Error
}

func (e *httpError) Error() string { return e.body.Message }

func badRequest(msg, hint string) error {
	return &httpError{http.StatusBadRequest, Error{"bad_request", msg, hint}}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeJSON(w, he.status, he.body)
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error(), "list what exists with GET /api/v1/nodes or 'rackstrap nodes list'")
	case errors.Is(err, lifecycle.ErrNotAllowed):
		writeError(w, http.StatusConflict, "not_allowed", err.Error(), "check the node's state with 'rackstrap nodes show NAME'")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error(), "the node changed while the request ran; read it again and retry")
	default:
		s.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", err.Error(), "see the controller log")
	}
}

func writeError(w http.ResponseWriter, status int, code, msg, hint string) {
	writeJSON(w, status, Error{Code: code, Message: msg, Hint: hint})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// decode reads a strict JSON body: unknown fields and trailing data are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body is not valid: "+err.Error(), "send a JSON object as described in /api/v1/openapi.json")
	}
	if dec.More() {
		return badRequest("request body has data after the JSON object", "send exactly one JSON object")
	}
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.db.CountByState(ctx); err != nil {
		return &httpError{http.StatusServiceUnavailable, Error{"unhealthy", "store: " + err.Error(), "check the database the controller uses"}}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "store": s.db.Engine(), "uptimeSeconds": int(time.Since(s.started).Seconds())})
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(s.doc)
	return err
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	f := store.NodeFilter{Rack: r.URL.Query().Get("rack")}
	if st := r.URL.Query().Get("state"); st != "" {
		for _, one := range strings.Split(st, ",") {
			state, err := model.ParseState(one)
			if err != nil {
				return badRequest(err.Error(), "filter with ?state=Ready or ?state=Failed,Quarantined")
			}
			f.States = append(f.States, state)
		}
	}
	nodes, err := s.db.ListNodes(r.Context(), f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nonNil(nodes))
}

// NodeCreate is the body of POST /api/v1/nodes.
type NodeCreate struct {
	Name     string         `json:"name"`
	Identity model.Identity `json:"identity"`
	Profile  string         `json:"profile,omitempty"`
	Desired  model.Desired  `json:"desired,omitempty"`
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) error {
	var in NodeCreate
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Desired != "" {
		if _, err := model.ParseDesired(string(in.Desired)); err != nil {
			return badRequest(err.Error(), "")
		}
	}
	for i, mac := range in.Identity.MACs {
		norm, err := model.NormalizeMAC(mac)
		if err != nil {
			return badRequest(err.Error(), "")
		}
		in.Identity.MACs[i] = norm
	}
	n, created, err := s.db.CreateNode(r.Context(), model.Node{Name: in.Name, Identity: in.Identity, Profile: in.Profile, Desired: in.Desired}, actorOf(r))
	if errors.Is(err, store.ErrInvalidName) {
		return badRequest(err.Error(), "")
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	} else {
		// An existing node gets what it still lacks (a machine found by its
		// discovery boot learns its BMC); nothing it has is overwritten.
		if _, err := s.db.FillIdentity(r.Context(), in.Name, in.Identity, in.Profile, actorOf(r)); err != nil {
			return err
		}
		if n, err = s.db.GetNode(r.Context(), in.Name); err != nil {
			return err
		}
	}
	return writeJSON(w, status, n)
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	n, err := s.db.GetNode(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n)
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) error {
	steps, err := s.db.Timeline(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nonNil(steps))
}

// ActionRequest is the body of POST /api/v1/nodes/{name}/actions.
type ActionRequest struct {
	Action  lifecycle.Action `json:"action"`
	HandOff bool             `json:"handOff,omitempty"`
}

func (s *Server) act(w http.ResponseWriter, r *http.Request) error {
	var in ActionRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	op, err := s.actor.Act(r.Context(), lifecycle.Request{Node: r.PathValue("name"), Action: in.Action, HandOff: in.HandOff, Actor: actorOf(r)})
	if err != nil {
		if errors.Is(err, lifecycle.ErrUnknownAction) {
			return badRequest(err.Error(), "")
		}
		return err
	}
	return writeJSON(w, http.StatusAccepted, op)
}

func (s *Server) listRacks(w http.ResponseWriter, r *http.Request) error {
	racks, err := s.db.Racks(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nonNil(racks))
}

// RackDetail is a rack's summary and its nodes.
type RackDetail struct {
	model.RackSummary
	NodeList []model.Node `json:"nodeList"`
}

func (s *Server) getRack(w http.ResponseWriter, r *http.Request) error {
	rack := r.PathValue("rack")
	nodes, err := s.db.ListNodes(r.Context(), store.NodeFilter{Rack: rack})
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return fmt.Errorf("rack %q has no nodes: %w", rack, store.ErrNotFound)
	}
	d := RackDetail{RackSummary: model.RackSummary{Rack: rack, Nodes: len(nodes), States: map[model.State]int{}}, NodeList: nodes}
	for _, n := range nodes {
		d.States[n.State]++
	}
	return writeJSON(w, http.StatusOK, d)
}

func intParam(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest(fmt.Sprintf("?%s=%q is not a non-negative number", name, v), "")
	}
	return n, nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	after, err := intParam(r, "after")
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit")
	if err != nil {
		return err
	}
	entries, err := s.db.ListAudit(r.Context(), store.AuditFilter{Node: r.URL.Query().Get("node"), After: after, Limit: int(limit)})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nonNil(entries))
}

// VerifyReply is the body of GET /api/v1/audit/verify.
type VerifyReply struct {
	Intact  bool   `json:"intact"`
	Entries int64  `json:"entries"`
	Head    string `json:"headHash,omitempty"`
	BadSeq  int64  `json:"firstBadEntry,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	res, err := s.db.VerifyAudit(r.Context())
	var ce *store.ChainError
	switch {
	case errors.As(err, &ce):
		return writeJSON(w, http.StatusOK, VerifyReply{Entries: res.Entries, BadSeq: ce.Seq, Reason: ce.Reason})
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusOK, VerifyReply{Intact: true, Entries: res.Entries, Head: res.Head})
}

func (s *Server) listOperations(w http.ResponseWriter, r *http.Request) error {
	limit, err := intParam(r, "limit")
	if err != nil {
		return err
	}
	ops, err := s.db.ListOperations(r.Context(), r.URL.Query().Get("node"), int(limit))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nonNil(ops))
}

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return badRequest(fmt.Sprintf("operation id %q is not a number", r.PathValue("id")), "operation ids come from POST /api/v1/nodes/{name}/actions")
	}
	op, err := s.db.GetOperation(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, op)
}

// actorOf names who asked, for the audit log: the caller the authorizer
// named, or the remote address when no authorizer is set.
func actorOf(r *http.Request) string { return Caller(r) }

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// stateCollector reports nodes per state at scrape time, from the store.
type stateCollector struct{ db *store.DB }

var nodesDesc = prometheus.NewDesc("rackstrap_nodes", "Nodes per lifecycle state.", []string{"state"}, nil)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- nodesDesc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.db.CountByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(nodesDesc, err)
		return
	}
	for _, s := range model.States {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// CheckInRequest is the body an agent posts to /api/v1/agent/checkin.
type CheckInRequest struct {
	Phase        string          `json:"phase"`
	AgentVersion string          `json:"agentVersion"`
	Inventory    json.RawMessage `json:"inventory"`
	// Notes are the agent's collectors' remarks (a collector that failed,
	// a fact it could not read); they are logged with the check-in.
	Notes []string `json:"notes,omitempty"`
}

// CheckInReply tells the agent which node it was pinned to, and gives it a
// session token for fetching its tasks.
type CheckInReply struct {
	Node     string `json:"node"`
	Accepted bool   `json:"accepted"`
	Session  string `json:"session"`
}

func (s *Server) checkIn(w http.ResponseWriter, r *http.Request) error {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return &httpError{http.StatusUnauthorized, Error{"unauthorized", "no enrolment token", "the agent reads its token from rackstrap.token= on the kernel command line: boot the node through Rackstrap's iPXE script"}}
	}
	var in CheckInRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Phase != "netboot" && in.Phase != "firstboot" {
		return badRequest(fmt.Sprintf("unknown phase %q", in.Phase), "phase is netboot or firstboot")
	}
	if len(in.Inventory) > 0 && string(in.Inventory) != "null" {
		if _, err := inventory.Parse(in.Inventory); err != nil {
			return badRequest("inventory is not valid: "+err.Error(), "send the hwprofiles/inventory JSON model")
		}
	}
	node, err := s.db.RecordCheckIn(r.Context(), token, in.Phase, in.AgentVersion, in.Inventory, "agent:"+r.RemoteAddr)
	if err == nil && len(in.Notes) > 0 {
		s.log.Info("agent check-in notes", "node", node, "phase", in.Phase, "notes", in.Notes)
	}
	if err == nil && len(in.Inventory) > 0 {
		// A machine found by its discovery boot keeps what it reported.
		if n, gerr := s.db.GetNode(r.Context(), node); gerr == nil && n.State == model.Discovered && n.Identity.BMC == "" {
			if _, _, aerr := s.db.Apply(r.Context(), store.Change{Node: node, FromSeq: n.Seq, Inventory: in.Inventory,
				Actor: "agent:" + r.RemoteAddr, Action: "node.inventory"}); aerr != nil {
				s.log.Error("record the inventory of a discovered machine", "node", node, "err", aerr)
			}
		}
	}
	switch {
	case errors.Is(err, store.ErrWrongPhase):
		return &httpError{http.StatusConflict, Error{"wrong_phase", err.Error(), "the token belongs to another boot of this node; reboot it through Rackstrap"}}
	case errors.Is(err, store.ErrTokenInvalid), errors.Is(err, store.ErrTokenUsed), errors.Is(err, store.ErrTokenExpired):
		s.log.Warn("agent check-in refused", "remote", r.RemoteAddr, "err", err)
		return &httpError{http.StatusUnauthorized, Error{"unauthorized", err.Error(), "tokens are single use and expire; reboot the node through Rackstrap to get a new one"}}
	case err != nil:
		return err
	}
	session, err := s.db.IssueToken(r.Context(), node, "session", store.SessionTTL, "controller")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, CheckInReply{Node: node, Accepted: true, Session: session})
}

// sessionNode authenticates an agent's session token.
func (s *Server) sessionNode(r *http.Request) (string, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return "", &httpError{http.StatusUnauthorized, Error{"unauthorized", "no agent session token", "check in first: the check-in reply carries the session token"}}
	}
	node, err := s.db.Session(r.Context(), token)
	if errors.Is(err, store.ErrTokenInvalid) || errors.Is(err, store.ErrTokenExpired) {
		return "", &httpError{http.StatusUnauthorized, Error{"unauthorized", "agent session: " + err.Error(), "check in again"}}
	}
	return node, err
}

// MaxTaskWait bounds an agent's long poll (GET /api/v1/agent/task?wait=S).
const MaxTaskWait = 30 * time.Second

// taskRecheck is how often a long poll reads the store while it waits: a
// task another controller adds wakes nobody in this process. Each read
// costs as much as a short poll, and a thousand parked agents make many.
const taskRecheck = 15 * time.Second

// nextTask answers an agent's poll: its next task, or 204 when it has
// none. With ?wait=S (seconds, at most MaxTaskWait) the answer waits up to
// S seconds for a task to come, so that thousands of idle agents cost the
// controller a parked request each instead of a read every second or two.
func (s *Server) nextTask(w http.ResponseWriter, r *http.Request) error {
	node, err := s.sessionNode(r)
	if err != nil {
		return err
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || time.Duration(n)*time.Second > MaxTaskWait {
			return badRequest(fmt.Sprintf("wait=%q is not a number of seconds from 0 to %d", v, int(MaxTaskWait/time.Second)), "give the long poll's wait in whole seconds")
		}
		wait = time.Duration(n) * time.Second
	}
	deadline := time.Now().Add(wait)
	for first := true; ; first = false {
		if done, err := s.pollOnce(w, r, node, first, deadline); done || err != nil {
			return err
		}
	}
}

// pollOnce answers an agent's poll (done) with its next task, with 410
// when its node needs no more (checked on the first round), or with 204
// when the wait is over; else it waits for a task to be queued, the next
// re-read, or the request's end.
func (s *Server) pollOnce(w http.ResponseWriter, r *http.Request, node string, first bool, deadline time.Time) (done bool, err error) {
	added, stop := s.db.TaskAdded(node) // before the read: a task added after it still wakes us
	defer stop()
	t, err := s.db.NextTask(r.Context(), node)
	switch {
	case err != nil:
		return true, err
	case t != nil:
		return true, writeJSON(w, http.StatusOK, t)
	}
	if first {
		// A node that is Ready or handed off gets no more agent tasks: its
		// agent's session is over, and it should stop asking (a new boot
		// brings a new session). Without this every Ready node's agent
		// polls on, and a fleet's polls grow as its square.
		st, err := s.db.NodeState(r.Context(), node)
		if err != nil {
			return true, err
		}
		if st == model.Ready || st == model.HandedOff {
			return true, &httpError{http.StatusGone, Error{"session_done",
				fmt.Sprintf("node %s is %s: the controller has no more tasks for this agent session", node, st),
				"nothing to do: the agent stops; the node's next network boot brings a new session"}}
		}
	}
	left := time.Until(deadline)
	if left <= 0 {
		w.WriteHeader(http.StatusNoContent)
		return true, nil
	}
	timer := time.NewTimer(min(left, taskRecheck))
	defer timer.Stop()
	select {
	case <-added:
	case <-timer.C:
	case <-r.Context().Done():
		// The agent went away, or the controller is stopping (the server's
		// base context): an agent still there retries.
		return true, &httpError{http.StatusServiceUnavailable, Error{"stopping", "the controller is stopping or the request was cancelled", "poll again"}}
	}
	return false, nil
}

// TaskResult is what an agent reports when a task ends.
type TaskResult struct {
	Key     string          `json:"key"`
	OK      bool            `json:"ok"`
	Message string          `json:"message,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
}

func (s *Server) taskResult(w http.ResponseWriter, r *http.Request) error {
	node, err := s.sessionNode(r)
	if err != nil {
		return err
	}
	var in TaskResult
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := s.db.FinishTask(r.Context(), node, in.Key, in.OK, in.Result, in.Message, "agent:"+node); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"recorded": true})
}

// BMCCredentials is the body of PUT /api/v1/nodes/{name}/bmc-credentials.
// The password is sealed before it is stored and is never returned.
type BMCCredentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) setBMCCredentials(w http.ResponseWriter, r *http.Request) error {
	if s.secrets == nil {
		return &httpError{http.StatusServiceUnavailable, Error{"no_secrets", "this controller cannot store BMC passwords", "start it with a secret key (rackstrap serve makes one in the data dir)"}}
	}
	var in BMCCredentials
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Username == "" || in.Password == "" {
		return badRequest("username and password are required", "")
	}
	name := r.PathValue("name")
	if _, err := s.db.GetNode(r.Context(), name); err != nil {
		return err
	}
	sealed, err := s.secrets.Seal(in.Password, name)
	if err != nil {
		return err
	}
	if err := s.db.SetBMCLogin(r.Context(), name, in.Username, sealed, actorOf(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
