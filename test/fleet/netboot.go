package fleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/pxe/ipxe"
)

// Vendor classes (option 60) as real boot ROMs send them.
const (
	vendorClassBIOS = "PXEClient:Arch:00000:UNDI:002001"
	vendorClassUEFI = "PXEClient:Arch:00007:UNDI:003016"
)

// maxChain bounds chained scripts per boot (iPXE has no bound; a loop of
// chains would otherwise spin the simulator).
const maxChain = 16

// tftpTries bounds the attempts at the boot program (a busy server asks
// for retries).
const tftpTries = 16

// netboot is a PXE boot: firmware, iPXE, kernel, then the agent.
func (h *Host) netboot(ctx context.Context, e redfishsim.BootEvent) error {
	if h.mac == nil {
		return fmt.Errorf("PXE boot: %w: the machine has no NIC with a MAC", errNoBoot)
	}
	if err := sleep(ctx, h.rack.cfg.BootDelay); err != nil {
		return err
	}
	arch, vc := iana.INTEL_X86PC, vendorClassBIOS
	if e.Mode == "UEFI" {
		arch, vc = iana.EFI_X86_64, vendorClassUEFI
	}

	// The NIC's PXE ROM.
	h.stage(StageDHCP)
	ack, err := h.dora(ctx, arch, vc, false)
	if err != nil {
		return fmt.Errorf("PXE ROM: %w", err)
	}
	file := ack.BootFileNameOption()
	if file == "" {
		file = ack.BootFileName
	}
	if file == "" {
		return fmt.Errorf("PXE ROM: %w: the DHCP ACK names no boot file (PXE-E53)", errNoBoot)
	}
	tftpServer := tftpServerOf(ack)
	if !tftpServer.IsValid() {
		return fmt.Errorf("PXE ROM: %w: the DHCP ACK names no TFTP server (siaddr, option 66 or 54)", errNoBoot)
	}
	h.update(func(s *HostStats) { s.BootFile = file })
	h.stage(StageTFTP)
	var n int64
	for try := 0; ; try++ {
		n, err = h.tftpGet(ctx, netip.AddrPortFrom(tftpServer, h.rack.cfg.TFTPPort), file)
		if err == nil || try == tftpTries-1 || ctx.Err() != nil || !tftpRetryable(err) {
			break
		}
		// A busy server refuses the transfer and expects a retry; a random
		// wait keeps a rack booting at once from retrying in lock step.
		h.update(func(s *HostStats) { s.TFTPRetries++ })
		if err := sleep(ctx, rand.N(time.Duration(min(try+1, 6))*500*time.Millisecond)); err != nil {
			return err
		}
	}
	h.update(func(s *HostStats) { s.TFTPBytes += n })
	if err != nil {
		return fmt.Errorf("PXE ROM: tftp %s from %v: %w", file, tftpServer, err)
	}
	if err := sleep(ctx, h.rack.cfg.BootDelay); err != nil {
		return err
	}

	// iPXE, loaded from the boot file.
	h.stage(StageIPXE)
	ack, err = h.dora(ctx, arch, vc, true)
	if err != nil {
		return fmt.Errorf("iPXE: %w", err)
	}
	url := ack.BootFileNameOption()
	if url == "" {
		url = ack.BootFileName
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("iPXE: %w: the DHCP ACK's boot file %q is no script URL (is the DHCP server's Boot.ScriptURL set?)", errNoBoot, url)
	}
	h.update(func(s *HostStats) { s.ScriptURL = url })
	client := h.httpClient()
	defer client.CloseIdleConnections()
	k, err := h.runScript(ctx, client, url)
	if err != nil {
		return fmt.Errorf("iPXE: %w", err)
	}
	if k.local {
		return h.diskBoot(ctx)
	}
	if err := sleep(ctx, h.rack.cfg.BootDelay); err != nil {
		return err
	}
	return h.netbootAgent(ctx, client, k.cmdline)
}

// tftpServerOf is where the boot file is: siaddr, else option 66 when it is
// an address, else the server identifier.
func tftpServerOf(ack *dhcpv4.DHCPv4) netip.Addr {
	if a, ok := netip.AddrFromSlice(ack.ServerIPAddr.To4()); ok && !a.IsUnspecified() {
		return a
	}
	if a, err := netip.ParseAddr(ack.TFTPServerName()); err == nil && a.Is4() {
		return a
	}
	if a, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok && !a.IsUnspecified() {
		return a
	}
	return netip.Addr{}
}

