package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/cluster/export"
	"github.com/rackstrap/rackstrap/cluster/kubernetes"
	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/cluster/webhook"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/edge"
	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/controller/outbox"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// KubernetesConfig is the Kubernetes cluster nodes may be handed to.
type KubernetesConfig struct {
	// Kubeconfig reaches the API server with a user that may update nodes;
	// Nodes, when set, replaces it (tests use client-go's fake clientset).
	Kubeconfig string
	Nodes      kubernetes.NodeClient
	// Join is what a node's first boot needs to run kubeadm join.
	Join kubernetes.Join
	// TaintGPUNodes adds nvidia.com/gpu=present:NoSchedule to GPU nodes.
	TaintGPUNodes bool
	// JoinWait bounds how long hand-off waits for the node to register.
	JoinWait time.Duration
}

// ClusterConfig configures the cluster feature: hand-off targets, the
// Kubernetes cluster, the webhook and the exports.
type ClusterConfig struct {
	Kubernetes *KubernetesConfig
	// DefaultTarget is the hand-off target of nodes that have none
	// (slurm or kubernetes; empty: the only cluster configured).
	DefaultTarget string
	// Webhook, when set, receives node events through the durable outbox.
	Webhook       *webhook.Config
	WebhookClient *http.Client // nil: a default client
	WebhookPoll   time.Duration
	// ScrapePort is the port of Prometheus targets in the export (default
	// 9100).
	ScrapePort int
}

// ClusterFeature mounts the hand-off target, export and cloud-init routes,
// runs the webhook outbox, and carries the Kubernetes cluster that
// newHandOff routes nodes to.
type ClusterFeature struct {
	cfg    ClusterConfig
	sender *webhook.Sender
	nodes  kubernetes.NodeClient
}

