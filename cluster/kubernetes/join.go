package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	k8syaml "sigs.k8s.io/yaml"
)

// Join is how a node joins the cluster with kubeadm: the site's values,
// given to the controller as flags.
type Join struct {
	// APIEndpoint is the control plane's host:port as nodes reach it
	// (a load balancer or the first control-plane node), e.g. 10.0.0.5:6443.
	APIEndpoint string
	// Token is a kubeadm bootstrap token (abcdef.0123456789abcdef), from
	// 'kubeadm token create' on a control-plane node.
	Token string
	// CACertHashes pin the cluster CA: "sha256:<hex>", as printed by
	// 'kubeadm token create --print-join-command'. At least one.
	CACertHashes []string
	// CRISocket is the container runtime's socket (default containerd's).
	CRISocket string
	// APIVersion is the kubeadm configuration version: "v1beta4"
	// (kubeadm 1.31 and later, the default) or "v1beta3" (1.22–1.30).
	APIVersion string
	// ConfigPath is where the node's first boot writes the
	// JoinConfiguration (default /etc/kubernetes/rackstrap-join.yaml).
	ConfigPath string
}

// DefaultCRISocket is containerd's socket.
const DefaultCRISocket = "unix:///var/run/containerd/containerd.sock"

func (j Join) withDefaults() Join {
	if j.CRISocket == "" {
		j.CRISocket = DefaultCRISocket
	}
	if j.APIVersion == "" {
		j.APIVersion = "v1beta4"
	}
	if j.ConfigPath == "" {
		j.ConfigPath = "/etc/kubernetes/rackstrap-join.yaml"
	}
	return j
}

