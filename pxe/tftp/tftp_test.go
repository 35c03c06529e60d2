package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/pxe/artifact"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// serve starts a server on loopback over a root with a 1 MiB file, a
// symlink out of the root and a directory.
func serve(t *testing.T) (*Server, string, []byte) {
	t.Helper()
	return serveWith(t, Config{Addr: mustAddrPort("127.0.0.1:0"), Timeout: time.Second})
}

func serveWith(t *testing.T, cfg Config) (*Server, string, []byte) {
	t.Helper()
	root, outside := t.TempDir(), t.TempDir()
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), data, 0o644)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "escape"))
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	dir, err := artifact.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	// A second source, reached only for files the first lacks.
	fallback := t.TempDir()
	os.WriteFile(filepath.Join(fallback, "snponly.efi"), []byte("efi"), 0o644)
	fb, _ := artifact.NewDir(fallback)
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, log, artifact.Chain{dir, fb})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	<-s.Ready()
	return s, root, data
}

func requirePeer(t *testing.T, bin, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s not found: install the Debian package %s (make test-deps installs test/apt-packages.txt)", bin, pkg)
	}
}

func run(t *testing.T, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

func TestCurl(t *testing.T) {
	t.Parallel()
	requirePeer(t, "curl", "curl")
	s, _, data := serve(t)
	base := "tftp://" + s.Addr().String() + "/"
	for _, blk := range []string{"512", "1468", "8192"} {
		out := filepath.Join(t.TempDir(), "got")
		if msg, err := run(t, "curl", "-sS", "--tftp-blksize", blk, "-o", out, base+"undionly.kpxe"); err != nil {
			t.Fatalf("curl blksize %s: %v\n%s", blk, err, msg)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
			t.Errorf("curl blksize %s: got %d bytes, want the %d of the file", blk, len(got), len(data))
		}
	}
	out := filepath.Join(t.TempDir(), "efi")
	if msg, err := run(t, "curl", "-sS", "-o", out, base+"snponly.efi"); err != nil {
		t.Fatalf("curl from the fallback source: %v\n%s", err, msg)
	}
	for _, p := range []string{"../../../etc/passwd", "escape", "dir", "missing"} {
		if msg, err := run(t, "curl", "-sS", "--path-as-is", "-o", "/dev/null", base+p); err == nil {
			t.Errorf("curl %s succeeded, want a TFTP error:\n%s", p, msg)
		}
	}
	// A transfer counts as served when the last ACK arrives, which may be
	// just after curl exits.
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats().Served < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Served < 4 || st.Refused < 2 || st.NotFound < 2 {
		t.Errorf("Stats() = %+v, want ≥4 served, ≥2 refused, ≥2 not found", st)
	}
}

func TestTFTPHPA(t *testing.T) {
	t.Parallel()
	requirePeer(t, "tftp", "tftp-hpa")
	s, _, data := serve(t)
	dir := t.TempDir()
	host, port := s.Addr().Addr().String(), s.Addr().Port()
	msg, err := run(t, "tftp", "-m", "binary", host, itoa(int(port)), "-c", "get", "undionly.kpxe", dir+"/got")
	if got, _ := os.ReadFile(dir + "/got"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("tftp-hpa get: %v, %d bytes, want %d\n%s", err, len(got), len(data), msg)
	}
	msg, _ = run(t, "tftp", "-m", "binary", host, itoa(int(port)), "-c", "get", "../etc/passwd", dir+"/bad")
	if !strings.Contains(msg, "Error code") {
		t.Errorf("tftp-hpa get ../etc/passwd: %q, want a TFTP error", msg)
	}
}

func itoa(i int) string { return fmtInt(i) }

func fmtInt(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// rrq sends a raw read request and returns the first reply packet and the
// connection (for the rest of the exchange).
func rrq(t *testing.T, s *Server, name string, opts ...string) ([]byte, *net.UDPConn, *net.UDPAddr) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := []byte{0, 1}
	p = append(p, name...)
	p = append(p, 0)
	p = append(p, "octet"...)
	p = append(p, 0)
	for _, o := range opts {
		p = append(p, o...)
		p = append(p, 0)
	}
	if _, err := c.WriteToUDPAddrPort(p, s.Addr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("RRQ %q: no reply: %v", name, err)
	}
	return buf[:n], c, from
}

func TestHostilePathsRaw(t *testing.T) {
	t.Parallel()
	s, _, _ := serve(t)
	for _, name := range []string{"/etc/passwd", "a\x00b", "..", "dir/../../x", `..\x`} {
		reply, _, _ := rrq(t, s, name)
		if op := binary.BigEndian.Uint16(reply); op != 5 {
			t.Errorf("RRQ %q: opcode %d, want ERROR (5)", name, op)
		}
	}
}

func TestSizeProbeIsNormal(t *testing.T) {
	t.Parallel()
	s, _, data := serve(t)
	reply, c, from := rrq(t, s, "undionly.kpxe", "tsize", "0", "blksize", "1468")
	if op := binary.BigEndian.Uint16(reply); op != 6 {
		t.Fatalf("RRQ with tsize: opcode %d, want OACK (6)", op)
	}
	if !bytes.Contains(reply, []byte("tsize\x00"+fmtInt(len(data))+"\x00")) {
		t.Errorf("OACK %q lacks tsize %d", reply, len(data))
	}
	// What UEFI does: abort with ERROR 8 after learning the size.
	c.WriteToUDP(append([]byte{0, 5, 0, 8}, "size probe\x00"...), from)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().SizeProbes == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Stats(); st.SizeProbes != 1 || st.Failed != 0 {
		t.Errorf("Stats() = %+v, want 1 size probe and no failures", st)
	}
}

// FuzzRequestPath sends arbitrary names through the request path and checks
// that only files inside the root are ever read.
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "../secret", "/etc/passwd", "escape", "a\x00b", "dir", "dir/../undionly.kpxe", `..\x`} {
		f.Add(s)
	}
	root, outside := f.TempDir(), f.TempDir()
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), []byte("inside"), 0o644)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("SECRET"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "escape"))
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	dir, _ := artifact.NewDir(root)
	s, err := New(Config{}, nil, dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		var rf capture
		if err := s.read(name, &rf); err == nil && string(rf.b) != "inside" {
			t.Fatalf("read(%q) served %q", name, rf.b)
		}
	})
}