// NewClusterFeature validates cfg and connects nothing yet.
func NewClusterFeature(cfg ClusterConfig) (*ClusterFeature, error) {
	f := &ClusterFeature{cfg: cfg}
	var errs []error
	if cfg.DefaultTarget != "" && !slices.Contains(manifest.Targets, cfg.DefaultTarget) {
		errs = append(errs, fmt.Errorf("hand-off default %q: use slurm or kubernetes", cfg.DefaultTarget))
	}
	if k := cfg.Kubernetes; k != nil {
		if err := k.Join.Validate(); err != nil {
			errs = append(errs, err)
		}
		f.nodes = k.Nodes
		if f.nodes == nil {
			if k.Kubeconfig == "" {
				errs = append(errs, errors.New("kubernetes: no kubeconfig: give --kube-config"))
			} else if c, err := kubernetes.NewNodesClient(k.Kubeconfig); err != nil {
				errs = append(errs, err)
			} else {
				f.nodes = c
			}
		}
	}
	if cfg.Webhook != nil {
		s, err := webhook.New(*cfg.Webhook, cfg.WebhookClient)
		if err != nil {
			errs = append(errs, err)
		}
		f.sender = s
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// Name names the feature.
func (f *ClusterFeature) Name() string { return "cluster" }

// Start mounts the routes and starts the webhook outbox.
func (f *ClusterFeature) Start(ctx context.Context, rt *Runtime) error {
	routes := []api.Route{
		{Method: "GET", Path: "/api/v1/export/{format}", Perm: api.PermRead, Handle: f.export(rt.Store)},
		{Method: "GET", Path: "/api/v1/handoff-targets", Perm: api.PermRead, Handle: f.listTargets(rt.Store)},
		{Method: "PUT", Path: "/api/v1/handoff-targets", Perm: api.PermOperate, Handle: f.setTargets(rt.Store)},
	}
	doc := clusterOpenAPI
	if f.cfg.Kubernetes != nil {
		routes = append(routes, api.Route{Method: "GET", Path: "/api/v1/nodes/{name}/cloud-init", Perm: api.PermAdmin, Handle: f.cloudInit(rt.Store)})
		doc = strings.Replace(doc, `"paths":{`, `"paths":{`+cloudInitOpenAPI+`,`, 1)
	}
	if f.sender != nil {
		routes = append(routes, api.Route{Method: "GET", Path: "/api/v1/webhook-events", Perm: api.PermAudit, Handle: f.listEvents(rt.Store)})
		doc = strings.Replace(doc, `"paths":{`, `"paths":{`+eventsOpenAPI+`,`, 1)
		o, err := outbox.New(outbox.Config{Sender: f.sender, Poll: f.cfg.WebhookPoll}, rt.Store, rt.Log)
		if err != nil {
			return err
		}
		if err := o.Init(ctx); err != nil {
			return fmt.Errorf("webhook outbox: %w", err)
		}
		rt.Go("webhook outbox", o.Serve)
	}
	if err := rt.API.Extend(api.Extension{Name: f.Name(), Routes: routes, OpenAPI: []byte(doc)}); err != nil {
		return err
	}
	return rt.API.CheckOpenAPI()
}

// newHandOff builds the controller's hand-off: Slurm from the edge
// configuration, Kubernetes from the cluster feature, routed per node by
// a Dispatcher. nil when neither is configured.
func newHandOff(cfg Config, db *store.DB, log *slog.Logger) (edge.Cluster, error) {
	clusters := map[string]edge.Cluster{}
	def := ""
	if cfg.Edge != nil && cfg.Edge.Slurm != nil {
		s, err := NewSlurmHandOff(*cfg.Edge.Slurm, db, log)
		if err != nil {
			return nil, err
		}
		clusters[manifest.TargetSlurm] = s
	}
	for _, feat := range cfg.Features {
		f, ok := feat.(*ClusterFeature)
		if !ok {
			continue
		}
		def = f.cfg.DefaultTarget
		if k := f.cfg.Kubernetes; k != nil {
			h, err := NewKubernetesHandOff(kubernetes.Config{Nodes: f.nodes, TaintGPUNodes: k.TaintGPUNodes, JoinWait: k.JoinWait}, log)
			if err != nil {
				return nil, err
			}
			clusters[manifest.TargetKubernetes] = h
		}
	}
	if len(clusters) == 0 {
		return nil, nil
	}
	return NewDispatcher(db, clusters, def, log)
}

// Hosts returns the export facts of the nodes (of one rack, when given).
func Hosts(ctx context.Context, db *store.DB, rack string) ([]export.Host, error) {
	nodes, err := db.ListNodes(ctx, store.NodeFilter{Rack: rack})
	if err != nil {
		return nil, err
	}
	targets, err := db.HandOffTargets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]export.Host, 0, len(nodes))
	for _, n := range nodes {
		h := export.Host{Name: n.Name, Rack: n.Identity.Rack, Slot: n.Identity.Slot, Serial: n.Identity.Serial, UUID: n.Identity.UUID,
			Profile: n.Profile, State: string(n.State), Target: targets[n.Name], BMC: n.Identity.BMC, MACs: n.Identity.MACs}
		if ip, err := db.BoundIP(ctx, n.Identity.MACs); err == nil {
			h.Addr = ip
		}
		if inv, err := inventory.Parse(n.Inventory); err == nil {
			h.GPUCount = len(inv.GPUs)
			if len(inv.GPUs) > 0 {
				h.GPUModel, _ = slurm.GresType(inv.GPUs[0].Name)
			}
			for _, c := range inv.CPUs {
				t := c.Threads
				if t == 0 {
					t = c.Cores
				}
				h.CPUs += t
			}
			h.MemoryGiB = int(inv.Memory.InstalledBytes() >> 30)
		}
		out = append(out, h)
	}
	return out, nil
}

func (f *ClusterFeature) export(db *store.DB) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		format := r.PathValue("format")
		if !slices.Contains(export.Formats, format) {
			return api.Errorf(http.StatusNotFound, "unknown-format", "use one of: "+strings.Join(export.Formats, ", "), "no export format %q", format)
		}
		port := f.cfg.ScrapePort
		if p := r.URL.Query().Get("port"); p != "" {
			v, err := strconv.Atoi(p)
			if err != nil || v < 1 || v > 65535 {
				return api.Errorf(http.StatusBadRequest, "bad-port", "give a port number, e.g. port=9100", "port %q is not a port number", p)
			}
			port = v
		}
		hosts, err := Hosts(r.Context(), db, r.URL.Query().Get("rack"))
		if err != nil {
			return err
		}
		out, err := export.Render(format, hosts, export.Options{Port: port})
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", export.ContentType(format))
		w.WriteHeader(http.StatusOK)
		_, err = w.Write(out)
		return err
	}
}

