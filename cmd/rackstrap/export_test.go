package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/cluster/export"
	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// exportServer serves a store with a handed-off GPU node, a node waiting
// and a node of another rack, with the cluster feature's routes.
func exportServer(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []model.Node{
		{Name: "r12-n01", Identity: model.Identity{Rack: "r12", Slot: 1, Serial: "SN1", MACs: []string{"52:54:00:12:00:01"}}, Profile: "nvidia-dgx-h100"},
		{Name: "r12-n02", Identity: model.Identity{Rack: "r12", Slot: 2, Serial: "SN2"}, Profile: "nvidia-dgx-h100"},
		{Name: "r13-n01", Identity: model.Identity{Rack: "r13", Slot: 1}},
	} {
		if _, _, err := db.CreateNode(ctx, n, "test"); err != nil {
			t.Fatal(err)
		}
	}
	inv := `{"source":"in-band","cpus":[{"socket":"CPU0","cores":56,"threads":112},{"socket":"CPU1","cores":56,"threads":112}],
	  "gpus":[{"index":0,"name":"NVIDIA H100 80GB HBM3"},{"index":1,"name":"NVIDIA H100 80GB HBM3"}]}`
	if _, _, err := db.Apply(ctx, store.Change{Node: "r12-n01", FromSeq: -1, To: model.HandedOff, Inventory: json.RawMessage(inv), Actor: "test", Action: "state.change"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetHandOffTarget(ctx, "r12-n01", "slurm", "test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := db.CommitLeases(ctx, []store.LeaseRow{{IP: "10.0.12.101", MAC: "52:54:00:12:00:01", State: "bound", Expires: now.Add(time.Hour), Updated: now}}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := api.New(db, storeActor{db}, log, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	// The feature as serve's flags build it.
	fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f := &clusterServeFlags{}
	f.register(fl)
	if err := fl.Parse([]string{"--export-scrape-port", "9400"}); err != nil {
		t.Fatal(err)
	}
	feat, err := f.feature()
	if err != nil {
		t.Fatal(err)
	}
	if err := feat.Start(ctx, &controller.Runtime{Store: db, API: srv, Log: log}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); db.Close() })
	return ts.URL
}

func TestExportVerb(t *testing.T) {
	t.Parallel()
	url := exportServer(t)
	exp := func(args ...string) string {
		t.Helper()
		g := &globals{server: url}
		cmd := newExportCmd(g)
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("export %v: %v", args, err)
		}
		return out.String()
	}

	// Ansible: strict decode; r12-n01 carries its facts.
	var inv map[string]*export.AnsibleGroup
	dec := yaml.NewDecoder(strings.NewReader(exp("ansible", "--rack", "r12")))
	dec.KnownFields(true)
	if err := dec.Decode(&inv); err != nil {
		t.Fatal(err)
	}
	all := inv["all"]
	if len(all.Hosts) != 2 || all.Children["slurm"] == nil || all.Children["gpu_h100"] == nil {
		t.Fatalf("inventory of r12 = %+v", all)
	}
	raw, _ := yaml.Marshal(all.Hosts["r12-n01"])
	if s := string(raw); !strings.Contains(s, "ansible_host: 10.0.12.101") || !strings.Contains(s, "rackstrap_gpu_count: 2") || !strings.Contains(s, "rackstrap_cpus: 224") {
		t.Errorf("r12-n01 vars = %s", s)
	}

	// Prometheus file_sd: the node with an address, at the serve port.
	var groups []export.SDGroup
	d := json.NewDecoder(strings.NewReader(exp("prometheus-sd")))
	d.DisallowUnknownFields()
	if err := d.Decode(&groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Targets[0] != "10.0.12.101:9400" || groups[0].Labels["handoff"] != "slurm" {
		t.Errorf("file_sd = %+v", groups)
	}
	if out := exp("prometheus-sd", "--port", "9100"); !strings.Contains(out, "10.0.12.101:9100") {
		t.Errorf("--port 9100: %s", out)
	}

	// CSV to a file, atomically.
	p := filepath.Join(t.TempDir(), "nodes.csv")
	exp("csv", "--out", p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 4 || rows[1][0] != "r12-n01" || rows[1][6] != "HandedOff" || rows[3][1] != "r13" {
		t.Errorf("csv = %v, %v", rows, err)
	}

	// Errors name the remedy.
	g := &globals{server: url}
	cmd := newExportCmd(g)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetArgs([]string{"xml"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "prometheus-sd") {
		t.Errorf("export xml = %v", err)
	}
}

func TestClusterServeFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("abcdef.0123456789abcdef\n"), 0o600)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	hash := "sha256:" + strings.Repeat("ab", 32)
	for name, tc := range map[string]struct {
		args []string
		want string // "" = accepted
	}{
		"nothing":       {nil, ""},
		"kubernetes":    {[]string{"--kube-config", kubeconfig, "--kube-api-endpoint", "10.0.0.5:6443", "--kube-token-file", token, "--kube-ca-cert-hash", hash, "--handoff-default", "kubernetes"}, ""},
		"missing parts": {[]string{"--kube-config", kubeconfig}, "--kube-token-file"},
		"no kubeconfig": {[]string{"--kube-api-endpoint", "10.0.0.5:6443"}, "need --kube-config"},
		"bad default":   {[]string{"--handoff-default", "lsf"}, "use slurm or kubernetes"},
		"bad hash":      {[]string{"--kube-config", kubeconfig, "--kube-api-endpoint", "10.0.0.5:6443", "--kube-token-file", token, "--kube-ca-cert-hash", "sha256:xyz"}, "64 lower-case hex"},
		"no webhook":    {[]string{"--webhook-config", filepath.Join(dir, "missing.yaml")}, "--webhook-config"},
	} {
		t.Run(name, func(t *testing.T) {
			fl := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			f := &clusterServeFlags{}
			f.register(fl)
			if err := fl.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			feat, err := f.feature()
			if tc.want == "" {
				if err != nil || feat == nil {
					t.Fatalf("feature() = %v, %v", feat, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("feature() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
