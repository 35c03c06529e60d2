// Command rackstrap-agent is Rackstrap's in-band agent. It runs in the
// netboot initramfs and on the installed OS's first boot, takes the host's
// hardware inventory (SMBIOS, CPUs, DIMMs, PCI, NICs, disks, and GPUs
// through NVML) and checks in with the controller using the node's one-time
// enrolment token.
//
//	rackstrap-agent inventory [--sys-root DIR] [-o json|text]
//	rackstrap-agent checkin --server URL --token-file FILE|--token T --phase netboot|firstboot [--ca FILE]
//	rackstrap-agent run [--cmdline /proc/cmdline]   (settings from rackstrap.* kernel parameters)
//	rackstrap-agent version
package main

import (
	"fmt"
	"os"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRootCmd(defaultDeps()).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