// Targets is the body of the hand-off target routes.
type Targets struct {
	// Nodes maps node names to their target (slurm, kubernetes; "" clears).
	Nodes map[string]string `json:"nodes"`
	// Default is the target of nodes without one (read only).
	Default string `json:"default,omitempty"`
}

func (f *ClusterFeature) listTargets(db *store.DB) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := db.HandOffTargets(r.Context())
		if err != nil {
			return err
		}
		return api.WriteJSON(w, http.StatusOK, Targets{Nodes: t, Default: f.cfg.DefaultTarget})
	}
}

func (f *ClusterFeature) setTargets(db *store.DB) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
		dec.DisallowUnknownFields()
		var in Targets
		if err := dec.Decode(&in); err != nil {
			return api.Errorf(http.StatusBadRequest, "bad-request", `send {"nodes": {"NODE": "slurm"|"kubernetes"|""}}`, "hand-off targets: %v", err)
		}
		var errs []string
		for node, t := range in.Nodes {
			if t != "" && !slices.Contains(manifest.Targets, t) {
				errs = append(errs, fmt.Sprintf("%s: unknown target %q", node, t))
			}
		}
		if len(errs) > 0 {
			slices.Sort(errs)
			return api.Errorf(http.StatusBadRequest, "bad-target", "use slurm or kubernetes", "%s", strings.Join(errs, "; "))
		}
		names := make([]string, 0, len(in.Nodes))
		for n := range in.Nodes {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if err := db.SetHandOffTarget(r.Context(), n, in.Nodes[n], api.Caller(r)); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return api.Errorf(http.StatusNotFound, "not-found", "apply the rack manifest first (rackstrap apply)", "node %s does not exist (targets of nodes before it were set)", n)
				}
				return err
			}
		}
		t, err := db.HandOffTargets(r.Context())
		if err != nil {
			return err
		}
		return api.WriteJSON(w, http.StatusOK, Targets{Nodes: t, Default: f.cfg.DefaultTarget})
	}
}

func (f *ClusterFeature) cloudInit(db *store.DB) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := r.PathValue("name")
		n, err := db.GetNode(r.Context(), name)
		if errors.Is(err, store.ErrNotFound) {
			return api.Errorf(http.StatusNotFound, "not-found", "list nodes with 'rackstrap nodes'", "no node %s", name)
		}
		if err != nil {
			return err
		}
		t, err := db.HandOffTarget(r.Context(), n.Name)
		if err != nil {
			return err
		}
		if t == "" {
			t = f.cfg.DefaultTarget
		}
		if t != manifest.TargetKubernetes {
			return api.Errorf(http.StatusConflict, "not-kubernetes", "set 'handoff: kubernetes' for it in the rack manifest and apply it",
				"node %s is not handed to Kubernetes (target %q)", n.Name, t)
		}
		out, err := f.cfg.Kubernetes.Join.RenderCloudInit(n.Name)
		if err != nil {
			return api.Errorf(http.StatusUnprocessableEntity, "cannot-render", "rename the node to a DNS-1123 name", "%v", err)
		}
		w.Header().Set("Content-Type", "text/cloud-config")
		w.Header().Set("Cache-Control", "no-store") // it carries the bootstrap token
		w.WriteHeader(http.StatusOK)
		_, err = bytes.NewReader(out).WriteTo(w)
		return err
	}
}

// WebhookEvent is one event of the webhook outbox, as listed.
type WebhookEvent struct {
	ID        string          `json:"id"`
	Node      string          `json:"node"`
	Kind      string          `json:"event"`
	Created   time.Time       `json:"created"`
	Attempts  int             `json:"attempts"`
	NextAt    *time.Time      `json:"nextAttempt,omitempty"`
	Delivered *time.Time      `json:"delivered,omitempty"`
	LastError string          `json:"lastError,omitempty"`
	Body      json.RawMessage `json:"body"`
}

