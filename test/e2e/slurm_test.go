//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cluster/slurm"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/test/cluster/slurmtest"
)

// checkSlurmNode asserts what slurmctld shows of the handed-off node
// (`scontrol show node NAME -o`): the CPU topology and memory validation
// verified, no Gres (the VM has no GPU, so none is invented), the features
// naming the controller, the profile and the rack and nothing else, its
// DHCP lease as NodeAddr, in the default partition, schedulable (not
// drained, not down).
func checkSlurmNode(t *testing.T, sc *slurmtest.Controller, n model.Node, inv *inventory.Inventory) {
	t.Helper()
	line := sc.ShowNode(n.Name)
	t.Logf("scontrol show node %s -o:\n%s", n.Name, line)
	got, err := slurm.ParseNode(line)
	if err != nil {
		t.Fatalf("slurm.ParseNode(%q) = %v", line, err)
	}
	if got.Name != n.Name {
		t.Fatalf("scontrol show node %s shows %q", n.Name, got.Name)
	}
	want, err := slurm.FromInventory(n.Name, got.Addr, inv, nil)
	if err != nil {
		t.Fatalf("slurm.FromInventory(the stored inventory) = %v", err)
	}
	for _, f := range []struct {
		field     string
		got, want int
	}{
		{"CPUTot", got.CPUs, want.CPUs},
		{"Sockets", got.Sockets, want.Sockets},
		{"CoresPerSocket", got.CoresPerSocket, want.CoresPerSocket},
		{"ThreadsPerCore", got.ThreadsPerCore, want.ThreadsPerCore},
		{"RealMemory", got.RealMemoryMiB, want.RealMemoryMiB},
	} {
		if f.got != f.want {
			t.Errorf("slurmctld shows %s=%d, want %d (from the verified inventory)", f.field, f.got, f.want)
		}
	}
	if got.CPUs != vmCPUs {
		t.Errorf("slurmctld shows CPUTot=%d, want the VM's %d", got.CPUs, vmCPUs)
	}
	if got.RealMemoryMiB <= 0 || got.RealMemoryMiB > vmMemMiB {
		t.Errorf("slurmctld shows RealMemory=%d, want at most the VM's %d MiB", got.RealMemoryMiB, vmMemMiB)
	}
	if got.Gres != "" {
		t.Errorf("slurmctld shows Gres=%s for a machine without GPUs, want none", got.Gres)
	}
	wantFeatures := []string{"rackstrap", "profile-qemu-vm", "rack-e2e"}
	if !sameSet(got.Features, wantFeatures) || !sameSet(got.ActiveFeatures, wantFeatures) {
		t.Errorf("slurmctld shows features %v (active %v), want %v", got.Features, got.ActiveFeatures, wantFeatures)
	}
	if a, err := netip.ParseAddr(got.Addr); err != nil || !netip.MustParsePrefix(ctlCIDR).Masked().Contains(a) || a == netip.MustParseAddr(strings.Split(ctlCIDR, "/")[0]) {
		t.Errorf("slurmctld shows NodeAddr=%s, want the VM's lease in %s", got.Addr, ctlCIDR)
	}
	if !slices.Contains(got.Partitions, slurmtest.Partition) {
		t.Errorf("slurmctld shows partitions %v, want %s", got.Partitions, slurmtest.Partition)
	}
	if got.Drained() || got.Has("DOWN") || got.Has("FAIL") || got.Base != "IDLE" || !got.Dynamic() {
		t.Errorf("slurmctld shows State=%s Reason=%q, want a dynamic IDLE node, neither drained nor down", got.State, got.Reason)
	}
}

