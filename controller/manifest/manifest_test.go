package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/controller/model"
)

const good = `racks:
  - name: r12
    profile: nvidia-dgx-h100
    desired: handed-off
    handoff: slurm
    nodes:
      - slot: 1
        serial: SN001
        bmc: 10.0.12.11
        macs: [AA-BB-CC-00-00-01]
      - slot: 2
        name: special
        bmc: https://10.0.12.12:8443
        profile: qemu-vm
        desired: ready
        handoff: kubernetes
  - name: r13
    nodes:
      - slot: 1
`

func TestParseAppliesRackDefaults(t *testing.T) {
	t.Parallel()
	m, err := Parse("rack.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Node{
		{Name: "r12-n01", Identity: model.Identity{Serial: "SN001", BMC: "10.0.12.11", MACs: []string{"aa:bb:cc:00:00:01"}, Rack: "r12", Slot: 1},
			Profile: "nvidia-dgx-h100", Desired: model.WantHandedOff},
		{Name: "special", Identity: model.Identity{BMC: "https://10.0.12.12:8443", MACs: []string{}, Rack: "r12", Slot: 2},
			Profile: "qemu-vm", Desired: model.WantReady},
	}
	if diff := cmp.Diff(want, m.Nodes()[:2]); diff != "" {
		t.Errorf("Nodes() (-want +got):\n%s", diff)
	}
	// Hand-off targets: the rack's, a node's override, none for r13.
	if diff := cmp.Diff(map[string]string{"r12-n01": "slurm", "special": "kubernetes"}, m.HandOffTargets()); diff != "" {
		t.Errorf("HandOffTargets() (-want +got):\n%s", diff)
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ doc, want string }{
		"empty":           {"", "empty"},
		"unknown key":     {"racks:\n  - name: r1\n    colour: red\n", `rack.yaml:3:5: racks[0]: unknown key "colour"; known keys: name, profile, desired, handoff, nodes`},
		"no racks":        {"racks: []\n", "no racks"},
		"duplicate slot":  {"racks:\n  - name: r1\n    nodes:\n      - slot: 1\n      - slot: 1\n", "rack.yaml:5: rack r1: slot 1 is listed twice"},
		"bad mac":         {"racks:\n  - name: r1\n    nodes:\n      - slot: 1\n        macs: [nope]\n", "rack.yaml:4: rack r1 slot 1: invalid MAC"},
		"bad desired":     {"racks:\n  - name: r1\n    desired: gone\n", "rack.yaml:2: rack r1: unknown desired"},
		"zero slot":       {"racks:\n  - name: r1\n    nodes:\n      - serial: x\n", "slot must be a positive number"},
		"dup rack":        {"racks:\n  - name: r1\n  - name: r1\n", "rack.yaml:3: rack \"r1\" is listed twice"},
		"not yaml":        {"racks: [", "rack.yaml"},
		"bad rack target": {"racks:\n  - name: r1\n    handoff: lsf\n", `rack.yaml:2: rack r1: unknown handoff target "lsf": use slurm or kubernetes`},
		"bad node target": {"racks:\n  - name: r1\n    nodes:\n      - slot: 1\n        handoff: k8s\n", `rack.yaml:4: rack r1 slot 1: unknown handoff target "k8s"`},
		"node key typo":   {"racks:\n  - name: r1\n    nodes:\n      - slot: 1\n        seral: SN1\n", `rack.yaml:5:9: racks[0].nodes[0]: unknown key "seral"; did you mean "serial"?`},
		"slot not number": {"racks:\n  - name: r1\n    nodes:\n      - slot: one\n", `rack.yaml:4:15: racks[0].nodes[0].slot:`},
		"alias":           {"racks:\n  - &r {name: r1}\n  - *r\n", "aliases are not allowed in a rack manifest"},
		"target typo":     {"racks:\n  - name: r1\n    handof: slurm\n", `rack.yaml:3:5: racks[0]: unknown key "handof"; did you mean "handoff"?`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("rack.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("racks:\n  - name: r1\n    nodes:\n      - slot: 1\n      - slot: 1\n"))
	f.Add([]byte("racks: [{name: a, nodes: [{slot: -1, macs: [x]}]}]"))
	f.Add([]byte("\x00\xff"))
	f.Add([]byte("racks:\n  - name: r1\n    handoff: kubernetes\n    nodes:\n      - slot: 1\n        handoff: slurm\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for node, target := range m.HandOffTargets() {
			if target != TargetSlurm && target != TargetKubernetes || node == "" {
				t.Fatalf("accepted manifest gave target %q to %q", target, node)
			}
		}
		for _, n := range m.Nodes() {
			if n.Identity.Slot <= 0 || n.Name == "" {
				t.Fatalf("accepted manifest gave a node without slot or name: %+v", n)
			}
		}
	})
}
