package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/cluster/kubernetes"
	"github.com/rackstrap/rackstrap/cluster/webhook"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/manifest"
)

// clusterServeFlags configure the hand-off targets, the Kubernetes cluster,
// the webhook and the exports (the cluster feature). Slurm's --slurm-conf
// is a serve flag of its own.
type clusterServeFlags struct {
	handoffDefault string
	kubeConfig     string
	kubeEndpoint   string
	kubeTokenFile  string
	kubeCAHashes   []string
	kubeCRISocket  string
	kubeadmAPI     string
	kubeTaintGPU   bool
	kubeJoinWait   time.Duration
	webhookConfig  string
	scrapePort     int
}

func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		f := &clusterServeFlags{}
		f.register(fl)
		return f.feature
	}})
}

func (f *clusterServeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.handoffDefault, "handoff-default", "", "hand-off `TARGET` (slurm or kubernetes) of nodes whose rack manifest names none; default: the only cluster configured")
	fl.StringVar(&f.kubeConfig, "kube-config", "", "kubeconfig `FILE` of the Kubernetes cluster nodes with 'handoff: kubernetes' join; its user must get and update nodes")
	fl.StringVar(&f.kubeEndpoint, "kube-api-endpoint", "", "Kubernetes: the control plane's `HOST:PORT` as nodes reach it, for kubeadm join")
	fl.StringVar(&f.kubeTokenFile, "kube-token-file", "", "Kubernetes: `FILE` holding the kubeadm bootstrap token (from 'kubeadm token create'); a file, so the token is not in argv")
	fl.StringSliceVar(&f.kubeCAHashes, "kube-ca-cert-hash", nil, "Kubernetes: the cluster CA's `sha256:HEX` hash that 'kubeadm token create --print-join-command' prints (repeatable)")
	fl.StringVar(&f.kubeCRISocket, "kube-cri-socket", kubernetes.DefaultCRISocket, "Kubernetes: the nodes' container runtime `SOCKET`")
	fl.StringVar(&f.kubeadmAPI, "kubeadm-api", "v1beta4", "Kubernetes: kubeadm configuration `VERSION` of the join: v1beta4 (kubeadm 1.31+) or v1beta3")
	fl.BoolVar(&f.kubeTaintGPU, "kube-taint-gpu-nodes", false, "Kubernetes: taint GPU nodes nvidia.com/gpu=present:NoSchedule at hand-off")
	fl.DurationVar(&f.kubeJoinWait, "kube-join-wait", 5*time.Minute, "Kubernetes: how long hand-off waits for a node to register after its first boot")
	fl.StringVar(&f.webhookConfig, "webhook-config", "", "YAML `FILE` of a webhook that receives hand-off, quarantine and release events (url, secretFile, events, timeout, minBackoff, maxBackoff)")
	fl.IntVar(&f.scrapePort, "export-scrape-port", 9100, "port of the Prometheus targets 'rackstrap export prometheus-sd' writes")
}

// feature builds the cluster feature; it is always on (it serves the
// exports), and Kubernetes and the webhook only when configured.
func (f *clusterServeFlags) feature() (controller.Feature, error) {
	cfg := controller.ClusterConfig{DefaultTarget: f.handoffDefault, ScrapePort: f.scrapePort}
	if f.handoffDefault != "" && !slices.Contains(manifest.Targets, f.handoffDefault) {
		return nil, fmt.Errorf("--handoff-default %q: use slurm or kubernetes", f.handoffDefault)
	}
	kube := f.kubeEndpoint != "" || f.kubeTokenFile != "" || len(f.kubeCAHashes) > 0
	switch {
	case f.kubeConfig != "":
		var errs []error
		if f.kubeEndpoint == "" {
			errs = append(errs, errors.New("--kube-config needs --kube-api-endpoint: the control plane's host:port as nodes reach it"))
		}
		if f.kubeTokenFile == "" {
			errs = append(errs, errors.New("--kube-config needs --kube-token-file: a file holding a bootstrap token from 'kubeadm token create'"))
		}
		if len(f.kubeCAHashes) == 0 {
			errs = append(errs, errors.New("--kube-config needs --kube-ca-cert-hash: the sha256:… value 'kubeadm token create --print-join-command' prints"))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		token, err := os.ReadFile(f.kubeTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--kube-token-file: %w", err)
		}
		cfg.Kubernetes = &controller.KubernetesConfig{Kubeconfig: f.kubeConfig, TaintGPUNodes: f.kubeTaintGPU, JoinWait: f.kubeJoinWait,
			Join: kubernetes.Join{APIEndpoint: f.kubeEndpoint, Token: strings.TrimSpace(string(token)), CACertHashes: f.kubeCAHashes,
				CRISocket: f.kubeCRISocket, APIVersion: f.kubeadmAPI}}
	case kube:
		return nil, errors.New("--kube-api-endpoint, --kube-token-file and --kube-ca-cert-hash need --kube-config: the cluster nodes are handed to")
	}
	if f.webhookConfig != "" {
		w, err := webhook.LoadConfig(f.webhookConfig)
		if err != nil {
			return nil, fmt.Errorf("--webhook-config: %w", err)
		}
		cfg.Webhook = &w
	}
	return controller.NewClusterFeature(cfg)
}
