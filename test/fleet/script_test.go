package fleet

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rackstrap/rackstrap/pxe/ipxe"
)

// rendered renders s with the controller's renderer.
func rendered(t testing.TB, s ipxe.Script) string {
	t.Helper()
	b, err := ipxe.Render(s)
	if err != nil {
		t.Fatalf("Render(%+v): %v", s, err)
	}
	return string(b)
}

func TestParseScript(t *testing.T) {
	t.Parallel()
	const base = "http://10.0.0.1:8080"
	for name, tc := range map[string]struct {
		in      string
		want    script
		wantErr bool
	}{
		"boot": {
			in: rendered(t, ipxe.Script{Node: "n1", MAC: "02:00:00:00:00:01", Action: ipxe.Boot, Kernel: base + "/vmlinuz",
				Initrds: []string{base + "/initrd.gz", base + "/agent.cpio.gz"}, Retry: 7 * time.Second,
				Cmdline: ipxe.Cmdline{}.Set("console", "ttyS0").Set("rackstrap.token", "t0k").Set("rackstrap.note", "two words")}),
			want: script{kernel: base + "/vmlinuz", args: `console=ttyS0 rackstrap.token=t0k rackstrap.note="two words" initrd=initrd.gz initrd=agent.cpio.gz`,
				initrds: []string{base + "/initrd.gz", base + "/agent.cpio.gz"}, retry: 7 * time.Second},
		},
		"local": {
			in:   rendered(t, ipxe.Script{Action: ipxe.LocalDisk}),
			want: script{local: true, retry: 5 * time.Second},
		},
		"chain": {
			in:   rendered(t, ipxe.Script{Action: ipxe.Chain, Chain: base + "/other.ipxe", Retry: 3 * time.Second}),
			want: script{chain: base + "/other.ipxe", retry: 3 * time.Second},
		},
		"wait": {
			in:   rendered(t, ipxe.Script{Action: ipxe.Wait, Chain: base + "/ipxe?mac=02:00:00:00:00:01", Retry: 10 * time.Second}),
			want: script{chain: base + "/ipxe?mac=02:00:00:00:00:01", sleep: 10 * time.Second, retry: 5 * time.Second},
		},
		"not ipxe":       {in: "kernel http://x/vmlinuz\n", wantErr: true},
		"empty":          {in: "", wantErr: true},
		"kernel no url":  {in: "#!ipxe\nkernel\n", wantErr: true},
		"initrd no url":  {in: "#!ipxe\ninitrd --name x\n", wantErr: true},
		"sleep not int":  {in: "#!ipxe\nsleep soon\n", wantErr: true},
		"sleep negative": {in: "#!ipxe\nsleep -1\n", wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := parseScript([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseScript(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(script{})); d != "" {
				t.Errorf("parseScript(%q) (-want +got):\n%s", tc.in, d)
			}
			if got.kernel != "" {
				if _, err := ipxe.ParseCmdline(got.args); err != nil {
					t.Errorf("ParseCmdline(%q): %v", got.args, err)
				}
			}
		})
	}
}

func FuzzParseScript(f *testing.F) {
	f.Add(rendered(f, ipxe.Script{Action: ipxe.Boot, Kernel: "http://a/k", Initrds: []string{"http://a/i"}, Cmdline: ipxe.Cmdline{}.Set("a", "b c")}))
	f.Add(rendered(f, ipxe.Script{Action: ipxe.LocalDisk}))
	f.Add(rendered(f, ipxe.Script{Action: ipxe.Wait, Chain: "http://a/ipxe?mac=x"}))
	f.Add("#!ipxe\nkernel --name k http://x || goto failed\nsleep 99999999999999999999\n")
	f.Fuzz(func(t *testing.T, in string) {
		sc, err := parseScript([]byte(in))
		if err != nil {
			return
		}
		if sc.sleep < 0 || sc.retry < 0 {
			t.Errorf("parseScript(%q): negative sleep %+v", in, sc)
		}
	})
}
