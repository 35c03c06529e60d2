// Package cluster is Rackstrap's hand-off of Ready nodes to the site's
// local cluster, carrying the hardware facts Rackstrap verified, and their
// release on quarantine or decommission. Each scheduler has a subpackage:
//
//   - cluster/slurm: dynamic Slurm nodes through scontrol (Slurm 22.05+).
//   - cluster/kubernetes: kubeadm join rendered as cloud-init user data
//     (the node registers tainted rackstrap.io/pending), then labels,
//     taints and uncordon at hand-off, cordon at release, through the
//     API server's REST interface for nodes.
//
// and beside them:
//
//   - cluster/webhook: HMAC-SHA256-signed JSON events to a site URL
//     (the controller's durable outbox, controller/outbox, delivers them).
//   - cluster/export: Ansible inventory, Prometheus file_sd, CSV.
//
// Which cluster a node goes to is its hand-off target: the rack manifest's
// `handoff: slurm|kubernetes` (per rack, overridable per node), recorded
// per node in the store; the controller's Dispatcher (controller/handoff.go)
// routes each node to the cluster its target names.
//
// Decisions:
//   - Kubernetes nodes join themselves (kubeadm join at first boot) with a
//     NoSchedule taint; Rackstrap never holds cluster credentials on the
//     node beyond the bootstrap token, and the node runs nothing before
//     hand-off lifts the taint. Verified facts are labels under
//     rackstrap.io/, so they never collide with Node Feature Discovery or
//     the GPU operator.
//   - The kubeadm JoinConfiguration is checked against mirrors of kubeadm's
//     v1beta4/v1beta3 types (strict decode): k8s.io/kubernetes, which holds
//     the real types, cannot be required as a module.
//   - Only client-go's REST client and core/v1 types are linked: the typed
//     clientset brings every API group (+25 MB to the controller). Tests
//     still drive the hand-off through client-go's fake clientset, whose
//     NodeInterface satisfies kubernetes.NodeClient.
//   - Webhook events come from the audit chain (state changes into
//     HandedOff, Quarantined, Decommissioning), not from the code that makes
//     them: an event cannot be lost between a state change and its enqueue,
//     and the outbox cursor and the queued events move in one transaction.
//     Delivery is at least once (an answer lost after the receiver accepted
//     is sent again), so receivers deduplicate on X-Rackstrap-Event-Id.
//
// The subpackages know nothing of the node lifecycle: the controller maps
// its node records onto their inputs and calls them from its hand-off and
// release steps. Their errors carry FailureClass() "handoff-failed".
package cluster
