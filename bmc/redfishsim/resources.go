package redfishsim

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Resource renderers. Each builds a document from the node and the BMC's
// state, with the BMC's lock held.

func link(path string) obj { return obj{"@odata.id": path} }

func links(paths ...string) []obj {
	out := make([]obj, len(paths))
	for i, p := range paths {
		out[i] = link(p)
	}
	return out
}

func collection(path, typ, name string, ids []string) obj {
	members := make([]obj, len(ids))
	for i, id := range ids {
		members[i] = link(path + "/" + id)
	}
	return obj{
		"@odata.id":           path,
		"@odata.type":         "#" + typ + "." + typ,
		"Name":                name,
		"Members":             members,
		"Members@odata.count": len(ids),
	}
}

func status(state string) obj { return obj{"State": state, "Health": "OK"} }

func enabled() obj { return status("Enabled") }

func location(label string) obj {
	if label == "" {
		return nil
	}
	return obj{"PartLocation": obj{"ServiceLabel": label, "LocationType": "Slot"}}
}

func (b *BMC) systemPath() string  { return root + "/Systems/" + b.spec.systemID }
func (b *BMC) managerPath() string { return root + "/Managers/" + b.spec.managerID }
func (b *BMC) chassisPath() string { return root + "/Chassis/" + b.spec.chassisID }

func (b *BMC) managerUUID() string {
	return nameUUID("manager/" + b.node.Hardware.System.Serial + "/" + b.node.Hardware.System.UUID)
}