func (f *ClusterFeature) listEvents(db *store.DB) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		pending := r.URL.Query().Get("pending") == "true"
		evs, err := db.ListOutbox(r.Context(), outbox.Sink, pending, 1000)
		if err != nil {
			return err
		}
		out := make([]WebhookEvent, 0, len(evs))
		for _, e := range evs {
			we := WebhookEvent{ID: strings.TrimPrefix(e.Key, outbox.Sink+"/"), Node: e.Node, Kind: e.Kind, Created: e.Created,
				Attempts: e.Attempts, LastError: e.LastError, Body: e.Body}
			if e.Delivered.IsZero() {
				next := e.NextAt
				we.NextAt = &next
			} else {
				d := e.Delivered
				we.Delivered = &d
			}
			out = append(out, we)
		}
		return api.WriteJSON(w, http.StatusOK, map[string]any{"events": out})
	}
}

const clusterOpenAPI = `{"paths":{
 "/api/v1/export/{format}":{"get":{"summary":"Export nodes as an Ansible inventory (YAML), Prometheus file_sd targets (JSON) or a CSV of facts",
  "operationId":"exportNodes","tags":["cluster"],
  "parameters":[{"name":"format","in":"path","required":true,"schema":{"type":"string","enum":["ansible","prometheus-sd","csv"]}},
   {"name":"rack","in":"query","schema":{"type":"string"}},{"name":"port","in":"query","description":"scrape port of Prometheus targets (default 9100)","schema":{"type":"integer"}}],
  "responses":{"200":{"description":"the export","content":{"application/yaml":{"schema":{"type":"string"}},"application/json":{"schema":{"type":"array","items":{"type":"object"}}},"text/csv":{"schema":{"type":"string"}}}},
   "404":{"description":"unknown format"}}}},
 "/api/v1/handoff-targets":{
  "get":{"summary":"The cluster each node is handed to","operationId":"listHandOffTargets","tags":["cluster"],
   "responses":{"200":{"description":"targets by node","content":{"application/json":{"schema":{"$ref":"#/components/schemas/HandOffTargets"}}}}}},
  "put":{"summary":"Set nodes' hand-off targets (slurm, kubernetes; empty clears), audited","operationId":"setHandOffTargets","tags":["cluster"],
   "requestBody":{"required":true,"content":{"application/json":{"schema":{"$ref":"#/components/schemas/HandOffTargets"}}}},
   "responses":{"200":{"description":"targets by node","content":{"application/json":{"schema":{"$ref":"#/components/schemas/HandOffTargets"}}}},
    "400":{"description":"unknown target"},"404":{"description":"no such node"}}}}},
 "components":{"schemas":{
  "HandOffTargets":{"type":"object","required":["nodes"],"properties":{"nodes":{"type":"object","additionalProperties":{"type":"string","enum":["slurm","kubernetes",""]}},"default":{"type":"string"}}},
  "WebhookEvent":{"type":"object","required":["id","node","event","created","attempts","body"],"properties":{"id":{"type":"string"},"node":{"type":"string"},
   "event":{"type":"string","enum":["node.handed-off","node.quarantined","node.released"]},"created":{"type":"string","format":"date-time"},
   "attempts":{"type":"integer"},"nextAttempt":{"type":"string","format":"date-time"},"delivered":{"type":"string","format":"date-time"},
   "lastError":{"type":"string"},"body":{"type":"object"}}}}}}`

const cloudInitOpenAPI = `
 "/api/v1/nodes/{name}/cloud-init":{"get":{"summary":"The node's cloud-init user data: kubeadm join with the bootstrap token (admin only)",
  "operationId":"nodeCloudInit","tags":["cluster"],
  "parameters":[{"name":"name","in":"path","required":true,"schema":{"type":"string"}}],
  "responses":{"200":{"description":"#cloud-config","content":{"text/cloud-config":{"schema":{"type":"string"}}}},
   "404":{"description":"no such node"},"409":{"description":"the node is not handed to Kubernetes"}}}}`

const eventsOpenAPI = `
 "/api/v1/webhook-events":{"get":{"summary":"Webhook events in the durable outbox, newest first","operationId":"listWebhookEvents","tags":["cluster"],
  "parameters":[{"name":"pending","in":"query","description":"true: undelivered only","schema":{"type":"boolean"}}],
  "responses":{"200":{"description":"the events","content":{"application/json":{"schema":{"type":"object","properties":{"events":{"type":"array","items":{"$ref":"#/components/schemas/WebhookEvent"}}}}}}}}}}`
