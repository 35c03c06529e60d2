//go:build cgo

package gpu

import (
	"fmt"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// NVMLSupported says whether this binary can read GPUs through NVML.
const NVMLSupported = true

// Probe reads the GPUs through the host's libnvidia-ml.
func Probe() Result { return Collect(nvml.New()) }

// Collect reads every GPU through lib (the real library, or one of go-nvml's
// mock servers in tests). It initialises and shuts NVML down itself.
func Collect(lib nvml.Interface) Result {
	var res Result
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		res.Unavailable = NoDriver
		return res
	case nvml.ERROR_DRIVER_NOT_LOADED:
		res.Unavailable = DriverNotUp
		return res
	default:
		res.Unavailable = fmt.Sprintf("NVML init: %v", ret)
		return res
	}
	defer lib.Shutdown()

	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		res.DriverVersion = v
	} else {
		res.Notes = append(res.Notes, fmt.Sprintf("driver version: %v", ret))
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		res.Unavailable = fmt.Sprintf("NVML device count: %v", ret)
		return res
	}
	for i := range n {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			res.Notes = append(res.Notes, fmt.Sprintf("gpu %d: handle: %v (the GPU may have fallen off the bus)", i, ret))
			res.GPUs = append(res.GPUs, inventory.GPU{Index: i, DriverVersion: res.DriverVersion})
			continue
		}
		g, notes := device(i, dev)
		g.DriverVersion = res.DriverVersion
		res.GPUs = append(res.GPUs, g)
		res.Notes = append(res.Notes, notes...)
	}
	return res
}

// device reads one GPU. A fact the GPU does not support is left empty; any
// other failure also leaves a note.
func device(i int, dev nvml.Device) (g inventory.GPU, notes []string) {
	g.Index = i
	check := func(what string, ret nvml.Return) bool {
		switch ret {
		case nvml.SUCCESS:
			return true
		case nvml.ERROR_NOT_SUPPORTED:
			return false
		}
		notes = append(notes, fmt.Sprintf("gpu %d: %s: %v", i, what, ret))
		return false
	}
	// A mock (or a future library) may panic on a call it does not
	// implement: one missing fact must not lose the GPU.
	call := func(what string, f func()) {
		defer func() {
			if p := recover(); p != nil {
				notes = append(notes, fmt.Sprintf("gpu %d: %s: %v", i, what, p))
			}
		}()
		f()
	}
	call("name", func() {
		if v, ret := dev.GetName(); check("name", ret) {
			g.Name = strings.TrimSpace(v)
		}
	})
	call("uuid", func() {
		if v, ret := dev.GetUUID(); check("uuid", ret) {
			g.UUID = strings.TrimSpace(v)
		}
	})
	call("serial", func() {
		if v, ret := dev.GetSerial(); check("serial", ret) {
			g.Serial = strings.TrimSpace(v)
		}
	})
	call("memory", func() {
		if v, ret := dev.GetMemoryInfo(); check("memory", ret) {
			g.MemoryBytes = v.Total
		}
	})
	call("vbios", func() {
		if v, ret := dev.GetVbiosVersion(); check("vbios", ret) {
			g.VBIOS = strings.TrimSpace(v)
		}
	})
	call("inforom", func() {
		if v, ret := dev.GetInforomImageVersion(); check("inforom", ret) {
			g.InfoROM = strings.TrimSpace(v)
		}
	})
	call("pci info", func() {
		if v, ret := dev.GetPciInfo(); check("pci info", ret) {
			g.PCIAddress = busID(v)
		}
	})
	call("pcie link", func() {
		if v, ret := dev.GetCurrPcieLinkGeneration(); check("pcie link generation", ret) {
			g.PCIeGen = v
		}
		if v, ret := dev.GetMaxPcieLinkGeneration(); check("max pcie link generation", ret) {
			g.MaxPCIeGen = v
		}
		if v, ret := dev.GetCurrPcieLinkWidth(); check("pcie link width", ret) {
			g.PCIeWidth = v
		}
		if v, ret := dev.GetMaxPcieLinkWidth(); check("max pcie link width", ret) {
			g.MaxPCIeWidth = v
		}
	})
	call("ecc mode", func() {
		cur, pend, ret := dev.GetEccMode()
		switch ret {
		case nvml.SUCCESS:
			g.ECC = eccMode(cur)
			if p := eccMode(pend); p != g.ECC {
				g.ECCPending = p
			}
		case nvml.ERROR_NOT_SUPPORTED:
			g.ECC = inventory.ECCUnsupported
		default:
			check("ecc mode", ret)
		}
	})
	call("nvlink", func() {
		for link := range nvlinkMaxScan {
			st, ret := dev.GetNvLinkState(link)
			if ret == nvml.ERROR_NOT_SUPPORTED || ret == nvml.ERROR_INVALID_ARGUMENT {
				// Links are numbered from 0: the first one that does not
				// exist ends the scan (and a GPU without NVLink has none).
				break
			}
			if !check(fmt.Sprintf("nvlink %d state", link), ret) {
				continue
			}
			g.NVLinkTotal++
			if st == nvml.FEATURE_ENABLED {
				g.NVLinkUp++
			}
		}
	})
	call("power limit", func() {
		if v, ret := dev.GetPowerManagementLimit(); check("power limit", ret) {
			g.PowerLimitWatts = int(v / 1000)
		}
	})
	return g, notes
}

// eccMode maps NVML's enable state.
func eccMode(s nvml.EnableState) inventory.ECCMode {
	if s == nvml.FEATURE_ENABLED {
		return inventory.ECCEnabled
	}
	return inventory.ECCDisabled
}

// busID turns NVML's bus id ("00000000:18:00.0") into the inventory's PCI
// address form ("0000:18:00.0").
func busID(p nvml.PciInfo) string {
	b := make([]byte, 0, len(p.BusId))
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	s := strings.ToLower(strings.TrimSpace(string(b)))
	if s == "" {
		return ""
	}
	dom, rest, ok := strings.Cut(s, ":")
	if !ok || strings.Count(rest, ":") != 1 {
		return s
	}
	if len(dom) > 4 {
		dom = dom[len(dom)-4:]
	}
	for len(dom) < 4 {
		dom = "0" + dom
	}
	return dom + ":" + rest
}
