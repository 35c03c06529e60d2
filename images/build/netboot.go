package build

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
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

var _ = syscall.S_IFDIR
