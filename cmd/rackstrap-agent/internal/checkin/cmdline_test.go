package checkin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in   string
		want BootParams
		err  string
	}{
		"ipxe script": {
			in:   "BOOT_IMAGE=/vmlinuz initrd=initrd.img console=ttyS0,115200 rackstrap.server=https://10.0.0.1:8443 rackstrap.token=AbC-123_xyz rackstrap.phase=netboot quiet\n",
			want: BootParams{Server: "https://10.0.0.1:8443", Token: "AbC-123_xyz", Phase: Netboot},
		},
		"quoted and ca": {
			in:   `rackstrap.server="http://[fd00::1]:8080" "rackstrap.token=t0k" rackstrap.phase=firstboot rackstrap.ca=/etc/rackstrap/ca.pem rackstrap.lldp=35s`,
			want: BootParams{Server: "http://[fd00::1]:8080", Token: "t0k", Phase: Firstboot, CAFile: "/etc/rackstrap/ca.pem", LLDPWait: 35 * time.Second},
		},
		"disk path": {
			in:   "rackstrap.server=http://a rackstrap.token=t rackstrap.phase=netboot rackstrap.disk=/dev/disk/by-id/nvme-X",
			want: BootParams{Server: "http://a", Token: "t", Phase: Netboot, Disk: "/dev/disk/by-id/nvme-X"},
		},
		"disk name": {
			in:   "rackstrap.server=http://a rackstrap.token=t rackstrap.phase=netboot rackstrap.disk=nvme0n1",
			want: BootParams{Server: "http://a", Token: "t", Phase: Netboot, Disk: "/dev/nvme0n1"},
		},
		"bad disk":      {in: "rackstrap.server=http://a rackstrap.token=t rackstrap.phase=netboot rackstrap.disk=/tmp/x", err: `rackstrap.disk="/tmp/x" is neither`},
		"bad lldp wait": {in: "rackstrap.server=http://a rackstrap.token=t rackstrap.phase=netboot rackstrap.lldp=forever", err: `rackstrap.lldp="forever" is not a duration`},
		"later wins": {
			in:   "rackstrap.phase=netboot rackstrap.server=http://a rackstrap.token=one rackstrap.token=two rackstrap.phase=firstboot",
			want: BootParams{Server: "http://a", Token: "two", Phase: Firstboot},
		},
		"tabs and init args after --": {
			in:   "rackstrap.server=http://a\trackstrap.token=t\trackstrap.phase=netboot -- rackstrap.token=evil",
			want: BootParams{Server: "http://a", Token: "t", Phase: Netboot},
		},
		"no rackstrap keys":  {in: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet", err: ErrNoBootParams.Error()},
		"empty":              {in: "", err: ErrNoBootParams.Error()},
		"missing token":      {in: "rackstrap.server=http://a rackstrap.phase=netboot", err: "rackstrap.token= is missing"},
		"bad phase":          {in: "rackstrap.server=http://a rackstrap.token=t rackstrap.phase=imaging", err: `unknown phase "imaging"`},
		"bad url":            {in: "rackstrap.server=10.0.0.1 rackstrap.token=t rackstrap.phase=netboot", err: "not an http:// or https:// URL"},
		"credentials in url": {in: "rackstrap.server=http://u:p@a rackstrap.token=t rackstrap.phase=netboot", err: "without credentials"},
		"relative ca":        {in: "rackstrap.server=http://a rackstrap.token=t rackstrap.phase=netboot rackstrap.ca=ca.pem", err: "not an absolute path"},
		"all wrong":          {in: "rackstrap.server= rackstrap.token=\x01 rackstrap.phase=", err: "rackstrap.server= is missing or empty\nrackstrap.token= holds characters that are not printable ASCII\nrackstrap.phase= is missing or empty"},
		"unterminated quote": {in: `rackstrap.server=http://a rackstrap.token=t rackstrap.phase="netboot`, want: BootParams{Server: "http://a", Token: "t", Phase: Netboot}},
		"too long":           {in: strings.Repeat("x", maxCmdline+1), err: "not a command line"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCmdline(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseCmdline(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCmdline(%q) error %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseCmdline(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
	if _, err := ParseCmdline("quiet"); !errors.Is(err, ErrNoBootParams) {
		t.Errorf("ParseCmdline(quiet) = %v, want ErrNoBootParams", err)
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"BOOT_IMAGE=/vmlinuz rackstrap.server=https://10.0.0.1:8443 rackstrap.token=AbC rackstrap.phase=netboot quiet\n",
		`rackstrap.server="http://[fd00::1]:8080" "rackstrap.token=t0k" rackstrap.phase=firstboot rackstrap.ca=/ca.pem`,
		"rackstrap.server=http://a rackstrap.token=t rackstrap.phase=netboot -- x",
		"rackstrap.server=%zz rackstrap.token=\xff rackstrap.phase=\x00",
		`"""rackstrap.server="=`,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCmdline(s)
		if err != nil {
			if p != (BootParams{}) {
				t.Fatalf("error %v with params %+v", err, p)
			}
			return
		}
		// What is accepted is usable as is.
		if _, err := ParsePhase(string(p.Phase)); err != nil {
			t.Fatalf("accepted phase %q: %v", p.Phase, err)
		}
		if _, err := New(Config{Server: p.Server, Token: p.Token}); err != nil {
			t.Fatalf("accepted %+v but New refuses it: %v", p, err)
		}
		// Parsing is deterministic.
		if q, _ := ParseCmdline(s); q != p {
			t.Fatalf("second parse %+v != %+v", q, p)
		}
	})
}
