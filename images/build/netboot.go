package build

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/rackstrap/rackstrap/images/rootfs"
)

// writeInitramfs writes the whole tree as a newc cpio archive, compressed
// with zstd, gzip or not at all. Records come in tree order with inode
// numbers from their position and every mtime at the epoch, so the archive
// is a pure function of the tree.
func writeInitramfs(ctx context.Context, out string, t *rootfs.Tree, compression string, epoch time.Time) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var closer io.Closer
	switch compression {
	case "zstd":
		// one goroutine and a fixed level keep the output stable
		z, err := zstd.NewWriter(bw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return err
		}
		w, closer = z, z
	case "gzip":
		z, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
		if err != nil {
			return err
		}
		w, closer = z, z
	case "none", "":
	default:
		return fmt.Errorf("unknown compression %q", compression)
	}
	rw := cpio.Newc.Writer(w)
	for i, e := range t.Entries() {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		info := cpio.Info{
			Ino:   uint64(i + 1),
			UID:   uint64(e.UID),
			GID:   uint64(e.GID),
			NLink: 1,
			MTime: uint64(epoch.Unix()),
			Name:  e.Path,
		}
		var rec cpio.Record
		switch {
		case e.IsDir():
			info.Mode = cpio.S_IFDIR | uint64(unixPerm(e))
			info.NLink = 2
			rec = cpio.Record{Info: info}
		case e.IsSymlink():
			info.Mode = cpio.S_IFLNK | 0o777
			info.FileSize = uint64(len(e.Target))
			rec = cpio.StaticRecord([]byte(e.Target), info)
		default:
			info.Mode = cpio.S_IFREG | uint64(unixPerm(e))
			info.FileSize = uint64(e.Size)
			if e.Src == "" {
				rec = cpio.StaticRecord(e.Data, info)
			} else {
				src, err := os.Open(e.Src)
				if err != nil {
					return fmt.Errorf("/%s: %w", e.Path, err)
				}
				rec = cpio.Record{ReaderAt: src, Info: info}
				err = rw.WriteRecord(rec)
				src.Close()
				if err != nil {
					return fmt.Errorf("cpio /%s: %w", e.Path, err)
				}
				continue
			}
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio /%s: %w", e.Path, err)
		}
	}
	for _, rec := range bootRecords(t, epoch, uint64(len(t.Entries())+1)) {
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("cpio /%s: %w", rec.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return err
	}
	if closer != nil {
		if err := closer.Close(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// AgentPath is where the spec's agent lands in the image.
const AgentPath = "usr/bin/rackstrap-agent"

// bootRecords are what the kernel needs of an initramfs that the tree
// lacks: /dev/console (the kernel opens it for init before anything is
// mounted) and, when the image carries rackstrap-agent and no /init of its
// own, /init as a link to the agent, whose PID 1 mode mounts the kernel
// filesystems, loads the NIC and disk drivers from lib/modules, leases an
// address over DHCP and runs the agent with the rackstrap.* settings of the
// kernel command line (cmd/rackstrap-agent/internal/initproc). They go into
// the archive only, not the tree: the disk image built from the same tree
// does not get them.
func bootRecords(t *rootfs.Tree, epoch time.Time, ino uint64) []cpio.Record {
	var out []cpio.Record
	mtime := uint64(epoch.Unix())
	if t.Get("dev") == nil {
		out = append(out, cpio.Record{Info: cpio.Info{Ino: ino, Mode: cpio.S_IFDIR | 0o755, NLink: 2, MTime: mtime, Name: "dev"}})
		ino++
	}
	if t.Get("dev/console") == nil {
		out = append(out, cpio.Record{Info: cpio.Info{Ino: ino, Mode: cpio.S_IFCHR | 0o600, NLink: 1, MTime: mtime, Name: "dev/console", Rmajor: 5, Rminor: 1}})
		ino++
	}
	if t.Get("init") == nil && t.Get(AgentPath) != nil {
		target := "/" + AgentPath
		out = append(out, cpio.StaticRecord([]byte(target), cpio.Info{Ino: ino, Mode: cpio.S_IFLNK | 0o777, NLink: 1, MTime: mtime, FileSize: uint64(len(target)), Name: "init"}))
	}
	return out
}