type capture struct{ b []byte }

func (c *capture) ReadFrom(r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	c.b = b
	return int64(len(b)), err
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"timeout": {Timeout: time.Millisecond},
		"blksize": {MaxBlockSize: 100},
		"retries": {Retries: -1},
	} {
		if _, err := New(cfg, nil, artifact.Chain{}); err == nil {
			t.Errorf("New(%s) = nil error, want one", name)
		}
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestBurstQueuesInsteadOfFailing: with every transfer slot taken, a new
// request waits for one (a boot ROM treats a TFTP error as final) rather
// than being refused; with no time to wait it is refused and counted busy.
func TestBurstQueuesInsteadOfFailing(t *testing.T) {
	t.Parallel()
	requirePeer(t, "curl", "curl")
	for name, tc := range map[string]struct {
		wait     time.Duration
		wantBusy uint64
	}{"queued": {wait: 30 * time.Second}, "no wait": {wait: time.Millisecond, wantBusy: 1}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, _, data := serveWith(t, Config{Addr: mustAddrPort("127.0.0.1:0"), Timeout: time.Second, MaxTransfers: 1, QueueWait: tc.wait})
			url := "tftp://" + s.Addr().String() + "/undionly.kpxe"
			// A client that asks and never acknowledges holds the only
			// slot while the server retransmits (Timeout × Retries).
			hold, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Close()
			rrq := append([]byte{0, 1}, "undionly.kpxe\x00octet\x00"...)
			if _, err := hold.WriteTo(rrq, net.UDPAddrFromAddrPort(s.Addr())); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().Active == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the held transfer never started")
				}
				time.Sleep(10 * time.Millisecond)
			}
			out := filepath.Join(t.TempDir(), "fast")
			msg, err := run(t, "curl", "-sS", "-o", out, url)
			got, _ := os.ReadFile(out)
			if tc.wantBusy == 0 && (err != nil || !bytes.Equal(got, data)) {
				t.Errorf("request during a full server: %v %s; want it served once a slot frees", err, msg)
			}
			if tc.wantBusy > 0 && err == nil {
				t.Error("request during a full server with no time to wait succeeded; want a busy error")
			}
			if b := s.Stats().Busy; b != tc.wantBusy {
				t.Errorf("busy = %d, want %d", b, tc.wantBusy)
			}
		})
	}
}
