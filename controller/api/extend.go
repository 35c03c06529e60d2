package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/rackstrap/rackstrap/controller/store"
)

// Permission names what a caller must hold to use a route. Every route
// declares one; access control (tokens, roles, client certificates) maps a
// caller to the permissions it holds.
type Permission string

const (
	// PermPublic routes answer anyone: liveness, metrics, the API document.
	PermPublic Permission = "public"
	// PermAgent routes answer a node's agent holding its own token.
	PermAgent Permission = "agent"
	// PermRead routes show nodes, racks and operations.
	PermRead Permission = "read"
	// PermOperate routes change nodes: provision, power, validate.
	PermOperate Permission = "operate"
	// PermAdmin routes change configuration, keys, users, credentials and
	// firmware.
	PermAdmin Permission = "admin"
	// PermAudit routes show the audit log and reports.
	PermAudit Permission = "audit"
)

// Route is one endpoint. Packages outside api add theirs with Extend.
type Route struct {
	Method, Path string
	Perm         Permission
	// Handle serves the request; an error it returns is written as the
	// API's JSON error (see Errorf).
	Handle func(w http.ResponseWriter, r *http.Request) error
}

// Extension is a set of routes another package serves through the API,
// with the OpenAPI fragment that documents them: a JSON object with
// "paths" and optionally "components": {"schemas": {...}}.
type Extension struct {
	Name    string
	Routes  []Route
	OpenAPI []byte
}

// Extend mounts e's routes and merges its document into the served one.
// Call it before serving.
func (s *Server) Extend(e Extension) error {
	var frag struct {
		Paths      map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(e.OpenAPI, &frag); err != nil {
		return fmt.Errorf("api: extension %s: OpenAPI fragment: %w", e.Name, err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(s.doc, &doc); err != nil {
		return fmt.Errorf("api: served document: %w", err)
	}
	if err := mergeInto(doc, "paths", frag.Paths); err != nil {
		return fmt.Errorf("api: extension %s: %w", e.Name, err)
	}
	var comps map[string]json.RawMessage
	if raw, ok := doc["components"]; ok {
		if err := json.Unmarshal(raw, &comps); err != nil {
			return fmt.Errorf("api: served document components: %w", err)
		}
	}
	if comps == nil {
		comps = map[string]json.RawMessage{}
	}
	if err := mergeInto(comps, "schemas", frag.Components.Schemas); err != nil {
		return fmt.Errorf("api: extension %s: %w", e.Name, err)
	}
	b, _ := json.Marshal(comps)
	doc["components"] = b
	merged, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	for _, r := range e.Routes {
		if r.Handle == nil || r.Perm == "" {
			return fmt.Errorf("api: extension %s: route %s %s needs a handler and a permission", e.Name, r.Method, r.Path)
		}
		for _, have := range s.all {
			if have.Method == r.Method && have.Path == r.Path {
				return fmt.Errorf("api: extension %s: route %s %s is already served", e.Name, r.Method, r.Path)
			}
		}
	}
	for _, r := range e.Routes {
		h := r.Handle
		s.mux.HandleFunc(r.Method+" "+r.Path, func(w http.ResponseWriter, req *http.Request) {
			if err := h(w, req); err != nil {
				s.fail(w, req, err)
			}
		})
		s.all = append(s.all, Route{Method: r.Method, Path: r.Path, Perm: r.Perm})
		s.perms[r.Method+" "+r.Path] = r.Perm
	}
	s.doc = merged
	return nil
}

// mergeInto adds add's keys to the object doc[key], refusing duplicates.
func mergeInto(doc map[string]json.RawMessage, key string, add map[string]json.RawMessage) error {
	if len(add) == 0 {
		return nil
	}
	cur := map[string]json.RawMessage{}
	if raw, ok := doc[key]; ok {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	for k, v := range add {
		if _, dup := cur[k]; dup {
			return fmt.Errorf("%s %q is already documented", key, k)
		}
		cur[k] = v
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	doc[key] = b
	return nil
}

// Routes lists every route served, built-in and extensions, with the
// permission each requires (Handle is nil in the copies).
func (s *Server) Routes() []Route {
	out := make([]Route, len(s.all))
	for i, r := range s.all {
		out[i] = Route{Method: r.Method, Path: r.Path, Perm: r.Perm}
	}
	return out
}

// CheckOpenAPI compares the served document with the served routes both
// ways and says what differs. Extensions' tests call it after Extend.
func (s *Server) CheckOpenAPI() error {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(s.doc, &doc); err != nil {
		return fmt.Errorf("served OpenAPI document is not JSON: %w", err)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, r := range s.all {
		served = append(served, r.Method+" "+r.Path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		return fmt.Errorf("the OpenAPI document and the routes differ:\ndocumented:\n%s\nserved:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	return nil
}

// Errorf returns an error that the API writes as {code, message, hint}
// with the given HTTP status.
func Errorf(status int, code, hint, format string, args ...any) error {
	return &httpError{status, Error{Code: code, Message: fmt.Sprintf(format, args...), Hint: hint}}
}

// WriteJSON writes v as the response body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error { return writeJSON(w, status, v) }

// Store gives extensions the controller's store.
func (s *Server) Store() *store.DB { return s.db }

// Authorizer decides whether r may use a route that requires perm. It
// returns the caller's name, recorded as the actor in the audit log, or an
// error (use Errorf with 401 or 403 and a hint) that is returned as is.
// Access control (tokens, roles, client certificates) implements it.
type Authorizer func(r *http.Request, perm Permission) (caller string, err error)

// SetAuthorizer makes every request pass a; call it before serving.
// Without one every caller is allowed and named by its remote address.
func (s *Server) SetAuthorizer(a Authorizer) { s.authorize = a }

type callerKey struct{}

// Caller names who made r: the authorizer's answer, or "api:" and the
// remote address.
func Caller(r *http.Request) string {
	if c, ok := r.Context().Value(callerKey{}).(string); ok && c != "" {
		return c
	}
	return "api:" + r.RemoteAddr
}

// authorizeRequest finds the permission of the route r matches and asks
// the authorizer. A request that matches no route is left to the mux (404).
func (s *Server) authorizeRequest(r *http.Request) (*http.Request, error) {
	_, pattern := s.mux.Handler(r)
	perm, ok := s.perms[pattern]
	if !ok {
		return r, nil
	}
	caller, err := s.authorize(r, perm)
	if err != nil {
		return r, err
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)), nil
}
