//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/initproc"
)

// isInit says whether this process was started as an initramfs's /init,
// or as PID 1 without one of the agent's verbs (the kernel passes init the
// command line words it does not know; a container running
// `rackstrap-agent inventory` as PID 1 is not a boot).
func isInit() bool {
	if filepath.Base(os.Args[0]) == "init" {
		return true
	}
	if os.Getpid() != 1 {
		return false
	}
	if len(os.Args) > 1 {
		for _, c := range newRootCmd(defaultDeps()).Commands() {
			if c.Name() == os.Args[1] {
				return false
			}
		}
	}
	return true
}

// runInit is PID 1 of Rackstrap's netboot initramfs and of an installed
// image's initrd: kernel filesystems, drivers, DHCP; then the agent's run
// (rackstrap.server= on the command line) or root= mounted and switched to.
// It never returns: init exiting panics the kernel.
func runInit(d *deps) {
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	mountErr := initproc.MountKernelFS()
	data, _ := os.ReadFile("/proc/cmdline")
	cmdline := string(data)
	con := initproc.Console(cmdline)
	logf := func(format string, args ...any) {
		fmt.Fprintf(con, "rackstrap-init: "+format+"\n", args...)
	}
	defer func() {
		if r := recover(); r != nil {
			logf("panic: %v", r)
		}
		initproc.Halt()
	}()
	logf("%s starting", agentVersion())
	if mountErr != nil {
		logf("%v", mountErr)
	}
	netboot := initproc.Param(cmdline, "rackstrap.server") != ""
	root := initproc.Param(cmdline, "root")
	fstype := initproc.Param(cmdline, "rootfstype")
	if fstype == "" {
		fstype = "ext4"
	}
	var extra []string
	if !netboot && root != "" {
		// ext4 asks the crypto API for crc32c, which a kernel without
		// modprobe in the initramfs cannot load on demand
		extra = append(extra, "crypto-crc32c", fstype)
	}
	if initproc.UEFI() {
		extra = append(extra, "efivarfs") // the boot entry (netboot) and BootCurrent (first boot)
	}
	start := time.Now()
	initproc.LoadModules(logf, extra...)
	logf("drivers loaded in %v", time.Since(start).Round(time.Millisecond))
	if initproc.UEFI() {
		if err := initproc.MountEFIVars(); err != nil {
			logf("efivarfs: %v (no UEFI boot entry can be written or read)", err)
		}
	}
	ctx := context.Background()
	if initproc.Param(cmdline, "rackstrap.net") != "off" {
		nctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := initproc.BringUpNetwork(nctx, logf)
		cancel()
		if err != nil {
			logf("%v", err)
		}
	}
	switch {
	case netboot:
		cmd := newRootCmd(d)
		cmd.SetArgs([]string{"run"})
		cmd.SetOut(con)
		cmd.SetErr(con)
		if err := cmd.ExecuteContext(ctx); err != nil {
			logf("agent: %v", err)
			return
		}
		logf("agent: done; waiting for the controller to power this machine off or reboot it")
	case root != "":
		dev, err := initproc.FindRoot(root, 30*time.Second)
		if err != nil {
			logf("%v", err)
			return
		}
		init := initproc.Param(cmdline, "init")
		if init == "" {
			init = "/sbin/init"
		}
		ro := false
		for _, w := range splitWords(cmdline) {
			if w == "ro" {
				ro = true
			} else if w == "rw" {
				ro = false
			}
		}
		logf("switching to root %s (%s) and %s", dev, fstype, init)
		err = initproc.SwitchRoot(dev, fstype, ro, init)
		logf("switch root: %v", err)
	default:
		logf("nothing to boot: the command line has neither rackstrap.server= (netboot) nor root= (disk boot)")
	}
}

func splitWords(s string) []string {
	var out []string
	word := []rune{}
	for _, r := range s {
		if r == ' ' || r == '\n' || r == '\t' {
			if len(word) > 0 {
				out = append(out, string(word))
				word = word[:0]
			}
			continue
		}
		word = append(word, r)
	}
	if len(word) > 0 {
		out = append(out, string(word))
	}
	return out
}
