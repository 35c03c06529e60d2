//go:build cgo

package gpu

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

// TestNVMLInventoryAgainstDGXH100Profile feeds what the agent reads through
// NVML (go-nvml's DGX H100 mock) into the validator with the bundled DGX H100
// profile: a healthy server passes; each hardware fault a technician must
// fix shows up as an error finding naming the GPU.
func TestNVMLInventoryAgainstDGXH100Profile(t *testing.T) {
	t.Parallel()
	cat, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	p, err := cat.Get("nvidia-dgx-h100")
	if err != nil {
		t.Fatal(err)
	}
	healthy := health{gen: 5, maxGen: 5, width: 16, maxWidth: 16, ecc: nvml.FEATURE_ENABLED, eccPending: nvml.FEATURE_ENABLED, links: 18, linksUp: 18, powerMW: 700000}
	cases := map[string]struct {
		broken     func(h *health)
		drop       bool // GPU 5 falls off the bus
		wantRule   string
		wantInHint string
	}{
		"healthy":     {},
		"x8 link":     {broken: func(h *health) { h.width = 8 }, wantRule: "gpu.pcie-width", wantInHint: "reseat"},
		"ECC off":     {broken: func(h *health) { h.ecc, h.eccPending = nvml.FEATURE_DISABLED, nvml.FEATURE_DISABLED }, wantRule: "gpu.ecc"},
		"NVLink down": {broken: func(h *health) { h.linksUp = 16 }, wantRule: "gpu.nvlink"},
		"missing GPU": {drop: true, wantRule: "gpu.count"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := dgxh100.New()
			wire(t, s, func(i int) health {
				h := healthy
				if i == 5 && tc.broken != nil {
					tc.broken(&h)
				}
				return h
			})
			if tc.drop {
				s.Devices = s.Devices[:7]
			}
			res := Collect(s)
			inv := fixtures.DGXH100("SN-DGX-1")
			inv.GPUs = res.GPUs
			r := validate.Validate(inv, p)
			var errs []validate.Finding
			for _, f := range r.Findings {
				if f.Severity == validate.Error {
					errs = append(errs, f)
				}
			}
			if tc.wantRule == "" {
				if r.Verdict != validate.Pass {
					t.Fatalf("healthy NVML inventory: verdict %s, errors %+v", r.Verdict, errs)
				}
				return
			}
			if r.Verdict != validate.Quarantine {
				t.Fatalf("verdict %s, want quarantine", r.Verdict)
			}
			var hit *validate.Finding
			for i, f := range errs {
				if strings.HasPrefix(f.Rule, tc.wantRule) {
					hit = &errs[i]
				}
			}
			if hit == nil {
				t.Fatalf("no %s finding; errors: %+v", tc.wantRule, errs)
			}
			if tc.wantInHint != "" && !strings.Contains(strings.ToLower(hit.Hint), tc.wantInHint) {
				t.Errorf("finding %s hint %q lacks %q", hit.Rule, hit.Hint, tc.wantInHint)
			}
		})
	}
}
