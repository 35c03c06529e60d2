// Package kubernetes hands nodes to a Kubernetes cluster.
//
// A node bound for Kubernetes joins by itself at first boot: Rackstrap
// renders its cloud-init user data (RenderCloudInit) with a kubeadm
// JoinConfiguration (bootstrap token, CA certificate hash, API endpoint)
// that registers the kubelet with the taint TaintPending, so nothing is
// scheduled on it yet. The user data reaches the installed OS through the
// CIDATA partition of its disk, which rackstrap-agent fills after the
// verified image write (images/seed; cloud-init's NoCloud datasource reads
// it). The rendered JoinConfiguration is checked against kubeadm's own
// v1beta3/v1beta4 types by the nested module test/kubeadm. Hand-off (Cluster.HandOff) then applies the facts
// Rackstrap verified as labels (GPU model and count, profile, rack,
// validation verdict) and taints, removes TaintPending and uncordons it;
// quarantine and decommission (Cluster.Release) cordon it and taint it
// NoExecute with the reason.
//
// Only the typed CoreV1 client of client-go is used (no full clientset),
// which keeps the controller binary small; the agent never links this
// package.
package kubernetes