// DHCP runs one DHCP exchange now, as the host's PXE ROM would at power-on
// (legacy BIOS), through the rack's relay, without booting further; the
// grant is also in the rack's Grants. For tests of the DHCP service alone
// (leases across controller restarts).
func (h *Host) DHCP(ctx context.Context) (LeaseGrant, error) {
	if h.mac == nil {
		return LeaseGrant{}, fmt.Errorf("dhcp: %w: the machine has no NIC with a MAC", errNoBoot)
	}
	ack, err := h.dora(ctx, iana.INTEL_X86PC, vendorClassBIOS, false)
	if err != nil {
		return LeaseGrant{}, err
	}
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	return LeaseGrant{MAC: h.mac.String(), IP: ip, Lease: ack.IPAddressLeaseTime(0)}, nil
}

// dora runs one DHCP exchange through the rack's relay, retransmitting
// with a doubling timeout, and records the lease.
func (h *Host) dora(ctx context.Context, arch iana.Arch, vc string, isIPXE bool) (*dhcpv4.DHCPv4, error) {
	cfg := h.rack.cfg
	var xid dhcpv4.TransactionID
	var replies chan *dhcpv4.DHCPv4
	for {
		var err error
		if xid, err = dhcpv4.GenerateTransactionID(); err != nil {
			return nil, fmt.Errorf("dhcp: transaction id: %w", err)
		}
		var ok bool
		if replies, ok = h.rack.register(xid); ok {
			break
		}
	}
	defer h.rack.unregister(xid)

	mods := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation),
	}
	if u := h.uuidOption(); u != nil {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, u))
	}
	if isIPXE {
		mods = append(mods, dhcpv4.WithUserClass("iPXE", false))
	}
	// exchange sends msg (again on each timeout) until a reply of one of
	// the wanted types arrives.
	exchange := func(build func() (*dhcpv4.DHCPv4, error), want ...dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
		timeout := cfg.DHCPTimeout
		for try := 0; try <= cfg.DHCPRetries; try++ {
			if try > 0 {
				h.update(func(s *HostStats) { s.DHCPRetries++ })
			}
			msg, err := build()
			if err != nil {
				return nil, err
			}
			if err := h.rack.relay(msg, h.opt.Rack, h.opt.Slot); err != nil {
				return nil, err
			}
			t := time.NewTimer(timeout)
		wait:
			for {
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				case <-t.C:
					break wait
				case resp := <-replies:
					if !bytes.Equal(resp.ClientHWAddr, h.mac) {
						continue
					}
					for _, w := range want {
						if resp.MessageType() == w {
							t.Stop()
							return resp, nil
						}
					}
				}
			}
			timeout *= 2
		}
		return nil, fmt.Errorf("dhcp: no %v after %d tries", want[0], cfg.DHCPRetries+1)
	}
	for restart := 0; ; restart++ {
		offer, err := exchange(func() (*dhcpv4.DHCPv4, error) {
			return dhcpv4.NewDiscovery(h.mac, mods...)
		}, dhcpv4.MessageTypeOffer)
		if err != nil {
			return nil, fmt.Errorf("%w (PXE-E51: no DHCP offers)", err)
		}
		ack, err := exchange(func() (*dhcpv4.DHCPv4, error) {
			req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
			if err == nil {
				req.GatewayIPAddr = net.IPv4zero // the relay sets it
			}
			return req, err
		}, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
		if err != nil {
			return nil, err
		}
		if ack.MessageType() == dhcpv4.MessageTypeAck {
			ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
			h.update(func(s *HostStats) { s.DHCPExchanges++; s.IP = ip })
			h.rack.recordGrant(LeaseGrant{MAC: h.mac.String(), IP: ip, Lease: ack.IPAddressLeaseTime(0), At: time.Now()})
			return ack, nil
		}
		if restart >= cfg.DHCPRetries {
			return nil, fmt.Errorf("dhcp: request refused (NAK: %s)", ack.Message())
		}
		h.update(func(s *HostStats) { s.DHCPRetries++ })
	}
}

