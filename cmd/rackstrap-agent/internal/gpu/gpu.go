// Package gpu reads the host's NVIDIA GPUs through NVML (go-nvml). The
// NVML code needs cgo; a binary built without it reports GPUs as
// unavailable ("built without NVML support") instead of failing, and so does
// a host without the NVIDIA driver ("no NVIDIA driver").
package gpu

import (
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Result is what the GPU collection found.
type Result struct {
	GPUs []inventory.GPU
	// DriverVersion is the NVIDIA driver version NVML reported.
	DriverVersion string
	// Unavailable says why GPUs could not be read at all ("no NVIDIA driver
	// (libnvidia-ml.so.1 not found)"); "" when NVML answered. It goes into
	// Inventory.GPUDriverError.
	Unavailable string
	// Notes say which facts of which GPU could not be read.
	Notes []string
}

// Reasons for Result.Unavailable.
const (
	NoDriver      = "no NVIDIA driver (libnvidia-ml.so.1 not found)"
	DriverNotUp   = "NVIDIA driver not loaded (libnvidia-ml found, but the kernel module is not)"
	BuiltWithout  = "built without NVML support (cgo disabled)"
	nvlinkMaxScan = 36 // nvml.NVLINK_MAX_LINKS
)

// Apply writes a result into an inventory.
func (r Result) Apply(inv *inventory.Inventory) {
	inv.GPUs = r.GPUs
	inv.GPUDriverError = r.Unavailable
}
