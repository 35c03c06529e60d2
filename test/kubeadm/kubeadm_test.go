package kubeadm

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/config/strict"
	"sigs.k8s.io/yaml"
)

// casesDir holds the cases: NAME.user-data (the cloud-init Rackstrap
// rendered) and NAME.want.json (what the JoinConfiguration in it must say).
func casesDir() string {
	if d := os.Getenv("RACKSTRAP_KUBEADM_CASES"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "cluster", "kubernetes", "testdata", "kubeadm")
}

// want is NAME.want.json: the settings the case was rendered from.
type want struct {
	APIVersion        string         `json:"apiVersion"`
	Name              string         `json:"name"`
	CRISocket         string         `json:"criSocket"`
	Token             string         `json:"token"`
	APIServerEndpoint string         `json:"apiServerEndpoint"`
	CACertHashes      []string       `json:"caCertHashes"`
	Taints            []corev1.Taint `json:"taints"`
}

// cloudConfig is the part of the user data that carries the join.
type cloudConfig struct {
	WriteFiles []struct {
		Path    string `json:"path"`
		Content string `json:"content"`
	} `json:"write_files"`
	Runcmd [][]string `json:"runcmd"`
}

// joinConfig finds the file that 'kubeadm join --config PATH' reads.
func joinConfig(userData []byte) ([]byte, string, error) {
	var cc cloudConfig
	if err := yaml.Unmarshal(userData, &cc); err != nil {
		return nil, "", err
	}
	for _, c := range cc.Runcmd {
		if len(c) == 4 && c[0] == "kubeadm" && c[1] == "join" && c[2] == "--config" {
			for _, f := range cc.WriteFiles {
				if f.Path == c[3] {
					return []byte(f.Content), f.Path, nil
				}
			}
			return nil, "", errors.New("runcmd runs kubeadm join --config " + c[3] + " but write_files does not write it")
		}
	}
	return nil, "", errors.New("no 'kubeadm join --config PATH' in runcmd")
}

// decode does what 'kubeadm join --config' does with the file: the strict
// check against the registered types of the document's group, version and
// kind (unknown, duplicate or mistyped fields are errors), then decoding,
// defaulting and conversion to kubeadm's internal JoinConfiguration.
func decode(doc []byte) (*kubeadmapi.JoinConfiguration, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, err
	}
	gvk := gv.WithKind(tm.Kind)
	if err := strict.VerifyUnmarshalStrict([]*runtime.Scheme{scheme.Scheme}, gvk, doc); err != nil {
		return nil, err
	}
	obj, err := runtime.Decode(scheme.Codecs.UniversalDecoder(), doc)
	if err != nil {
		return nil, err
	}
	jc, ok := obj.(*kubeadmapi.JoinConfiguration)
	if !ok {
		return nil, errors.New("decoded a " + gvk.String() + ", not a JoinConfiguration")
	}
	return jc, nil
}

