package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/cache"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// FleetAPI is the Feature that shows who drives which rack and lets rack
// image caches register (docs/decisions/0018-rack-cache.md):
//
//	GET    /api/v1/rack-leases          which controller holds each rack, until when
//	GET    /api/v1/rack-caches          registered rack caches, live or expired
//	PUT    /api/v1/rack-caches/{rack}   a cache registers or renews itself
//	DELETE /api/v1/rack-caches/{rack}   drop a rack's cache
//
// serve turns it on always.
type FleetAPI struct{}

// Name implements Feature.
func (FleetAPI) Name() string { return "fleet api" }

// Cache registrations last between MinCacheTTL and MaxCacheTTL.
const (
	MinCacheTTL = 5 * time.Second
	MaxCacheTTL = time.Hour
)

// CacheRegistration is the body of PUT /api/v1/rack-caches/{rack}.
type CacheRegistration struct {
	// URL is where the rack's nodes reach the cache.
	URL string `json:"url"`
	// TTLSeconds: how long the registration lasts unrenewed (default 30).
	TTLSeconds float64 `json:"ttlSeconds,omitempty"`
}

// Start implements Feature.
func (FleetAPI) Start(_ context.Context, rt *Runtime) error {
	if rt.API == nil {
		return nil
	}
	db := rt.Store
	err := rt.API.Extend(api.Extension{Name: "fleet", OpenAPI: []byte(fleetOpenAPI), Routes: []api.Route{
		{Method: "GET", Path: "/api/v1/rack-leases", Perm: api.PermRead, Handle: func(w http.ResponseWriter, r *http.Request) error {
			list, err := db.RackLeases(r.Context())
			if err != nil {
				return err
			}
			if list == nil {
				list = []store.RackLease{}
			}
			return api.WriteJSON(w, http.StatusOK, map[string]any{"leases": list, "now": time.Now().UTC()})
		}},
		{Method: "GET", Path: "/api/v1/rack-caches", Perm: api.PermRead, Handle: func(w http.ResponseWriter, r *http.Request) error {
			list, err := db.RackCaches(r.Context())
			if err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, map[string]any{"caches": list})
		}},
		{Method: "PUT", Path: "/api/v1/rack-caches/{rack}", Perm: api.PermAdmin, Handle: func(w http.ResponseWriter, r *http.Request) error {
			rack := r.PathValue("rack")
			var in CacheRegistration
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				return api.Errorf(http.StatusBadRequest, "bad_request", `send {"url": "http://CACHE:PORT", "ttlSeconds": 30}`, "rack cache registration: %v", err)
			}
			ttl, err := checkRegistration(in)
			if err != nil {
				return api.Errorf(http.StatusBadRequest, "bad_request", `send {"url": "http://CACHE:PORT", "ttlSeconds": 30}`, "rack cache of %s: %v", rack, err)
			}
			c, err := db.RegisterRackCache(r.Context(), rack, strings.TrimSuffix(in.URL, "/"), ttl, api.Caller(r))
			if err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, c)
		}},
		{Method: "DELETE", Path: "/api/v1/rack-caches/{rack}", Perm: api.PermAdmin, Handle: func(w http.ResponseWriter, r *http.Request) error {
			rack := r.PathValue("rack")
			err := db.RemoveRackCache(r.Context(), rack, api.Caller(r))
			if errors.Is(err, store.ErrNotFound) {
				return api.Errorf(http.StatusNotFound, "not_found", "'rackstrap status' lists the registered caches", "rack %s has no registered cache", rack)
			}
			if err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}},
	}})
	if err != nil {
		return err
	}
	return rt.API.CheckOpenAPI()
}

func checkRegistration(in CacheRegistration) (time.Duration, error) {
	u, err := url.Parse(in.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return 0, fmt.Errorf("url %q: want http://host:port, the address the rack's nodes reach the cache at", in.URL)
	}
	ttl := 30 * time.Second
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds * float64(time.Second))
	}
	if ttl < MinCacheTTL || ttl > MaxCacheTTL {
		return 0, fmt.Errorf("ttlSeconds %g: give %g to %g", in.TTLSeconds, MinCacheTTL.Seconds(), MaxCacheTTL.Seconds())
	}
	return ttl, nil
}

