package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubeadmCase is one JoinConfiguration checked against kubeadm's types.
type kubeadmCase struct {
	node string
	join Join
}

func kubeadmCases() map[string]kubeadmCase {
	crio := testJoin("v1beta4")
	crio.CRISocket = "unix:///var/run/crio/crio.sock"
	crio.CACertHashes = append(crio.CACertHashes, "sha256:"+strings.Repeat("7f", 32))
	crio.ConfigPath = "/etc/kubernetes/join.yaml"
	return map[string]kubeadmCase{
		"v1beta4":              {"R12-N01", testJoin("v1beta4")},
		"v1beta3":              {"R12-N01", testJoin("v1beta3")},
		"v1beta4-crio-2hashes": {"gpu-07.rack3", crio},
	}
}

// kubeadmWant is NAME.want.json, read by test/kubeadm.
type kubeadmWant struct {
	APIVersion        string   `json:"apiVersion"`
	Name              string   `json:"name"`
	CRISocket         string   `json:"criSocket"`
	Token             string   `json:"token"`
	APIServerEndpoint string   `json:"apiServerEndpoint"`
	CACertHashes      []string `json:"caCertHashes"`
	Taints            []Taint  `json:"taints"`
}

// TestKubeadmAPITypes renders each case's cloud-init and has the nested
// module test/kubeadm decode its JoinConfiguration with kubeadm's real
// v1beta3/v1beta4 types (k8s.io/kubernetes/cmd/kubeadm), strictly, as
// 'kubeadm join --config' does. The nested module is its own Go module
// (k8s.io/kubernetes needs replace directives the main module must not
// carry), so 'go test ./...' here does not reach it: this test runs it.
// The cases are also golden files (testdata/kubeadm), which the nested
// module reads when run by itself.
func TestKubeadmAPITypes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, c := range kubeadmCases() {
		ud, err := c.join.RenderCloudInit(c.node)
		if err != nil {
			t.Fatalf("%s: RenderCloudInit: %v", name, err)
		}
		j := c.join.withDefaults()
		nn, _ := NodeName(c.node)
		w, err := json.MarshalIndent(kubeadmWant{APIVersion: "kubeadm.k8s.io/" + j.APIVersion, Name: nn, CRISocket: j.CRISocket,
			Token: j.Token, APIServerEndpoint: j.APIEndpoint, CACertHashes: j.CACertHashes,
			Taints: []Taint{{Key: TaintPending, Value: "hand-off", Effect: "NoSchedule"}}}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		w = append(w, '\n')
		golden(t, filepath.Join("kubeadm", name+".user-data"), ud)
		golden(t, filepath.Join("kubeadm", name+".want.json"), w)
		if err := os.WriteFile(filepath.Join(dir, name+".user-data"), ud, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".want.json"), w, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runNestedKubeadmTests(t, dir)
}

// runNestedKubeadmTests runs 'go test' in test/kubeadm on the cases in dir.
// The first run on a machine compiles part of k8s.io/kubernetes (about
// 370 packages, 1-2 minutes of CPU; kept in GOCACHE after that), so the
// deadline is generous: the test's own deadline less a minute, at most
// 15 minutes.
func runNestedKubeadmTests(t *testing.T, dir string) {
	t.Helper()
	mod, err := filepath.Abs(filepath.Join("..", "..", "test", "kubeadm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mod, "go.mod")); err != nil {
		t.Fatalf("the kubeadm types module is missing: %v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goBin = filepath.Join(root, "bin", "go")
		}
		if _, serr := os.Stat(goBin); goBin == "" || serr != nil {
			t.Fatalf("the go command is not on PATH (%v): this test runs 'go test' in %s; put go on PATH or set GOROOT", err, mod)
		}
	}
	deadline := time.Now().Add(15 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "./...")
	cmd.Dir = mod
	// the environment goes through (GOPROXY, GOCACHE, GOFLAGS, CI), but
	// not a workspace, which would pull the main module into this one
	cmd.Env = append(os.Environ(), "RACKSTRAP_KUBEADM_CASES="+dir, "GOWORK=off")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("go test in %s did not finish by %v (it compiles part of k8s.io/kubernetes the first time; is the machine overloaded or the module proxy unreachable?):\n%s", mod, deadline.Format(time.RFC3339), out)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(string(out), "--- FAIL") {
			t.Fatalf("kubeadm's own types reject the rendered JoinConfiguration (go test in %s):\n%s", mod, out)
		}
		t.Fatalf("go test in %s: %v (to reproduce: cd test/kubeadm && go test ./...; a download error means the Go module proxy could not be reached):\n%s", mod, err, out)
	}
	t.Logf("go test in %s:\n%s", mod, out)
}