func TestRenderedJoinConfigurations(t *testing.T) {
	dir := casesDir()
	files, err := filepath.Glob(filepath.Join(dir, "*.user-data"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.user-data cases in %s: run 'go test ./cluster/kubernetes -run KubeadmAPITypes -update' in the main module", dir)
	}
	versions := map[string]bool{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".user-data")
		t.Run(name, func(t *testing.T) {
			ud, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wb, err := os.ReadFile(filepath.Join(dir, name+".want.json"))
			if err != nil {
				t.Fatal(err)
			}
			var w want
			dec := json.NewDecoder(strings.NewReader(string(wb)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&w); err != nil {
				t.Fatalf("%s.want.json: %v", name, err)
			}
			doc, path, err := joinConfig(ud)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			jc, err := decode(doc)
			if err != nil {
				t.Fatalf("%s: the JoinConfiguration written to %s does not decode strictly with kubeadm's types: %v\n%s", f, path, err, doc)
			}
			if !strings.Contains(string(doc), "apiVersion: "+w.APIVersion+"\n") {
				t.Errorf("%s: the document is not %s:\n%s", f, w.APIVersion, doc)
			}
			versions[w.APIVersion] = true
			nr := jc.NodeRegistration
			if nr.Name != w.Name || nr.CRISocket != w.CRISocket {
				t.Errorf("nodeRegistration = name %q criSocket %q, want %q %q", nr.Name, nr.CRISocket, w.Name, w.CRISocket)
			}
			if !slices.EqualFunc(nr.Taints, w.Taints, func(a, b corev1.Taint) bool {
				return a.Key == b.Key && a.Value == b.Value && a.Effect == b.Effect
			}) {
				t.Errorf("nodeRegistration.taints = %+v, want %+v", nr.Taints, w.Taints)
			}
			bt := jc.Discovery.BootstrapToken
			if bt == nil {
				t.Fatal("discovery.bootstrapToken is missing")
			}
			if bt.Token != w.Token || bt.APIServerEndpoint != w.APIServerEndpoint || !slices.Equal(bt.CACertHashes, w.CACertHashes) || bt.UnsafeSkipCAVerification {
				t.Errorf("discovery.bootstrapToken = %+v, want token %q endpoint %q hashes %v, CA verified", *bt, w.Token, w.APIServerEndpoint, w.CACertHashes)
			}
			if _, err := bootstraptokenv1.NewBootstrapTokenString(bt.Token); err != nil {
				t.Errorf("kubeadm rejects the bootstrap token: %v", err)
			}
			// kubeadm fills the TLS bootstrap token from the discovery
			// token when the file does not set one
			if jc.Discovery.TLSBootstrapToken != w.Token && jc.Discovery.TLSBootstrapToken != "" {
				t.Errorf("discovery.tlsBootstrapToken = %q", jc.Discovery.TLSBootstrapToken)
			}
			if jc.ControlPlane != nil || jc.Discovery.File != nil {
				t.Errorf("a worker join must not carry controlPlane or file discovery: %+v", jc)
			}
		})
	}
	if os.Getenv("RACKSTRAP_KUBEADM_CASES") == "" {
		for _, v := range []string{"kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"} {
			if !versions[v] {
				t.Errorf("no case is %s", v)
			}
		}
	}
}

// TestStrictness proves the check above would catch what it is there for:
// kubeadm's strict decoding refuses fields its types do not have.
func TestStrictness(t *testing.T) {
	const base = "kind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: 10.0.0.5:6443\n    caCertHashes: [\"sha256:00\"]\n"
	for name, tc := range map[string]struct {
		doc string
		ok  bool
	}{
		"v1beta4":                  {"apiVersion: kubeadm.k8s.io/v1beta4\n" + base, true},
		"v1beta3":                  {"apiVersion: kubeadm.k8s.io/v1beta3\n" + base, true},
		"unknown field":            {"apiVersion: kubeadm.k8s.io/v1beta4\n" + base + "nodeRegistraton: {}\n", false},
		"v1beta3 field in v1beta4": {"apiVersion: kubeadm.k8s.io/v1beta4\n" + base + "  timeout: 5m0s\n", false},
		"v1beta4 field in v1beta3": {"apiVersion: kubeadm.k8s.io/v1beta3\n" + base + "timeouts: {discovery: 5m0s}\n", false},
		"v1beta4 args in v1beta3":  {"apiVersion: kubeadm.k8s.io/v1beta3\n" + base + "nodeRegistration: {kubeletExtraArgs: [{name: a, value: b}]}\n", false},
		"duplicate field":          {"apiVersion: kubeadm.k8s.io/v1beta4\n" + base + "kind: JoinConfiguration\n", false},
		"unknown version":          {"apiVersion: kubeadm.k8s.io/v1beta2\n" + base, false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decode([]byte(tc.doc))
			if (err == nil) != tc.ok {
				t.Errorf("decode(%s) = %v, want ok=%v\n%s", name, err, tc.ok, tc.doc)
			}
		})
	}
}