// tftpGet downloads file, counting its bytes and writing them nowhere.
func (h *Host) tftpGet(ctx context.Context, server netip.AddrPort, file string) (int64, error) {
	c, err := tftp.NewClient(server.String())
	if err != nil {
		return 0, err
	}
	c.SetBlockSize(1468)
	c.SetTimeout(time.Second)
	c.SetRetries(5)
	c.SetBackoff(func(int) time.Duration { return 100 * time.Millisecond })
	if a := h.localAddr(); a.IsValid() {
		if err := c.SetLocalAddr(a.String()); err != nil {
			return 0, err
		}
	}
	wt, err := c.Receive(file, "octet")
	if err != nil {
		return 0, err
	}
	return wt.WriteTo(&ctxDiscard{ctx: ctx})
}

// tftpRetryable: errors other than a missing or forbidden file (TFTP
// error codes 1 and 2) are worth another try, and so is a server that says
// it is busy (pxe/tftp says so with code 1).
func tftpRetryable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "busy") || !strings.Contains(msg, "code: 1,") && !strings.Contains(msg, "code: 2,")
}

// ctxDiscard discards what is written until ctx ends, which aborts the
// transfer.
type ctxDiscard struct{ ctx context.Context }

func (w *ctxDiscard) Write(b []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return len(b), nil
}

// kernelBoot is what a script booted.
type kernelBoot struct {
	local   bool // the script booted the local disk
	cmdline ipxe.Cmdline
}

// runScript fetches and interprets the iPXE script at url (following
// chains), downloads the kernel and initrds it names, and returns the
// kernel command line. Like the renderer's scripts, a failed download waits
// the script's retry time and tries again.
func (h *Host) runScript(ctx context.Context, client *http.Client, url string) (kernelBoot, error) {
	for chain := 0; chain < maxChain; chain++ {
		body, err := h.get(ctx, client, url, 1<<20)
		if err != nil {
			return kernelBoot{}, fmt.Errorf("script %s: %w", url, err)
		}
		h.update(func(s *HostStats) { s.Scripts++ })
		sc, err := parseScript(body)
		if err != nil {
			return kernelBoot{}, fmt.Errorf("script %s: %w", url, err)
		}
		switch {
		case sc.local:
			return kernelBoot{local: true}, nil
		case sc.kernel != "":
			h.stage(StageKernel)
			for {
				err := h.fetchKernel(ctx, client, sc)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return kernelBoot{}, ctx.Err()
				}
				h.fail(fmt.Errorf("iPXE: %w; retrying in %v", err, sc.retry))
				if err := sleep(ctx, sc.retry); err != nil {
					return kernelBoot{}, err
				}
			}
			cl, err := ipxe.ParseCmdline(sc.args)
			if err != nil {
				return kernelBoot{}, fmt.Errorf("script %s: kernel command line: %w", url, err)
			}
			h.update(func(s *HostStats) { s.Cmdline = cl.String() })
			return kernelBoot{cmdline: cl}, nil
		case sc.chain != "":
			if err := sleep(ctx, sc.sleep); err != nil {
				return kernelBoot{}, err
			}
			url = sc.chain
		default:
			return kernelBoot{}, fmt.Errorf("script %s: %w: it neither boots, chains nor boots the disk", url, errNoBoot)
		}
	}
	return kernelBoot{}, fmt.Errorf("script %s: more than %d chained scripts", url, maxChain)
}

func (h *Host) fetchKernel(ctx context.Context, client *http.Client, sc script) error {
	for _, u := range append([]string{sc.kernel}, sc.initrds...) {
		n, err := h.download(ctx, client, u, 0, nil)
		h.update(func(s *HostStats) { s.KernelBytes += n })
		if err != nil {
			return err
		}
	}
	return nil
}

// script is what the simulator reads of an iPXE script.
type script struct {
	kernel  string   // kernel URL
	args    string   // the kernel's command line
	initrds []string // initrd URLs
	chain   string   // chain URL
	sleep   time.Duration
	retry   time.Duration // the sleep after a failure label
	local   bool          // sanboot or exit: boot the local disk
}

