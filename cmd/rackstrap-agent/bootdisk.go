package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpt"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/rootfs"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/uefiboot"
)

// efivarsDir is where efivarfs is mounted below sysRoot.
func efivarsDir(sysRoot string) string {
	return filepath.Join(sysRoot, "sys/firmware/efi/efivars")
}

// installBootEntry writes the UEFI boot entry for the image just written
// to a block device, when the node booted in UEFI mode (efivarfs is
// there), and says what it did for the task message. A file target (a
// trial, a test) never touches the machine's boot variables. Failing to
// write the entry does not fail the task: the disk still boots through the
// firmware's removable-media path and the BMC's boot override; the
// message says so.
func installBootEntry(sysRoot, target, imageURL string) string {
	fi, err := os.Stat(target)
	if err != nil || fi.Mode()&fs.ModeDevice == 0 {
		return ""
	}
	vars, err := uefiboot.Open(efivarsDir(sysRoot))
	if err != nil {
		return "uefi: no boot entry written (the node did not boot in UEFI mode)"
	}
	f, err := os.Open(target)
	if err != nil {
		return fmt.Sprintf("uefi: no boot entry written: %v; the disk boots through the firmware's removable-media path", err)
	}
	defer f.Close()
	ss := int64(512)
	if n, err := sectorSize(f); err == nil && n >= 512 {
		ss = n
	}
	t, err := gpt.Read(f, ss)
	if err != nil {
		return fmt.Sprintf("uefi: no boot entry written: %s: %v", target, err)
	}
	e, err := uefiboot.FromTable(t, uefiboot.DescriptionPrefix+": "+path.Base(imageURL), uefiboot.DefaultLoader)
	if err != nil {
		return "uefi: no boot entry written: " + err.Error()
	}
	res, err := uefiboot.Install(vars, e)
	if err != nil {
		return fmt.Sprintf("uefi: %v; the disk boots through the firmware's removable-media path %s", err, uefiboot.DefaultLoader)
	}
	return fmt.Sprintf("uefi: boot entry %s: HD(%d,GPT,%s)/%s", res, e.Partition, e.PartGUID, e.Loader)
}

// firstBootHost is what the installed OS checks before its first-boot
// check-in, as notes: the root filesystem grown into its partition, and
// which UEFI entry the firmware booted.
func firstBootHost(ctx context.Context, sysRoot, growRoot string) []string {
	var notes []string
	if growRoot != "" {
		r, err := rootfs.FindRoot(sysRoot, growRoot)
		if err != nil {
			notes = append(notes, fmt.Sprintf("rootfs: not grown: %v", err))
		} else if res, err := rootfs.Grow(ctx, r.Device, r.PartBytes, "resize2fs"); err != nil {
			notes = append(notes, fmt.Sprintf("%v; the root stays at its image size", err))
		} else {
			notes = append(notes, res.Note)
		}
	}
	if vars, err := uefiboot.Open(efivarsDir(sysRoot)); err == nil {
		if b, err := uefiboot.Current(vars); err != nil {
			notes = append(notes, "uefi: "+err.Error())
		} else {
			notes = append(notes, "uefi: "+b.String())
		}
	}
	return notes
}
