package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
)

// The enlistment flags turn the feature on only with --bmc-subnet, and
// refuse what they cannot use with a message naming the flag.
func TestEnlistServeFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "rack.yaml")
	os.WriteFile(manifest, []byte("racks:\n  - name: r1\n    nodes:\n      - slot: 1\n        serial: SN1\n        bmcMAC: 02:52:01:00:00:01\n"), 0o644)
	creds := filepath.Join(dir, "logins.yaml")
	os.WriteFile(creds, []byte("- username: admin\n  password: secret\n"), 0o600)
	cases := map[string]struct {
		args []string
		on   bool
		err  string
	}{
		"off":                      {nil, false, ""},
		"on":                       {[]string{"--bmc-subnet", "10.0.12.0/24", "--bmc-subnet", "10.0.13.0/24"}, true, ""},
		"with manifest and logins": {[]string{"--bmc-subnet", "10.0.12.0/24", "--bmc-enlist-manifest", manifest, "--bmc-enlist-credentials", creds, "--bmc-enlist-desired", "ready"}, true, ""},
		"bad subnet":               {[]string{"--bmc-subnet", "10.0.12.0"}, false, "--bmc-subnet"},
		"logins without subnet":    {[]string{"--bmc-enlist-credentials", creds}, false, "need --bmc-subnet"},
		"bad desired":              {[]string{"--bmc-subnet", "10.0.12.0/24", "--bmc-enlist-desired", "happy"}, false, "--bmc-enlist-desired"},
		"missing manifest":         {[]string{"--bmc-subnet", "10.0.12.0/24", "--bmc-enlist-manifest", filepath.Join(dir, "nope.yaml")}, false, "--bmc-enlist-manifest"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			f := &enlistServeFlags{}
			f.register(fl)
			if err := fl.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			feat, err := f.feature()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("feature() = %v, %v; want an error naming %s", feat, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := feat.(*controller.Enlister); ok != tc.on {
				t.Errorf("feature() = %#v, want on %v", feat, tc.on)
			}
		})
	}
}