// RackCacheImage returns the function that gives a node the URL of its OS
// image: through its rack's cache while one is registered and live
// (cache.BlobURL: the cache fetches the blob once from the controller's
// boot server, verified against img.SHA256), else img unchanged. A store
// error or an image without a digest falls back to the controller (logged):
// the image still arrives, only without the cache. The edge calls it when
// it makes a node's image task (edge.Config.ImageFor).
func RackCacheImage(db *store.DB, log *slog.Logger) func(ctx context.Context, n model.Node, img edge.Image) edge.Image {
	return func(ctx context.Context, n model.Node, img edge.Image) edge.Image {
		if img.URL == "" || n.Identity.Rack == "" {
			return img
		}
		base, ok, err := db.LiveRackCache(ctx, n.Identity.Rack)
		if err != nil {
			log.Warn("rack cache: lookup failed; the node fetches its image from the controller", "node", n.Name, "rack", n.Identity.Rack, "err", err)
			return img
		}
		if !ok {
			return img
		}
		u, err := cache.BlobURL(base, img.URL, img.SHA256)
		if err != nil {
			log.Warn("rack cache: the image cannot go through the cache; the node fetches it from the controller", "node", n.Name, "rack", n.Identity.Rack, "err", err)
			return img
		}
		img.URL = u
		return img
	}
}

const fleetOpenAPI = `{"paths":{
 "/api/v1/rack-leases":{"get":{
  "summary":"Which controller drives each rack (multi-controller operation), until when",
  "operationId":"listRackLeases","tags":["racks"],
  "responses":{"200":{"description":"the rack leases, by rack","content":{"application/json":{"schema":{
    "type":"object","properties":{"now":{"type":"string","format":"date-time"},"leases":{"type":"array","items":{"$ref":"#/components/schemas/RackLease"}}}}}}}}}},
 "/api/v1/rack-caches":{"get":{
  "summary":"Registered rack image caches, live or expired",
  "operationId":"listRackCaches","tags":["racks"],
  "responses":{"200":{"description":"the registrations, by rack","content":{"application/json":{"schema":{
    "type":"object","properties":{"caches":{"type":"array","items":{"$ref":"#/components/schemas/RackCache"}}}}}}}}}},
 "/api/v1/rack-caches/{rack}":{
  "parameters":[{"name":"rack","in":"path","required":true,"schema":{"type":"string"}}],
  "put":{"summary":"Register or renew a rack's image cache (rackstrap serve --role rack-cache does it every ttl/3)",
   "operationId":"registerRackCache","tags":["racks"],
   "requestBody":{"required":true,"content":{"application/json":{"schema":{"type":"object","required":["url"],"additionalProperties":false,"properties":{
     "url":{"type":"string","description":"http://host:port as the rack's nodes reach the cache"},
     "ttlSeconds":{"type":"number","minimum":5,"maximum":3600,"default":30}}}}}},
   "responses":{"200":{"description":"registered","content":{"application/json":{"schema":{"$ref":"#/components/schemas/RackCache"}}}},
     "400":{"description":"bad registration"}}},
  "delete":{"summary":"Drop a rack's image cache: its nodes fetch from the controller again",
   "operationId":"removeRackCache","tags":["racks"],
   "responses":{"204":{"description":"removed"},"404":{"description":"the rack has no cache"}}}}},
 "components":{"schemas":{
  "RackLease":{"type":"object","required":["rack","holder","expires","acquired","epoch"],"properties":{
   "rack":{"type":"string"},"holder":{"type":"string","description":"the controller's --controller-id"},
   "expires":{"type":"string","format":"date-time"},"acquired":{"type":"string","format":"date-time"},
   "epoch":{"type":"integer","description":"hand-overs of the rack between controllers"}}},
  "RackCache":{"type":"object","required":["rack","url","registeredBy","registered","renewed","expires","live"],"properties":{
   "rack":{"type":"string"},"url":{"type":"string"},"registeredBy":{"type":"string"},
   "registered":{"type":"string","format":"date-time"},"renewed":{"type":"string","format":"date-time"},
   "expires":{"type":"string","format":"date-time"},"live":{"type":"boolean"}}}}}}`
