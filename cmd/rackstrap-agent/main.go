// Command rackstrap-agent is Rackstrap's in-band agent. It runs in the
// netboot initramfs and on the installed OS's first boot, takes the host's
// hardware inventory (SMBIOS, CPUs, DIMMs, PCI, NICs, disks, and GPUs
// through NVML), checks in with the controller using the node's one-time
// enrolment token, and runs the controller's tasks: stream the OS image to
// disk (verified), and burn-in checks.
//
//	rackstrap-agent inventory [--sys-root DIR] [-o json|text]
//	rackstrap-agent checkin --server URL --token-file FILE|--token T --phase netboot|firstboot [--ca FILE]
//	rackstrap-agent run [--cmdline /proc/cmdline] [--disk DEV]   (settings from rackstrap.* kernel parameters; then tasks)
//	rackstrap-agent firstboot --state FILE|DISK                  (first-boot check-in, then burn-in tasks)
//	rackstrap-agent version
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if isInit() {
		runInit(defaultDeps())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd(defaultDeps()).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