func (b *BMC) vendor() string {
	hw := b.node.Hardware
	return first(hw.System.Vendor, hw.Chassis.Vendor, b.spec.vendor)
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func (b *BMC) serviceRoot() reply {
	return ok(obj{
		"@odata.id":      root + "/",
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.15.0",
		"UUID":           b.managerUUID(),
		"Vendor":         b.spec.vendor,
		"Product":        b.node.Hardware.System.Model,
		"Systems":        link(root + "/Systems"),
		"Chassis":        link(root + "/Chassis"),
		"Managers":       link(root + "/Managers"),
		"SessionService": link(root + "/SessionService"),
		"AccountService": link(root + "/AccountService"),
		"UpdateService":  link(root + "/UpdateService"),
		"Tasks":          link(root + "/TaskService"),
		"Links":          obj{"Sessions": link(root + "/SessionService/Sessions")},
		"ProtocolFeaturesSupported": obj{
			"ExpandQuery": obj{"ExpandAll": false}, "FilterQuery": false, "SelectQuery": false,
		},
	})
}

func (b *BMC) odata() obj {
	names := []string{"Systems", "Chassis", "Managers", "SessionService", "AccountService", "UpdateService", "TaskService"}
	var vals []obj
	for _, n := range names {
		vals = append(vals, obj{"name": n, "kind": "Singleton", "url": root + "/" + n})
	}
	return obj{"@odata.context": root + "/$metadata", "value": vals}
}

func (b *BMC) sessionServiceResource() obj {
	return obj{
		"@odata.id":      root + "/SessionService",
		"@odata.type":    "#SessionService.v1_1_9.SessionService",
		"Id":             "SessionService",
		"Name":           "Session Service",
		"ServiceEnabled": true,
		"SessionTimeout": 1800,
		"Sessions":       link(root + "/SessionService/Sessions"),
		"Status":         enabled(),
	}
}

func (b *BMC) sessionResource(s *session) obj {
	return obj{
		"@odata.id":   root + "/SessionService/Sessions/" + s.id,
		"@odata.type": "#Session.v1_6_0.Session",
		"Id":          s.id,
		"Name":        "User Session",
		"UserName":    s.user,
		"CreatedTime": s.created.Format(time.RFC3339),
		"SessionType": "Redfish",
	}
}

func (b *BMC) accountServiceResource() obj {
	return obj{
		"@odata.id":      root + "/AccountService",
		"@odata.type":    "#AccountService.v1_13_0.AccountService",
		"Id":             "AccountService",
		"Name":           "Account Service",
		"ServiceEnabled": true,
		"Accounts":       link(root + "/AccountService/Accounts"),
		"Status":         enabled(),
	}
}

func (b *BMC) accountResource() obj {
	return obj{
		"@odata.id":   root + "/AccountService/Accounts/1",
		"@odata.type": "#ManagerAccount.v1_10_0.ManagerAccount",
		"Id":          "1",
		"Name":        "User Account",
		"UserName":    b.node.Username,
		"RoleId":      "Administrator",
		"Enabled":     true,
		"Locked":      false,
		"Password":    nil,
	}
}

func (b *BMC) systemResource() obj {
	hw := b.node.Hardware
	sys := b.systemPath()
	cores, threads := 0, 0
	for _, c := range hw.CPUs {
		cores += c.Cores
		threads += c.Threads
	}
	procSummary := obj{"Count": len(hw.CPUs), "CoreCount": cores, "LogicalProcessorCount": threads, "Status": enabled()}
	if len(hw.CPUs) > 0 {
		procSummary["Model"] = hw.CPUs[0].Model
	}
	total := hw.Memory.InstalledBytes()
	boot := obj{
		"BootSourceOverrideEnabled":                         b.boot.Enabled,
		"BootSourceOverrideTarget":                          b.boot.Target,
		"BootSourceOverrideTarget@Redfish.AllowableValues":  bootTargets,
		"BootSourceOverrideMode":                            b.boot.Mode,
		"BootSourceOverrideMode@Redfish.AllowableValues":    []string{"UEFI", "Legacy"},
		"BootSourceOverrideEnabled@Redfish.AllowableValues": []string{"Disabled", "Once", "Continuous"},
	}
	if b.boot.HTTPBootURI != "" {
		boot["HttpBootUri"] = b.boot.HTTPBootURI
	}
	gpus := make([]string, len(b.gpuIDs()))
	for i, id := range b.gpuIDs() {
		gpus[i] = b.chassisPath() + "/PCIeDevices/" + id
	}
	doc := obj{
		"@odata.id":          sys,
		"@odata.type":        "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id":                 b.spec.systemID,
		"Name":               "System",
		"SystemType":         "Physical",
		"Manufacturer":       hw.System.Vendor,
		"Model":              hw.System.Model,
		"SKU":                hw.System.SKU,
		"SerialNumber":       hw.System.Serial,
		"UUID":               hw.System.UUID,
		"AssetTag":           hw.Chassis.AssetTag,
		"HostName":           "",
		"PowerState":         b.reportedPowerLocked(),
		"BiosVersion":        b.firmwareVersionLocked("BIOS", hw.BIOS.Version),
		"IndicatorLED":       "Off",
		"Status":             obj{"State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
		"ProcessorSummary":   procSummary,
		"MemorySummary":      obj{"TotalSystemMemoryGiB": float64(total) / (1 << 30), "Status": enabled()},
		"Boot":               boot,
		"Processors":         link(sys + "/Processors"),
		"Memory":             link(sys + "/Memory"),
		"Storage":            link(sys + "/Storage"),
		"EthernetInterfaces": link(sys + "/EthernetInterfaces"),
		"LogServices":        link(sys + "/LogServices"),
		"Bios":               link(sys + "/Bios"),
		"PCIeDevices":        links(gpus...),
		"Links": obj{
			"Chassis":   links(b.chassisPath()),
			"ManagedBy": links(b.managerPath()),
		},
		"Actions": obj{"#ComputerSystem.Reset": obj{
			"target":                            sys + "/Actions/ComputerSystem.Reset",
			"ResetType@Redfish.AllowableValues": b.resetTypes(),
			"@Redfish.ActionInfo":               sys + "/ResetActionInfo",
		}},
	}
	if b.spec.virtualMediaOnSystem {
		doc["VirtualMedia"] = link(sys + "/VirtualMedia")
	}
	return doc
}

func (b *BMC) resetActionInfo(path string) obj {
	return obj{
		"@odata.id":   path,
		"@odata.type": "#ActionInfo.v1_3_0.ActionInfo",
		"Id":          "ResetActionInfo",
		"Name":        "Reset Action Info",
		"Parameters": []obj{{
			"Name": "ResetType", "Required": true, "DataType": "String", "AllowableValues": b.resetTypes(),
		}},
	}
}

// Component ids. They are derived from the node's labels, made unique.

func uniqueIDs(n int, label func(i int) string, prefix string) []string {
	ids := make([]string, n)
	seen := map[string]bool{}
	for i := range ids {
		id := safeID(label(i))
		if id == "" || seen[id] {
			id = fmt.Sprintf("%s%d", prefix, i+1)
		}
		for seen[id] {
			id += "_"
		}
		seen[id] = true
		ids[i] = id
	}
	return ids
}

func (b *BMC) cpuIDs() []string {
	return uniqueIDs(len(b.node.Hardware.CPUs), func(i int) string { return b.node.Hardware.CPUs[i].Socket }, "CPU")
}

func (b *BMC) gpuIDs() []string {
	return uniqueIDs(len(b.node.Hardware.GPUs), func(i int) string { return b.node.Hardware.GPUs[i].Slot }, "GPU")
}

func (b *BMC) processorIDs() []string { return append(b.cpuIDs(), b.gpuIDs()...) }

func (b *BMC) dimmIDs() []string {
	return uniqueIDs(len(b.node.Hardware.Memory.DIMMs), func(i int) string { return b.node.Hardware.Memory.DIMMs[i].Slot }, "DIMM")
}

func (b *BMC) nicIDs() []string {
	return uniqueIDs(len(b.node.Hardware.NICs), func(i int) string { return b.node.Hardware.NICs[i].Slot }, "NIC")
}

func (b *BMC) driveIDs() []string {
	return uniqueIDs(len(b.node.Hardware.Disks), func(i int) string { return b.node.Hardware.Disks[i].Slot }, "Disk.Bay.")
}

func (b *BMC) processorResource(path, id string) obj {
	hw := b.node.Hardware
	if i := slices.Index(b.cpuIDs(), id); i >= 0 {
		c := hw.CPUs[i]
		return obj{
			"@odata.id":             path,
			"@odata.type":           "#Processor.v1_18_0.Processor",
			"Id":                    id,
			"Name":                  "Processor",
			"Socket":                c.Socket,
			"ProcessorType":         "CPU",
			"ProcessorArchitecture": "x86",
			"InstructionSet":        "x86-64",
			"Manufacturer":          c.Vendor,
			"Model":                 c.Model,
			"MaxSpeedMHz":           c.SpeedMHz,
			"TotalCores":            c.Cores,
			"TotalThreads":          c.Threads,
			"Status":                enabled(),
		}
	}
	i := slices.Index(b.gpuIDs(), id)
	g := hw.GPUs[i]
	doc := obj{
		"@odata.id":       path,
		"@odata.type":     "#Processor.v1_18_0.Processor",
		"Id":              id,
		"Name":            "GPU",
		"ProcessorType":   "GPU",
		"Manufacturer":    gpuVendor(g.Name),
		"Model":           g.Name,
		"SerialNumber":    g.Serial,
		"UUID":            strings.TrimPrefix(g.UUID, "GPU-"),
		"FirmwareVersion": g.VBIOS,
		"Status":          enabled(),
		"Links":           obj{"PCIeDevice": link(b.chassisPath() + "/PCIeDevices/" + id)},
	}
	if g.MemoryBytes > 0 {
		doc["ProcessorMemory"] = []obj{{"MemoryType": "HBM3", "CapacityMiB": g.MemoryBytes >> 20}}
	}
	if loc := location(g.Slot); loc != nil {
		doc["Location"] = loc
	}
	return doc
}

func gpuVendor(name string) string {
	switch {
	case strings.HasPrefix(name, "NVIDIA"):
		return "NVIDIA Corporation"
	case strings.HasPrefix(name, "AMD"):
		return "Advanced Micro Devices, Inc. [AMD/ATI]"
	}
	return ""
}

func (b *BMC) memoryResource(path, id string) obj {
	d := b.node.Hardware.Memory.DIMMs[slices.Index(b.dimmIDs(), id)]
	doc := obj{
		"@odata.id":     path,
		"@odata.type":   "#Memory.v1_17_0.Memory",
		"Id":            id,
		"Name":          "DIMM " + d.Slot,
		"DeviceLocator": d.Slot,
	}
	if d.Empty {
		doc["Status"] = obj{"State": "Absent"}
		return doc
	}
	doc["Status"] = enabled()
	doc["MemoryType"] = "DRAM"
	doc["MemoryDeviceType"] = d.Type
	doc["CapacityMiB"] = d.SizeBytes >> 20
	doc["VolatileSizeMiB"] = d.SizeBytes >> 20
	doc["OperatingSpeedMhz"] = d.SpeedMTs
	doc["Manufacturer"] = d.Manufacturer
	doc["PartNumber"] = d.PartNumber
	doc["SerialNumber"] = d.Serial
	return doc
}

func (b *BMC) hostNICResource(path, id string) obj {
	n := b.node.Hardware.NICs[slices.Index(b.nicIDs(), id)]
	mac, _ := net.ParseMAC(n.MAC)
	linkStatus := "LinkDown"
	if n.LinkUp {
		linkStatus = "LinkUp"
	}
	return obj{
		"@odata.id":           path,
		"@odata.type":         "#EthernetInterface.v1_9_0.EthernetInterface",
		"Id":                  id,
		"Name":                "Ethernet Interface " + id,
		"Description":         strings.TrimSpace(n.Vendor + " " + n.Model),
		"MACAddress":          strings.ToUpper(mac.String()),
		"PermanentMACAddress": strings.ToUpper(mac.String()),
		"SpeedMbps":           n.SpeedMbps,
		"LinkStatus":          linkStatus,
		"InterfaceEnabled":    true,
		"FullDuplex":          true,
		"AutoNeg":             true,
		"Status":              enabled(),
	}
}

func (b *BMC) storageResource(path string) obj {
	ids := b.driveIDs()
	drives := make([]string, len(ids))
	for i, id := range ids {
		drives[i] = path + "/Drives/" + id
	}
	return obj{
		"@odata.id":   path,
		"@odata.type": "#Storage.v1_13_0.Storage",
		"Id":          "1",
		"Name":        "Storage",
		"Status":      enabled(),
		"StorageControllers": []obj{{
			"@odata.id":                    path + "#/StorageControllers/0",
			"MemberId":                     "0",
			"Name":                         "Onboard NVMe Controller",
			"Status":                       enabled(),
			"SupportedControllerProtocols": []string{"PCIe"},
			"SupportedDeviceProtocols":     []string{"NVMe", "SATA"},
		}},
		"Drives":             links(drives...),
		"Drives@odata.count": len(drives),
	}
}

func (b *BMC) driveResource(path, id string) obj {
	d := b.node.Hardware.Disks[slices.Index(b.driveIDs(), id)]
	media, proto := "SSD", "SATA"
	switch d.Type {
	case inventory.DiskNVMe:
		proto = "NVMe"
	case inventory.DiskHDD:
		media = "HDD"
	case inventory.DiskVirtual:
		proto = "PCIe"
	}
	doc := obj{
		"@odata.id":      path,
		"@odata.type":    "#Drive.v1_16_0.Drive",
		"Id":             id,
		"Name":           "Drive " + id,
		"Model":          d.Model,
		"Manufacturer":   d.Vendor,
		"SerialNumber":   d.Serial,
		"Revision":       d.Firmware,
		"CapacityBytes":  d.SizeBytes,
		"MediaType":      media,
		"Protocol":       proto,
		"BlockSizeBytes": 512,
		"Status":         enabled(),
	}
	if loc := location(d.Slot); loc != nil {
		doc["PhysicalLocation"] = loc
	}
	return doc
}

func (b *BMC) biosResource(path string) obj {
	return obj{
		"@odata.id":         path,
		"@odata.type":       "#Bios.v1_2_0.Bios",
		"Id":                "Bios",
		"Name":              "BIOS Configuration Current Settings",
		"AttributeRegistry": "BiosAttributeRegistry.v1_0_0",
		"Attributes":        obj{"BootMode": "Uefi", "SriovGlobalEnable": "Enabled", "ProcVirtualization": "Enabled"},
	}
}

func (b *BMC) managerResource(r *http.Request) obj {
	mgr := b.managerPath()
	hw := b.node.Hardware
	doc := obj{
		"@odata.id":          mgr,
		"@odata.type":        "#Manager.v1_19_0.Manager",
		"Id":                 b.spec.managerID,
		"Name":               "Manager",
		"Description":        "Baseboard Management Controller",
		"ManagerType":        "BMC",
		"Manufacturer":       first(hw.BMC.Vendor, b.spec.vendor),
		"Model":              first(hw.BMC.Model, b.spec.bmcModel),
		"FirmwareVersion":    b.firmwareVersionLocked("BMC", hw.BMC.FirmwareVersion),
		"UUID":               b.managerUUID(),
		"PowerState":         "On",
		"DateTime":           b.opts.Clock().UTC().Format(time.RFC3339),
		"Status":             enabled(),
		"EthernetInterfaces": link(mgr + "/EthernetInterfaces"),
		"NetworkProtocol":    link(mgr + "/NetworkProtocol"),
		"LogServices":        link(mgr + "/LogServices"),
		"Links": obj{
			"ManagerForServers": links(b.systemPath()),
			"ManagerForChassis": links(b.chassisPath()),
		},
		"Actions": obj{"#Manager.Reset": obj{
			"target":                            mgr + "/Actions/Manager.Reset",
			"ResetType@Redfish.AllowableValues": []string{"GracefulRestart", "ForceRestart"},
		}},
	}
	if !b.spec.virtualMediaOnSystem {
		doc["VirtualMedia"] = link(mgr + "/VirtualMedia")
	}
	return doc
}

// localAddr is where the request arrived: the Fleet address, or the
// listener's address for a bare handler.
func (b *BMC) localAddr(r *http.Request) netip.AddrPort {
	if a := b.Addr(); a.IsValid() {
		return a
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap
		}
	}
	return netip.AddrPort{}
}

func (b *BMC) bmcNICResource(path string, r *http.Request) obj {
	doc := obj{
		"@odata.id":        path,
		"@odata.type":      "#EthernetInterface.v1_9_0.EthernetInterface",
		"Id":               "eth0",
		"Name":             "Manager Ethernet Interface",
		"HostName":         "bmc-" + strings.ToLower(safeID(b.Serial())),
		"SpeedMbps":        1000,
		"LinkStatus":       "LinkUp",
		"InterfaceEnabled": true,
		"FullDuplex":       true,
		"Status":           enabled(),
	}
	if mac, err := net.ParseMAC(b.node.Hardware.BMC.MAC); err == nil {
		doc["MACAddress"] = strings.ToUpper(mac.String())
		doc["PermanentMACAddress"] = strings.ToUpper(mac.String())
	}
	if a := b.localAddr(r); a.IsValid() && a.Addr().Is4() {
		doc["IPv4Addresses"] = []obj{{"Address": a.Addr().String(), "SubnetMask": "255.255.255.0", "AddressOrigin": "DHCP", "Gateway": "0.0.0.0"}}
	}
	return doc
}

func (b *BMC) networkProtocolResource(path string) obj {
	port := 443
	if a := b.Addr(); a.IsValid() {
		port = int(a.Port())
	}
	return obj{
		"@odata.id":   path,
		"@odata.type": "#ManagerNetworkProtocol.v1_9_0.ManagerNetworkProtocol",
		"Id":          "NetworkProtocol",
		"Name":        "Manager Network Protocol",
		"HostName":    "bmc-" + strings.ToLower(safeID(b.Serial())),
		"HTTPS":       obj{"ProtocolEnabled": b.scheme == "https", "Port": port},
		"HTTP":        obj{"ProtocolEnabled": b.scheme == "http", "Port": port},
		"IPMI":        obj{"ProtocolEnabled": false, "Port": 623},
		"SSH":         obj{"ProtocolEnabled": false, "Port": 22},
		"Status":      enabled(),
	}
}

func (b *BMC) logServiceResource(path string) obj {
	return obj{
		"@odata.id":          path,
		"@odata.type":        "#LogService.v1_5_0.LogService",
		"Id":                 "SEL",
		"Name":               "System Event Log",
		"LogEntryType":       "SEL",
		"MaxNumberOfRecords": b.opts.SELCapacity,
		"OverWritePolicy":    "WrapsWhenFull",
		"ServiceEnabled":     true,
		"DateTime":           b.opts.Clock().UTC().Format(time.RFC3339),
		"Entries":            link(path + "/Entries"),
		"Actions": obj{"#LogService.ClearLog": obj{
			"target": path + "/Actions/LogService.ClearLog",
		}},
		"Status": enabled(),
	}
}

func (b *BMC) logEntryResource(path, id string) obj {
	e := b.sel[slices.IndexFunc(b.sel, func(e LogEntry) bool { return e.ID == id })]
	return obj{
		"@odata.id":   path,
		"@odata.type": "#LogEntry.v1_15_0.LogEntry",
		"Id":          e.ID,
		"Name":        "Log Entry " + e.ID,
		"EntryType":   "SEL",
		"EntryCode":   "Assert",
		"SensorType":  "System Event",
		"Severity":    e.Severity,
		"Created":     e.Created.Format(time.RFC3339),
		"Message":     e.Message,
		"MessageId":   "",
	}
}

func (b *BMC) mediaResource(path string, m *Media) obj {
	doc := obj{
		"@odata.id":      path,
		"@odata.type":    "#VirtualMedia.v1_6_0.VirtualMedia",
		"Id":             m.ID,
		"Name":           "Virtual " + m.ID,
		"MediaTypes":     m.MediaTypes,
		"Image":          nil,
		"ImageName":      "",
		"Inserted":       m.Inserted,
		"WriteProtected": true,
		"ConnectedVia":   "NotConnected",
		"Actions": obj{
			"#VirtualMedia.InsertMedia": obj{"target": path + "/Actions/VirtualMedia.InsertMedia"},
			"#VirtualMedia.EjectMedia":  obj{"target": path + "/Actions/VirtualMedia.EjectMedia"},
		},
	}
	if m.Inserted {
		doc["Image"] = m.Image
		doc["ImageName"] = m.Image[strings.LastIndex(m.Image, "/")+1:]
		doc["ConnectedVia"] = "URI"
	}
	return doc
}

func (b *BMC) chassisResource() obj {
	hw := b.node.Hardware
	ch := b.chassisPath()
	doc := obj{
		"@odata.id":    ch,
		"@odata.type":  "#Chassis.v1_23_0.Chassis",
		"Id":           b.spec.chassisID,
		"Name":         "Computer System Chassis",
		"ChassisType":  first(hw.Chassis.Type, "RackMount"),
		"Manufacturer": first(hw.Chassis.Vendor, hw.System.Vendor),
		"Model":        hw.System.Model,
		"SKU":          hw.System.SKU,
		"SerialNumber": first(hw.Chassis.Serial, hw.System.Serial),
		"AssetTag":     hw.Chassis.AssetTag,
		"PowerState":   b.reportedPowerLocked(),
		"IndicatorLED": "Off",
		"Status":       enabled(),
		"LogServices":  link(ch + "/LogServices"),
		"PCIeDevices":  link(ch + "/PCIeDevices"),
		"Links": obj{
			"ComputerSystems": links(b.systemPath()),
			"ManagedBy":       links(b.managerPath()),
		},
	}
	if b.spec.noChassisLog {
		delete(doc, "LogServices")
	}
	return doc
}

func pcieType(gen int) string {
	if gen <= 0 {
		return ""
	}
	return fmt.Sprintf("Gen%d", gen)
}

func (b *BMC) pcieDeviceResource(path, id string) obj {
	g := b.node.Hardware.GPUs[slices.Index(b.gpuIDs(), id)]
	doc := obj{
		"@odata.id":       path,
		"@odata.type":     "#PCIeDevice.v1_11_0.PCIeDevice",
		"Id":              id,
		"Name":            g.Name,
		"Manufacturer":    gpuVendor(g.Name),
		"Model":           g.Name,
		"SerialNumber":    g.Serial,
		"FirmwareVersion": g.VBIOS,
		"DeviceType":      "SingleFunction",
		"Status":          enabled(),
		"PCIeFunctions":   link(path + "/PCIeFunctions"),
	}
	if g.PCIeGen > 0 || g.PCIeWidth > 0 {
		doc["PCIeInterface"] = obj{
			"PCIeType": pcieType(g.PCIeGen), "LanesInUse": g.PCIeWidth,
			"MaxPCIeType": pcieType(g.MaxPCIeGen), "MaxLanes": g.MaxPCIeWidth,
		}
	}
	if loc := location(g.Slot); loc != nil {
		doc["Slot"] = obj{"Location": loc}
	}
	return doc
}

func (b *BMC) pcieFunctionResource(path, gpuID string) obj {
	g := b.node.Hardware.GPUs[slices.Index(b.gpuIDs(), gpuID)]
	doc := obj{
		"@odata.id":    path,
		"@odata.type":  "#PCIeFunction.v1_5_0.PCIeFunction",
		"Id":           "1",
		"Name":         "PCIe Function",
		"FunctionId":   0,
		"FunctionType": "Physical",
		"DeviceClass":  "DisplayController",
		"Status":       enabled(),
	}
	if gpuVendor(g.Name) == "NVIDIA Corporation" {
		doc["VendorId"] = "0x10de"
	}
	for _, p := range b.node.Hardware.PCI {
		if g.PCIAddress != "" && strings.EqualFold(p.Address, g.PCIAddress) {
			doc["VendorId"] = "0x" + p.VendorID
			doc["DeviceId"] = "0x" + p.DeviceID
		}
	}
	return doc
}

func (b *BMC) updateServiceResource() obj {
	return obj{
		"@odata.id":         root + "/UpdateService",
		"@odata.type":       "#UpdateService.v1_11_0.UpdateService",
		"Id":                "UpdateService",
		"Name":              "Update Service",
		"ServiceEnabled":    true,
		"FirmwareInventory": link(root + "/UpdateService/FirmwareInventory"),
		"Actions": obj{"#UpdateService.SimpleUpdate": obj{
			"target": root + "/UpdateService/Actions/UpdateService.SimpleUpdate",
			"TransferProtocol@Redfish.AllowableValues": []string{"HTTP", "HTTPS"},
		}},
		"Status": enabled(),
	}
}

func (b *BMC) softwareResource(path, id string) obj {
	c := b.firmware[slices.IndexFunc(b.firmware, func(c inventory.FirmwareComponent) bool { return safeID(c.ID) == id })]
	return obj{
		"@odata.id":   path,
		"@odata.type": "#SoftwareInventory.v1_9_0.SoftwareInventory",
		"Id":          id,
		"Name":        first(c.Name, c.ID),
		"Version":     c.Version,
		"SoftwareId":  c.ID,
		"Updateable":  true,
		"Status":      enabled(),
	}
}

func (b *BMC) taskServiceResource() obj {
	return obj{
		"@odata.id":                    root + "/TaskService",
		"@odata.type":                  "#TaskService.v1_2_0.TaskService",
		"Id":                           "TaskService",
		"Name":                         "Task Service",
		"ServiceEnabled":               true,
		"CompletedTaskOverWritePolicy": "Oldest",
		"Tasks":                        link(root + "/TaskService/Tasks"),
		"Status":                       enabled(),
	}
}
