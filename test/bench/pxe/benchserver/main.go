// Command benchserver runs Rackstrap's DHCP, TFTP and HTTP boot services
// with flags, for test/bench/pxe/run.sh (the benchmark against Kea,
// tftpd-hpa and nginx). It is not the product's entry point.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/pxe/artifact"
	"github.com/rackstrap/rackstrap/pxe/dhcp"
	pxehttp "github.com/rackstrap/rackstrap/pxe/http"
	"github.com/rackstrap/rackstrap/pxe/tftp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		iface       = flag.String("dhcp-iface", "", "serve DHCP on this interface")
		subnet      = flag.String("subnet", "10.240.0.0/16", "DHCP subnet")
		poolStart   = flag.String("pool-start", "10.240.1.0", "first pool address")
		poolEnd     = flag.String("pool-end", "10.240.255.254", "last pool address")
		leases      = flag.String("leases", "", "lease journal (empty: memory only)")
		workers     = flag.Int("workers", 0, "DHCP workers (0: default)")
		queue       = flag.Int("queue", 0, "DHCP queue size (0: default)")
		rcvbuf      = flag.Int("rcvbuf", 0, "DHCP socket receive buffer (0: default)")
		tftpAddr    = flag.String("tftp", "", "serve TFTP on addr:port")
		httpAddr    = flag.String("http", "", "serve HTTP on addr:port")
		root        = flag.String("root", "", "artifact directory for TFTP and HTTP")
		countLeases = flag.String("count-leases", "", "print the number of bound leases in this journal and exit")
		verbose     = flag.Bool("v", false, "log every request")
		cpuprofile  = flag.String("cpuprofile", "", "write a CPU profile here")
		loadFrom    = flag.String("load-from", "", "run the DORA load client from this local address (as a relay) and exit")
		loadTo      = flag.String("load-to", "", "DHCP server address for -load-from")
		loadConc    = flag.Int("load-conc", 64, "concurrent exchanges for -load-from")
		loadFor     = flag.Duration("load-for", 5*time.Second, "how long -load-from runs")
		acked       = flag.String("acked", "", "-load-from writes acknowledged leases here; -check-leases reads them")
		checkLeases = flag.String("check-leases", "", "verify every lease in -acked is bound in this journal and exit")
	)
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *loadFrom != "" {
		return load(ctx, *loadFrom, *loadTo, *loadConc, *loadFor, *acked)
	}
	if *checkLeases != "" {
		return check(ctx, *checkLeases, *acked)
	}
	if *countLeases != "" {
		ls, err := dhcp.NewFileStore(*countLeases).Load(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, l := range ls {
			if l.State == dhcp.Bound {
				n++
			}
		}
		fmt.Println(n)
		return nil
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	g, gctx := errgroup.WithContext(ctx)
	if *iface != "" {
		cfg := dhcp.Config{
			Interface: *iface, Workers: *workers, QueueSize: *queue, ReadBuffer: *rcvbuf,
			Subnets: []dhcp.Subnet{{
				Prefix: netip.MustParsePrefix(*subnet),
				Pools:  []dhcp.Range{{Start: netip.MustParseAddr(*poolStart), End: netip.MustParseAddr(*poolEnd)}},
			}},
		}
		var deps dhcp.Deps
		if *leases != "" {
			deps.Store = dhcp.NewFileStore(*leases)
		}
		srv, err := dhcp.New(cfg, log, deps)
		if err != nil {
			return err
		}
		g.Go(func() error { return srv.Serve(gctx) })
		g.Go(func() error {
			<-gctx.Done()
			st := srv.Stats()
			fmt.Fprintf(os.Stderr, "dhcp stats: received=%v sent=%v dropped=%d stale=%d batches=%d committed=%d commit_errors=%d\n",
				st.Received, st.Sent, st.Dropped, st.Stale, st.Batches, st.Committed, st.CommitErrors)
			return nil
		})
	}
	if *tftpAddr != "" || *httpAddr != "" {
		src, err := artifact.NewDir(*root)
		if err != nil {
			return err
		}
		if *tftpAddr != "" {
			srv, err := tftp.New(tftp.Config{Addr: netip.MustParseAddrPort(*tftpAddr), MaxTransfers: 1024}, log, src)
			if err != nil {
				return err
			}
			g.Go(func() error { return srv.Serve(gctx) })
		}
		if *httpAddr != "" {
			srv, err := pxehttp.New(pxehttp.Config{Addr: netip.MustParseAddrPort(*httpAddr), MaxConcurrent: 2048}, log, pxehttp.Deps{Files: src})
			if err != nil {
				return err
			}
			g.Go(func() error { return srv.Serve(gctx) })
		}
	}
	fmt.Fprintln(os.Stderr, "benchserver: ready")
	return g.Wait()
}
