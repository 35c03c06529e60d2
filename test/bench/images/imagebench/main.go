// Command imagebench drives the image builder for test/bench/images/run.sh:
//
//	imagebench gen DIR MB      writes a deterministic root tree of about MB MiB
//	imagebench build SPEC OUT  builds SPEC into OUT
package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"

	"github.com/rackstrap/rackstrap/images/build"
	"github.com/rackstrap/rackstrap/images/spec"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: imagebench gen DIR MB | imagebench build SPEC OUT")
	}
	switch args[0] {
	case "gen":
		mb, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		return gen(args[1], int64(mb)<<20)
	case "build":
		s, err := spec.Load(args[1])
		if err != nil {
			return err
		}
		opts := build.Options{OutDir: args[2]}
		if os.Getenv("IMAGEBENCH_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		if p := os.Getenv("IMAGEBENCH_CPUPROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		if p := os.Getenv("IMAGEBENCH_TRACE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := trace.Start(f); err != nil {
				return err
			}
			defer trace.Stop()
		}
		_, err = build.Build(context.Background(), s, opts)
		return err
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// gen writes a tree shaped like a root filesystem: a quarter of the bytes
// in thousands of small files (1-64 KiB) across 200 directories, the rest in
// a few large ones (1-32 MiB), half-compressible content.
func gen(dir string, total int64) error {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 32<<20)
	for i := range buf {
		if i%2 == 0 {
			buf[i] = byte(r.Uint32())
		} else {
			buf[i] = byte(i / 97)
		}
	}
	var written int64
	n := 0
	for written < total/4 {
		d := filepath.Join(dir, "usr/share", fmt.Sprintf("pkg%03d", n%200))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		size := 1<<10 + r.IntN(63<<10)
		off := r.IntN(len(buf) - size)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file%05d", n)), buf[off:off+size], 0o644); err != nil {
			return err
		}
		written += int64(size)
		n++
	}
	big := 0
	for written < total {
		d := filepath.Join(dir, "usr/lib/big")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		size := int64(1<<20 + r.IntN(31<<20))
		size = min(size, total-written+4096)
		off := r.Int64N(int64(len(buf)) - size + 1)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("blob%03d", big)), buf[off:off+size], 0o644); err != nil {
			return err
		}
		written += size
		big++
	}
	fmt.Printf("%d small files, %d large files, %d bytes\n", n, big, written)
	return nil
}