// parseScript reads the commands Rackstrap's scripts use (kernel, initrd,
// boot, chain, sleep, sanboot, exit); the rest (echo, goto, labels, iseq)
// is flow the simulator does not need.
func parseScript(b []byte) (script, error) {
	sc := script{retry: 5 * time.Second}
	lines := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for lines.Scan() {
		line := strings.TrimSpace(lines.Text())
		if first {
			if !strings.HasPrefix(line, "#!ipxe") {
				return sc, errors.New("not an iPXE script (no #!ipxe line)")
			}
			first = false
			continue
		}
		if i := strings.Index(line, "||"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || line[0] == '#' || line[0] == ':' {
			continue
		}
		cmd, rest, _ := strings.Cut(line, " ")
		args := strings.Fields(rest)
		for len(args) > 0 && strings.HasPrefix(args[0], "--") {
			if args[0] == "--name" || args[0] == "-n" {
				args = args[1:]
			}
			if len(args) > 0 {
				args = args[1:]
			}
		}
		switch cmd {
		case "kernel", "imgexec", "chain":
			if len(args) == 0 {
				return sc, fmt.Errorf("%s without a URL", cmd)
			}
			if cmd == "chain" && sc.kernel == "" {
				sc.chain = args[0]
				continue
			}
			if sc.kernel == "" {
				sc.kernel = args[0]
				// The command line is the rest of the line after the URL.
				_, after, _ := strings.Cut(rest, args[0])
				sc.args = strings.TrimSpace(after)
			}
		case "initrd", "module":
			if len(args) == 0 {
				return sc, errors.New("initrd without a URL")
			}
			sc.initrds = append(sc.initrds, args[0])
		case "sleep":
			if len(args) == 1 {
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 0 {
					return sc, fmt.Errorf("sleep %q: not a number of seconds", args[0])
				}
				n = min(n, 3600) // beyond an hour it is a stuck machine either way
				if sc.kernel != "" || sc.chain != "" {
					sc.retry = time.Duration(n) * time.Second
				} else {
					sc.sleep = time.Duration(n) * time.Second
				}
			}
		case "sanboot", "exit":
			if sc.kernel == "" && sc.chain == "" {
				sc.local = true
			}
		}
	}
	if err := lines.Err(); err != nil {
		return sc, err
	}
	if first {
		return sc, errors.New("empty script")
	}
	return sc, nil
}

// get fetches a small document (a script) into memory, retrying transient
// failures.
func (h *Host) get(ctx context.Context, client *http.Client, url string, max int64) ([]byte, error) {
	var buf *bytes.Buffer
	_, err := h.download(ctx, client, url, 0, func() io.Writer {
		buf = new(bytes.Buffer)
		return &limitWriter{w: buf, n: max}
	})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > l.n {
		return 0, errors.New("response too large")
	}
	l.n -= int64(len(b))
	return l.w.Write(b)
}

// download GETs url into a writer from sink (called once per attempt; nil
// discards), reading at most rate bytes a second when rate > 0. Connection
// failures and 5xx answers are retried three times; the bytes of the last
// attempt are returned.
func (h *Host) download(ctx context.Context, client *http.Client, url string, rate int64, sink func() io.Writer) (int64, error) {
	var last error
	for try := range 4 {
		if try > 0 {
			if err := sleep(ctx, time.Duration(try)*500*time.Millisecond); err != nil {
				return 0, err
			}
		}
		w := io.Discard
		if sink != nil {
			w = sink()
		}
		n, retry, err := h.downloadOnce(ctx, client, url, rate, w)
		if err == nil || !retry || ctx.Err() != nil {
			return n, err
		}
		last = err
	}
	return 0, last
}

func (h *Host) downloadOnce(ctx context.Context, client *http.Client, url string, rate int64, w io.Writer) (n int64, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, true, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, resp.StatusCode >= 500, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var r io.Reader = resp.Body
	if rate > 0 {
		r = &throttled{ctx: ctx, r: r, rate: rate, start: time.Now()}
	}
	n, err = io.Copy(w, r)
	if err != nil {
		return n, true, fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, true, fmt.Errorf("GET %s: %d bytes, want %d", url, n, resp.ContentLength)
	}
	return n, false, nil
}

// throttled reads at most rate bytes a second.
type throttled struct {
	ctx   context.Context
	r     io.Reader
	rate  int64
	start time.Time
	n     int64
}

func (t *throttled) Read(b []byte) (int, error) {
	if max := t.rate / 20; max > 0 && int64(len(b)) > max {
		b = b[:max]
	}
	n, err := t.r.Read(b)
	t.n += int64(n)
	due := t.start.Add(time.Duration(float64(t.n) / float64(t.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		if serr := sleep(t.ctx, d); serr != nil {
			return n, serr
		}
	}
	return n, err
}