var (
	tokenRE  = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	caHashRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// dns1123 is a Kubernetes node name (DNS-1123 subdomain).
	dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// Validate checks the join settings; each error says which flag to fix.
func (j Join) Validate() error {
	j = j.withDefaults()
	var errs []error
	host, port, err := net.SplitHostPort(j.APIEndpoint)
	if j.APIEndpoint == "" {
		errs = append(errs, errors.New("kubernetes: no API endpoint: give the control plane's host:port (--kube-api-endpoint 10.0.0.5:6443)"))
	} else if err != nil || host == "" {
		errs = append(errs, fmt.Errorf("kubernetes: API endpoint %q is not host:port (e.g. 10.0.0.5:6443)", j.APIEndpoint))
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		errs = append(errs, fmt.Errorf("kubernetes: API endpoint %q: port %q is not a port number", j.APIEndpoint, port))
	}
	if !tokenRE.MatchString(j.Token) {
		errs = append(errs, errors.New("kubernetes: the bootstrap token must look like abcdef.0123456789abcdef (6 and 16 lower-case letters or digits): create one with 'kubeadm token create' (--kube-token-file)"))
	}
	if len(j.CACertHashes) == 0 {
		errs = append(errs, errors.New("kubernetes: no CA certificate hash: give the sha256:… value 'kubeadm token create --print-join-command' prints (--kube-ca-cert-hash); joining without one trusts any API server"))
	}
	for _, h := range j.CACertHashes {
		if !caHashRE.MatchString(h) {
			errs = append(errs, fmt.Errorf("kubernetes: CA certificate hash %q must be sha256: followed by 64 lower-case hex digits", h))
		}
	}
	if !strings.HasPrefix(j.CRISocket, "unix://") && !strings.HasPrefix(j.CRISocket, "/") {
		errs = append(errs, fmt.Errorf("kubernetes: CRI socket %q must be a unix:// URL or an absolute path", j.CRISocket))
	}
	if j.APIVersion != "v1beta3" && j.APIVersion != "v1beta4" {
		errs = append(errs, fmt.Errorf("kubernetes: kubeadm API version %q: use v1beta4 (kubeadm 1.31+) or v1beta3 (1.22-1.30)", j.APIVersion))
	}
	if !strings.HasPrefix(j.ConfigPath, "/") || strings.ContainsAny(j.ConfigPath, " \n\t") {
		errs = append(errs, fmt.Errorf("kubernetes: join configuration path %q must be absolute, without spaces", j.ConfigPath))
	}
	return errors.Join(errs...)
}

// NodeName is the Kubernetes node name of a Rackstrap node: the kubelet
// registers under its lower-cased host name, a DNS-1123 subdomain.
func NodeName(name string) (string, error) {
	n := strings.ToLower(name)
	if len(n) > 253 || !dns1123.MatchString(n) {
		return "", fmt.Errorf("node name %q is not a valid Kubernetes node name (lower-case letters, digits, '-' and '.'): rename it in the rack manifest", name)
	}
	return n, nil
}

// The kubeadm configuration types below mirror the fields of kubeadm's
// JoinConfiguration in k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm
// (v1beta4 and v1beta3). That package cannot be a dependency of this module
// (k8s.io/kubernetes's go.mod requires every staging module at v0.0.0 and
// replaces it with a local directory), so rendering uses these mirrors, and
// the nested module test/kubeadm, which pins the staging modules with its
// own replace directives, decodes what RenderCloudInit writes with the real
// types, strictly (TestKubeadmAPITypes runs it).

// JoinConfigurationV1beta4 mirrors kubeadm.k8s.io/v1beta4 JoinConfiguration.
type JoinConfigurationV1beta4 struct {
	APIVersion       string                  `json:"apiVersion"`
	Kind             string                  `json:"kind"`
	DryRun           bool                    `json:"dryRun,omitempty"`
	NodeRegistration NodeRegistrationV1beta4 `json:"nodeRegistration,omitempty"`
	CACertPath       string                  `json:"caCertPath,omitempty"`
	Discovery        DiscoveryV1beta4        `json:"discovery"`
	ControlPlane     *JoinControlPlane       `json:"controlPlane,omitempty"`
	SkipPhases       []string                `json:"skipPhases,omitempty"`
	Patches          *Patches                `json:"patches,omitempty"`
	Timeouts         *TimeoutsV1beta4        `json:"timeouts,omitempty"`
}

// TimeoutsV1beta4 mirrors v1beta4 Timeouts (metav1.Duration as written:
// "5m0s").
type TimeoutsV1beta4 struct {
	ControlPlaneComponentHealthCheck string `json:"controlPlaneComponentHealthCheck,omitempty"`
	KubeletHealthCheck               string `json:"kubeletHealthCheck,omitempty"`
	KubernetesAPICall                string `json:"kubernetesAPICall,omitempty"`
	EtcdAPICall                      string `json:"etcdAPICall,omitempty"`
	TLSBootstrap                     string `json:"tlsBootstrap,omitempty"`
	Discovery                        string `json:"discovery,omitempty"`
	UpgradeManifests                 string `json:"upgradeManifests,omitempty"`
}

// NodeRegistrationV1beta4 mirrors v1beta4 NodeRegistrationOptions.
type NodeRegistrationV1beta4 struct {
	Name                  string   `json:"name,omitempty"`
	CRISocket             string   `json:"criSocket,omitempty"`
	Taints                []Taint  `json:"taints"`
	KubeletExtraArgs      []Arg    `json:"kubeletExtraArgs,omitempty"`
	IgnorePreflightErrors []string `json:"ignorePreflightErrors,omitempty"`
	ImagePullPolicy       string   `json:"imagePullPolicy,omitempty"`
	ImagePullSerial       *bool    `json:"imagePullSerial,omitempty"`
}

// Arg is a v1beta4 command-line argument (name, value).
type Arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Taint mirrors core/v1 Taint as kubeadm reads it.
type Taint struct {
	Key       string `json:"key"`
	Value     string `json:"value,omitempty"`
	Effect    string `json:"effect"`
	TimeAdded string `json:"timeAdded,omitempty"`
}

// DiscoveryV1beta4 mirrors v1beta4 Discovery (timeouts moved to Timeouts).
type DiscoveryV1beta4 struct {
	BootstrapToken    *BootstrapTokenDiscovery `json:"bootstrapToken,omitempty"`
	File              *FileDiscovery           `json:"file,omitempty"`
	TLSBootstrapToken string                   `json:"tlsBootstrapToken,omitempty"`
}

// BootstrapTokenDiscovery mirrors kubeadm's BootstrapTokenDiscovery.
type BootstrapTokenDiscovery struct {
	Token                    string   `json:"token"`
	APIServerEndpoint        string   `json:"apiServerEndpoint,omitempty"`
	CACertHashes             []string `json:"caCertHashes,omitempty"`
	UnsafeSkipCAVerification bool     `json:"unsafeSkipCAVerification,omitempty"`
}

// FileDiscovery mirrors kubeadm's FileDiscovery.
type FileDiscovery struct {
	KubeConfigPath string `json:"kubeConfigPath"`
}

// JoinControlPlane mirrors kubeadm's JoinControlPlane.
type JoinControlPlane struct {
	LocalAPIEndpoint struct {
		AdvertiseAddress string `json:"advertiseAddress,omitempty"`
		BindPort         int32  `json:"bindPort,omitempty"`
	} `json:"localAPIEndpoint,omitempty"`
	CertificateKey string `json:"certificateKey,omitempty"`
}

// Patches mirrors kubeadm's Patches.
type Patches struct {
	Directory string `json:"directory,omitempty"`
}

// JoinConfigurationV1beta3 mirrors kubeadm.k8s.io/v1beta3 JoinConfiguration.
type JoinConfigurationV1beta3 struct {
	APIVersion       string                  `json:"apiVersion"`
	Kind             string                  `json:"kind"`
	NodeRegistration NodeRegistrationV1beta3 `json:"nodeRegistration,omitempty"`
	CACertPath       string                  `json:"caCertPath,omitempty"`
	Discovery        DiscoveryV1beta3        `json:"discovery"`
	ControlPlane     *JoinControlPlane       `json:"controlPlane,omitempty"`
	SkipPhases       []string                `json:"skipPhases,omitempty"`
	Patches          *Patches                `json:"patches,omitempty"`
}

// NodeRegistrationV1beta3 mirrors v1beta3 NodeRegistrationOptions.
type NodeRegistrationV1beta3 struct {
	Name                  string            `json:"name,omitempty"`
	CRISocket             string            `json:"criSocket,omitempty"`
	Taints                []Taint           `json:"taints"`
	KubeletExtraArgs      map[string]string `json:"kubeletExtraArgs,omitempty"`
	IgnorePreflightErrors []string          `json:"ignorePreflightErrors,omitempty"`
	ImagePullPolicy       string            `json:"imagePullPolicy,omitempty"`
}

// DiscoveryV1beta3 mirrors v1beta3 Discovery.
type DiscoveryV1beta3 struct {
	BootstrapToken    *BootstrapTokenDiscovery `json:"bootstrapToken,omitempty"`
	File              *FileDiscovery           `json:"file,omitempty"`
	TLSBootstrapToken string                   `json:"tlsBootstrapToken,omitempty"`
	Timeout           string                   `json:"timeout,omitempty"`
}

// JoinConfiguration renders the kubeadm JoinConfiguration of one node. The
// node registers with TaintPending, which hand-off removes.
func (j Join) JoinConfiguration(node string) ([]byte, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	j = j.withDefaults()
	name, err := NodeName(node)
	if err != nil {
		return nil, err
	}
	disc := &BootstrapTokenDiscovery{Token: j.Token, APIServerEndpoint: j.APIEndpoint, CACertHashes: j.CACertHashes}
	taints := []Taint{{Key: TaintPending, Value: "hand-off", Effect: "NoSchedule"}}
	var v any
	switch j.APIVersion {
	case "v1beta3":
		v = JoinConfigurationV1beta3{APIVersion: "kubeadm.k8s.io/v1beta3", Kind: "JoinConfiguration",
			NodeRegistration: NodeRegistrationV1beta3{Name: name, CRISocket: j.CRISocket, Taints: taints},
			Discovery:        DiscoveryV1beta3{BootstrapToken: disc}}
	default:
		v = JoinConfigurationV1beta4{APIVersion: "kubeadm.k8s.io/v1beta4", Kind: "JoinConfiguration",
			NodeRegistration: NodeRegistrationV1beta4{Name: name, CRISocket: j.CRISocket, Taints: taints},
			Discovery:        DiscoveryV1beta4{BootstrapToken: disc}}
	}
	return k8syaml.Marshal(v)
}

// ParseJoinConfiguration decodes a kubeadm JoinConfiguration strictly
// (unknown or duplicate fields are errors) into the mirror of its
// apiVersion: *JoinConfigurationV1beta4 or *JoinConfigurationV1beta3.
func ParseJoinConfiguration(data []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := k8syaml.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("kubeadm configuration: %w", err)
	}
	if head.Kind != "JoinConfiguration" {
		return nil, fmt.Errorf("kubeadm configuration: kind %q, want JoinConfiguration", head.Kind)
	}
	var out any
	switch head.APIVersion {
	case "kubeadm.k8s.io/v1beta4":
		out = &JoinConfigurationV1beta4{}
	case "kubeadm.k8s.io/v1beta3":
		out = &JoinConfigurationV1beta3{}
	default:
		return nil, fmt.Errorf("kubeadm configuration: apiVersion %q, want kubeadm.k8s.io/v1beta4 or v1beta3", head.APIVersion)
	}
	if err := k8syaml.UnmarshalStrict(data, out); err != nil {
		return nil, fmt.Errorf("kubeadm %s JoinConfiguration: %w", head.APIVersion, err)
	}
	return out, nil
}

