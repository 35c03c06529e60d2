package kubernetes

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, d)
	}
}

const hash = "sha256:0a4f6d0e3c4b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a291"

func testJoin(version string) Join {
	return Join{APIEndpoint: "10.0.0.5:6443", Token: "abcdef.0123456789abcdef", CACertHashes: []string{hash}, APIVersion: version}
}

// cloudInitSchema runs Debian's cloud-init schema validator on data.
func cloudInitSchema(t *testing.T, data []byte) {
	t.Helper()
	bin, err := exec.LookPath("cloud-init")
	if err != nil {
		t.Fatal("cloud-init not found: install Debian's cloud-init (listed in test/apt-packages.txt)")
	}
	p := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "schema", "--config-file", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid") {
		t.Fatalf("cloud-init schema --config-file: %v\n%s\n%s", err, out, data)
	}
}

func TestRenderCloudInit(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"v1beta4", "v1beta3"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			got, err := testJoin(version).RenderCloudInit("R12-N01")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "cloud-init-"+version+".golden", got)
			cloudInitSchema(t, got)

			// The file cloud-init writes is a kubeadm JoinConfiguration
			// that decodes strictly into kubeadm's types (mirrored).
			var cc struct {
				Hostname   string      `yaml:"hostname"`
				Preserve   bool        `yaml:"preserve_hostname"`
				WriteFiles []writeFile `yaml:"write_files"`
				Runcmd     [][]string  `yaml:"runcmd"`
			}
			dec := yaml.NewDecoder(strings.NewReader(string(got)))
			dec.KnownFields(true)
			if err := dec.Decode(&cc); err != nil {
				t.Fatal(err)
			}
			if len(cc.WriteFiles) != 1 || cc.WriteFiles[0].Permissions != "0600" {
				t.Fatalf("write_files = %+v, want one root-only file", cc.WriteFiles)
			}
			if want := [][]string{{"kubeadm", "join", "--config", cc.WriteFiles[0].Path}}; !cmp.Equal(cc.Runcmd, want) {
				t.Errorf("runcmd = %v, want %v", cc.Runcmd, want)
			}
			parsed, err := ParseJoinConfiguration([]byte(cc.WriteFiles[0].Content))
			if err != nil {
				t.Fatal(err)
			}
			pending := []Taint{{Key: TaintPending, Value: "hand-off", Effect: "NoSchedule"}}
			disc := &BootstrapTokenDiscovery{Token: "abcdef.0123456789abcdef", APIServerEndpoint: "10.0.0.5:6443", CACertHashes: []string{hash}}
			var want any = &JoinConfigurationV1beta4{APIVersion: "kubeadm.k8s.io/v1beta4", Kind: "JoinConfiguration",
				NodeRegistration: NodeRegistrationV1beta4{Name: "r12-n01", CRISocket: DefaultCRISocket, Taints: pending},
				Discovery:        DiscoveryV1beta4{BootstrapToken: disc}}
			if version == "v1beta3" {
				want = &JoinConfigurationV1beta3{APIVersion: "kubeadm.k8s.io/v1beta3", Kind: "JoinConfiguration",
					NodeRegistration: NodeRegistrationV1beta3{Name: "r12-n01", CRISocket: DefaultCRISocket, Taints: pending},
					Discovery:        DiscoveryV1beta3{BootstrapToken: disc}}
			}
			if d := cmp.Diff(want, parsed); d != "" {
				t.Errorf("JoinConfiguration (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseJoinConfigurationStrict(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ doc, err string }{
		"unknown field":            {"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery: {}\nnodeRegistraton: {}\n", "unknown field"},
		"v1beta3 field in v1beta4": {"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery: {timeout: 5m}\n", "unknown field"},
		"v1beta4 args in v1beta3":  {"apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ndiscovery: {}\nnodeRegistration: {taints: [], kubeletExtraArgs: [{name: a, value: b}]}\n", "cannot unmarshal"},
		"wrong kind":               {"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n", "want JoinConfiguration"},
		"wrong version":            {"apiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\n", "want kubeadm.k8s.io/v1beta4"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseJoinConfiguration([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseJoinConfiguration = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func TestJoinValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		mod  func(*Join)
		want string
	}{
		"no endpoint":  {func(j *Join) { j.APIEndpoint = "" }, "--kube-api-endpoint"},
		"no port":      {func(j *Join) { j.APIEndpoint = "10.0.0.5" }, "not host:port"},
		"bad port":     {func(j *Join) { j.APIEndpoint = "10.0.0.5:http" }, "not a port number"},
		"bad token":    {func(j *Join) { j.Token = "ABCDEF.0123456789abcdef" }, "kubeadm token create"},
		"no hash":      {func(j *Join) { j.CACertHashes = nil }, "--kube-ca-cert-hash"},
		"bad hash":     {func(j *Join) { j.CACertHashes = []string{"md5:00"} }, "64 lower-case hex"},
		"bad version":  {func(j *Join) { j.APIVersion = "v1beta2" }, "use v1beta4"},
		"bad socket":   {func(j *Join) { j.CRISocket = "tcp://x" }, "unix://"},
		"relative cfg": {func(j *Join) { j.ConfigPath = "join.yaml" }, "absolute"},
	} {
		t.Run(name, func(t *testing.T) {
			j := testJoin("")
			tc.mod(&j)
			err := j.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := testJoin("").Validate(); err != nil {
		t.Errorf("Validate() of a good configuration = %v", err)
	}
	if _, err := testJoin("").RenderCloudInit("bad_name"); err == nil || !strings.Contains(err.Error(), "not a valid Kubernetes node name") {
		t.Errorf("RenderCloudInit(bad_name) = %v, want a node name error", err)
	}
}

func FuzzParseJoinConfiguration(f *testing.F) {
	for _, v := range []string{"v1beta4", "v1beta3"} {
		b, err := testJoin(v).JoinConfiguration("n1")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseJoinConfiguration(data)
		if err == nil && v == nil {
			t.Fatal("nil configuration without an error")
		}
	})
}
