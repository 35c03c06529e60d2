//go:build cgo

package burnin

import (
	"context"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpu"
)

// TestGPUCheckOnDGXH100Mock runs the GPU check through the real NVML
// collection code against go-nvml's DGX H100 mock, with one GPU's NVLinks
// partly down.
func TestGPUCheckOnDGXH100Mock(t *testing.T) {
	t.Parallel()
	for _, linksDownOn := range []int{-1, 5} {
		s := dgxh100.New()
		for i, d := range s.Devices {
			dev := d.(*server.Device)
			up := 18
			if i == linksDownOn {
				up = 15
			}
			dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
				if link >= 18 {
					return 0, nvml.ERROR_INVALID_ARGUMENT
				}
				if link < up {
					return nvml.FEATURE_ENABLED, nvml.SUCCESS
				}
				return nvml.FEATURE_DISABLED, nvml.SUCCESS
			}
		}
		res := Run(context.Background(), []string{"gpu-burn"}, Config{ProbeGPUs: func() gpu.Result { return gpu.Collect(s) }})
		c := res.Checks[0]
		switch {
		case linksDownOn < 0 && (!c.Pass || !strings.Contains(c.Message, "8 GPUs answer (8× NVIDIA H100 80GB HBM3), driver 550.54.15")):
			t.Errorf("healthy DGX H100: %+v", c)
		case linksDownOn >= 0 && (c.Pass || !strings.Contains(c.Message, "gpu 5") || !strings.Contains(c.Message, "NVLink 15 of 18 up")):
			t.Errorf("DGX H100 with links down: %+v", c)
		}
	}
}
