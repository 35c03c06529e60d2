// Package checkintest is a controller stand-in that enforces the agent
// check-in contract (see package checkin) over a real HTTP or HTTPS socket,
// for the agent's tests and for anyone who wants to test against the
// contract without a controller.
package checkintest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Token is one enrolment token the fake controller issued.
type Token struct {
	Node    string
	Phase   checkin.Phase
	Expires time.Time
	used    bool
}

// Server is the fake controller.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	tokens   map[string]*Token
	failures []int // statuses to answer, in order, before serving normally
	received []checkin.Request
	attempts int
	now      func() time.Time
}

// New starts a plain-HTTP fake controller; Close it when done.
func New() *Server {
	s := newServer()
	s.Server = httptest.NewServer(s)
	return s
}

// NewTLS starts an HTTPS fake controller; its CA is s.Certificate().
func NewTLS() *Server {
	s := newServer()
	s.Server = httptest.NewUnstartedServer(s)
	// A client that does not trust the certificate is a case under test,
	// not noise for the log.
	s.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Server.StartTLS()
	return s
}

func newServer() *Server {
	return &Server{tokens: map[string]*Token{}, now: time.Now}
}

// AddToken issues a token for a node and the phase it may check in for.
func (s *Server) AddToken(token, node string, phase checkin.Phase, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = &Token{Node: node, Phase: phase, Expires: s.now().Add(ttl)}
}

// FailNext makes the next len(statuses) requests fail with those statuses
// (503 for "controller starting", say) before the contract is served.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, statuses...)
}

// Received returns the accepted check-ins.
func (s *Server) Received() []checkin.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]checkin.Request(nil), s.received...)
}

// Attempts counts every request that reached the check-in path.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

func writeErr(w http.ResponseWriter, status int, code, msg, hint string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg, "hint": hint})
}

// ServeHTTP enforces the contract.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != checkin.Path {
		writeErr(w, http.StatusNotFound, "not-found", "no such endpoint "+r.URL.Path, "the agent posts to "+checkin.Path)
		return
	}
	s.mu.Lock()
	s.attempts++
	if len(s.failures) > 0 {
		st := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		w.Header().Set("Retry-After", "0")
		writeErr(w, st, "unavailable", "injected failure", "retry later")
		return
	}
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeErr(w, http.StatusMethodNotAllowed, "method-not-allowed", r.Method+" not allowed", "POST the check-in")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeErr(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "body must be application/json", "")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		writeErr(w, http.StatusUnauthorized, "token-missing", "no bearer token", "boot the node from its Rackstrap boot script")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad-request", "read body: "+err.Error(), "")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req checkin.Request
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad-request", "decode check-in: "+err.Error(), "")
		return
	}
	if _, err := checkin.ParsePhase(string(req.Phase)); err != nil {
		writeErr(w, http.StatusBadRequest, "bad-request", err.Error(), "")
		return
	}
	if req.AgentVersion == "" {
		writeErr(w, http.StatusBadRequest, "bad-request", "agentVersion is empty", "")
		return
	}
	if req.Inventory.Source != inventory.InBand {
		writeErr(w, http.StatusBadRequest, "bad-request", fmt.Sprintf("inventory source %q, want %q", req.Inventory.Source, inventory.InBand), "")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	switch {
	case t == nil:
		writeErr(w, http.StatusUnauthorized, "token-invalid", "unknown enrolment token", "re-render the node's boot script and reboot it")
		return
	case t.used:
		writeErr(w, http.StatusUnauthorized, "token-used", "enrolment token already used", "tokens are single use; re-render the node's boot script and reboot it")
		return
	case s.now().After(t.Expires):
		writeErr(w, http.StatusUnauthorized, "token-expired", "enrolment token expired", "re-render the node's boot script and reboot it")
		return
	case t.Phase != req.Phase:
		writeErr(w, http.StatusConflict, "wrong-phase", fmt.Sprintf("node %s expects a %s check-in, not %s", t.Node, t.Phase, req.Phase), "look at the node's state: 'rackstrap nodes show "+t.Node+"'")
		return
	}
	t.used = true
	s.received = append(s.received, req)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(checkin.Response{Node: t.Node, Accepted: true})
}