// handOffFailed asserts how a hand-off to a stopped slurmctld fails: the
// node Failed from Ready with handoff-failed and a message naming Slurm and
// the node, then brings slurmctld back and checks that nothing of the node
// reached it.
func handOffFailed(t *testing.T, sc *slurmtest.Controller, n model.Node) {
	t.Helper()
	t.Logf("hand-off with slurmctld down: %s: %s", n.FailureClass, n.FailureMsg)
	if n.FailureClass != model.ClassHandOffFailed || n.FailedFrom != model.Ready {
		t.Errorf("%s failed from %s with class %s, want %s from %s", n.Name, n.FailedFrom, n.FailureClass, model.ClassHandOffFailed, model.Ready)
	}
	if !strings.Contains(n.FailureMsg, "slurm "+n.Name) {
		t.Errorf("the failure reads %q; want it to name Slurm and the node (\"slurm %s: …\")", n.FailureMsg, n.Name)
	}
	sc.StartSlurmctld()
	if out, err := sc.Scontrol("show", "node", n.Name, "-o"); err == nil || strings.Contains(out, "NodeName="+n.Name) {
		t.Errorf("scontrol show node %s after the failed hand-off = %v:\n%s\nwant no such node", n.Name, err, out)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// decommission asks for the node's decommission and asserts its way out:
// drained in Slurm with the reason, removed from slurmctld, the machine
// powered off through its BMC, the node back at Enrolled, each audited.
func decommission(t *testing.T, serve *daemon, sc *slurmtest.Controller, cli func(...string) (string, error), vm vmSpec) {
	t.Helper()
	if out, err := cli("nodes", "act", node, "decommission"); err != nil {
		t.Fatalf("rackstrap nodes act %s decommission: %v\n%s", node, err, out)
	}
	var d nodeDetail
	waitUntil(t, serve, 5*time.Minute, node+" decommissioned (Enrolled)", func() bool {
		out, err := cli("nodes", "show", node, "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &d) != nil {
			return false
		}
		if d.State == model.Failed {
			t.Fatalf("decommissioning %s failed: %s: %s", node, d.FailureClass, d.FailureMsg)
		}
		return d.State == model.Enrolled
	})
	var steps, took []string
	for _, s := range d.Timeline {
		if s.Outcome == model.Succeeded {
			steps = append(steps, s.Name)
		}
		switch s.Name {
		case "hand-off", "release", "power-off":
			took = append(took, fmt.Sprintf("%s %s (attempt %d, %s)", s.Name, s.Duration(time.Now()).Round(time.Millisecond), s.Attempt, s.Outcome))
		}
	}
	t.Logf("Slurm steps: %s", strings.Join(took, ", "))
	if !isSubsequence([]string{"hand-off", "release", "power-off"}, steps) {
		t.Errorf("timeline (succeeded steps) = %v, want hand-off, release, power-off in that order", steps)
	}

	// Removed: slurmctld no longer knows the node.
	if out, err := sc.Scontrol("show", "node", node, "-o"); err == nil || strings.Contains(out, "NodeName="+node) {
		t.Errorf("scontrol show node %s after decommission = %v:\n%s\nwant the node gone", node, err, out)
	}
	// Drained with the reason first: slurmctld logs every drain it takes
	// (`update_node: node NAME reason set to: REASON`, then `state set to
	// DRAINED` or `DRAINING`), and the drain precedes the removal in the
	// release step, which succeeded.
	log, err := os.ReadFile(filepath.Join(sc.Dir, "slurmctld.log"))
	if err != nil {
		t.Fatal(err)
	}
	reason := regexp.MustCompile(`update_node: node ` + regexp.QuoteMeta(node) + ` reason set to: (.*)`).FindSubmatch(log)
	if reason == nil || !strings.Contains(string(reason[1]), "decommissioned") {
		t.Errorf("slurmctld's log has no drain reason for %s naming the decommission (got %q):\n%s", node, reason, tail(string(log), 3000))
	}
	if !regexp.MustCompile(`update_node: node ` + regexp.QuoteMeta(node) + ` state set to DRAIN`).Match(log) {
		t.Errorf("slurmctld's log does not show %s drained:\n%s", node, tail(string(log), 3000))
	}
	if reason != nil {
		t.Logf("slurmctld drained %s with reason %q before removing it", node, reason[1])
	}

	// Powered off: the BMC's chassis control stopped the VM.
	power, _ := os.ReadFile(filepath.Join(vm.dir, "power.log"))
	lines := strings.Split(strings.TrimSpace(string(power)), "\n")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, " stop") {
		t.Errorf("power.log ends %q, want the VM stopped by the decommission:\n%s", last, power)
	}
}

// auditActions returns the outcome of every audited action on the node, the
// whole chain (nodes show lists only the last events), read over the API
// inside the namespace.
func auditActions(t *testing.T, ns *netns, server, token string) map[string][]string {
	t.Helper()
	hdr := filepath.Join(t.TempDir(), "auth.header")
	write(t, hdr, "Authorization: Bearer "+token+"\n", 0o600) // a file, not argv
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := ns.cmd(ctx, "curl", "-sS", "--fail-with-body", "-H", "@"+hdr,
		fmt.Sprintf("%s/api/v1/audit?node=%s&limit=100000", server, node)).Output()
	if err != nil {
		t.Fatalf("GET /api/v1/audit: %v\n%s", err, out)
	}
	var entries []model.AuditEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("GET /api/v1/audit: %v\n%s", err, tail(string(out), 2000))
	}
	actions := map[string][]string{}
	for _, e := range entries {
		actions[e.Action] = append(actions[e.Action], e.Outcome)
	}
	return actions
}

// wantAuditedOnce fails unless each action succeeded exactly once (a
// failed attempt retried is allowed: a loaded machine may time one out).
func wantAuditedOnce(t *testing.T, actions map[string][]string, names ...string) {
	t.Helper()
	for _, a := range names {
		if ok := slices.Collect(func(yield func(string) bool) {
			for _, o := range actions[a] {
				if o == "ok" && !yield(o) {
					return
				}
			}
		}); len(ok) != 1 {
			t.Errorf("audit entries %s = %v, want exactly one ok", a, actions[a])
		}
	}
}
