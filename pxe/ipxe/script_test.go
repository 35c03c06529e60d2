package ipxe

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/name.golden, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden file: %v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", p, d)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	base := Cmdline{}.Set("console", "ttyS0,115200").Flag("quiet")
	tests := map[string]Script{
		"discovery": {
			Node: "", MAC: "52:54:00:12:34:01", Action: Boot,
			Kernel:  "http://10.222.0.1:8080/artifacts/vmlinuz",
			Initrds: []string{"http://10.222.0.1:8080/artifacts/initrd.gz"},
			Cmdline: base.Set("rackstrap.mode", "discover").Set("rackstrap.api", "http://10.222.0.1:8080").Set("rackstrap.platform", "${platform}"),
		},
		"install": {
			Node: "gpu-r01-s07", MAC: "52:54:00:12:34:07", Action: Boot,
			Kernel:  "http://10.0.0.1/a/vmlinuz-6.1?sha256=ab12",
			Initrds: []string{"http://10.0.0.1/a/initrd.gz", "http://10.0.0.1/a/agent.cpio.gz"},
			Cmdline: base.Set("rackstrap.token", "t0k3n").Set("rackstrap.note", "two words").Set("initrd", "initrd.gz"),
			Retry:   10 * time.Second,
		},
		"local":                {Node: "gpu-r01-s07", MAC: "52:54:00:12:34:07", Action: LocalDisk},
		"chain":                {MAC: "52:54:00:12:34:07", Action: Chain, Chain: "tftp://${next-server}/undionly.kpxe"},
		"wait":                 {MAC: "52:54:00:12:34:07", Action: Wait, Chain: "http://10.0.0.1/ipxe?mac=${net0/mac}", Retry: 30 * time.Second},
		"err-newline-node":     {Node: "evil\nshell", Action: LocalDisk},
		"err-kernel-scheme":    {Action: Boot, Kernel: "file:///etc/passwd"},
		"err-kernel-space":     {Action: Boot, Kernel: "http://h/a b"},
		"err-cmdline-quote":    {Action: Boot, Kernel: "http://h/k", Cmdline: Cmdline{}.Set("x", `a"b`)},
		"err-cmdline-operator": {Action: Boot, Kernel: "http://h/k", Cmdline: Cmdline{}.Flag("||")},
		"err-dollar":           {Action: Boot, Kernel: "http://h/k", Cmdline: Cmdline{}.Set("x", "$(reboot)")},
		"err-dup-initrd":       {Action: Boot, Kernel: "http://h/k", Initrds: []string{"http://h/a/i.gz", "http://h/b/i.gz"}},
		"err-action":           {Action: "shell"},
		"err-no-chain":         {Action: Chain},
		"err-retry":            {Action: Wait, Chain: "http://h/s", Retry: time.Millisecond},
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Render(s)
			if err != nil {
				got = []byte("error: " + err.Error() + "\n")
			}
			golden(t, name, got)
		})
	}
}

func TestCmdlineRoundTrip(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   string
		want Cmdline
		err  bool
	}{
		"simple":  {in: "console=ttyS0 quiet", want: Cmdline{{Key: "console", Value: "ttyS0", HasValue: true}, {Key: "quiet"}}},
		"quoted":  {in: `a="b c" d=`, want: Cmdline{{Key: "a", Value: "b c", HasValue: true}, {Key: "d", HasValue: true}}},
		"eq":      {in: "root=UUID=1234  ro", want: Cmdline{{Key: "root", Value: "UUID=1234", HasValue: true}, {Key: "ro"}}},
		"empty":   {in: "   "},
		"unterm":  {in: `a="b`, err: true},
		"control": {in: "a=\tb", err: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCmdline(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("ParseCmdline(%q) error = %v, want error %v", tc.in, err, tc.err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ParseCmdline(%q) mismatch (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

func TestCmdlineSetGet(t *testing.T) {
	t.Parallel()
	c := Cmdline{}.Set("console", "tty0").Flag("quiet").Set("console", "ttyS0")
	if got, want := c.String(), "console=ttyS0 quiet"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if v, ok := c.Get("console"); !ok || v != "ttyS0" {
		t.Errorf("Get(console) = %q, %v, want ttyS0, true", v, ok)
	}
}

// FuzzParseCmdline checks that whatever ParseCmdline accepts renders back to
// a line that parses to the same parameters.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"console=ttyS0,115200 quiet", `a="b c" d= e`, "root=UUID=1=2", `"x`, "k=\"v\"w", "  ", "a=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseCmdline(%q) = %v, which does not validate: %v", s, c, err)
		}
		again, err := ParseCmdline(c.String())
		if err != nil {
			t.Fatalf("ParseCmdline(%q) rendered %q, which does not parse: %v", s, c.String(), err)
		}
		if d := cmp.Diff(c, again); d != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", s, c.String(), d)
		}
	})
}

// FuzzRender checks that Render never emits a script with an extra line or a
// stray '$' for any node name, URL or parameter.
func FuzzRender(f *testing.F) {
	f.Add("node", "http://h/k", "http://h/i.gz", "k", "v")
	f.Add("a\nb", "http://h/${x}", "tftp://h/i", "k", "${platform}")
	f.Add("", "http://h/k", "http://h/i", "||", "$x")
	f.Fuzz(func(t *testing.T, node, kernel, initrd, key, val string) {
		s := Script{Node: node, Action: Boot, Kernel: kernel, Initrds: []string{initrd}, Cmdline: Cmdline{}.Set(key, val)}
		out, err := Render(s)
		if err != nil {
			return
		}
		ok, _ := Render(Script{Action: Boot, Kernel: "http://h/k", Initrds: []string{"http://h/i"}, Cmdline: Cmdline{}.Set("k", "v")})
		if got, want := bytesCount(out, '\n'), bytesCount(ok, '\n'); got != want {
			t.Fatalf("Render(%+v) has %d lines, want %d:\n%s", s, got, want, out)
		}
	})
}

func bytesCount(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}
