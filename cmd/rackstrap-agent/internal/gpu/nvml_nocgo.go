//go:build !cgo

package gpu

// NVMLSupported says whether this binary can read GPUs through NVML.
const NVMLSupported = false

// Probe reports GPUs as unavailable: NVML needs cgo.
func Probe() Result { return Result{Unavailable: BuiltWithout} }
