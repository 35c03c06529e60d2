package controller

import "github.com/rackstrap/rackstrap/controller/api"

// extendHolds serves GET /api/v1/holds, the nodes the engine holds and
// why (gate, rule, reason, and when a refused step is tried again), once
// per API server: the features that hold nodes (policy, firmware) each
// call it.
func extendHolds(rt *Runtime) error {
	for _, r := range rt.API.Routes() {
		if r.Method == "GET" && r.Path == "/api/v1/holds" {
			return nil
		}
	}
	return rt.API.Extend(api.Extension{
		Name:    "holds",
		Routes:  []api.Route{{Method: "GET", Path: "/api/v1/holds", Perm: api.PermRead, Handle: rt.Engine.ServeHolds}},
		OpenAPI: holdsOpenAPI,
	})
}

var holdsOpenAPI = []byte(`{"paths":{"/api/v1/holds":{"get":{"summary":"Nodes held where they are, and why: a gate before imaging or hand-off (firmware, policy), or a refused side effect (a power action inside a no-power window) tried again at retryAt","operationId":"listHolds","tags":["nodes"],
"parameters":[{"name":"node","in":"query","required":false,"schema":{"type":"string"},"description":"only this node's hold"}],
"responses":{"200":{"description":"the holds, by node","content":{"application/json":{"schema":{"type":"array","items":{"$ref":"#/components/schemas/Hold"}}}}}}}}},
"components":{"schemas":{"Hold":{"type":"object","required":["node","gate","reason","since"],"properties":{
"node":{"type":"string"},"gate":{"type":"string","description":"who holds the node: policy, firmware"},
"rule":{"type":"string","description":"the rule that refused: power-windows, firmware-compliance, firmware-run, …"},
"reason":{"type":"string"},"next":{"type":"string","description":"the state the node is held from entering (gate holds)"},
"step":{"type":"string","description":"the step whose side effect was refused (step holds); its intent stays open"},
"since":{"type":"string","format":"date-time"},"retryAt":{"type":"string","format":"date-time"}}}}}}`)