// cloudConfig is the part of cloud-init's cloud-config Rackstrap writes.
type cloudConfig struct {
	Hostname         string      `yaml:"hostname"`
	PreserveHostname bool        `yaml:"preserve_hostname"`
	WriteFiles       []writeFile `yaml:"write_files"`
	Runcmd           [][]string  `yaml:"runcmd"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
	Content     string `yaml:"content"`
}

// RenderCloudInit renders the node's cloud-init user data (#cloud-config):
// its host name, the JoinConfiguration written root-only (it holds the
// bootstrap token), and 'kubeadm join --config' run once at first boot.
func (j Join) RenderCloudInit(node string) ([]byte, error) {
	jc, err := j.JoinConfiguration(node)
	if err != nil {
		return nil, err
	}
	j = j.withDefaults()
	name, _ := NodeName(node) // checked by JoinConfiguration
	cc := cloudConfig{
		Hostname:   name,
		WriteFiles: []writeFile{{Path: j.ConfigPath, Owner: "root:root", Permissions: "0600", Content: string(jc)}},
		Runcmd:     [][]string{{"kubeadm", "join", "--config", j.ConfigPath}},
	}
	var b bytes.Buffer
	b.WriteString("#cloud-config\n# Rendered by Rackstrap: joins " + name + " to the Kubernetes cluster at " + j.APIEndpoint + ".\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(cc); err != nil {
		return nil, fmt.Errorf("render cloud-init for %s: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
