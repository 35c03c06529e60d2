// Package cluster is Rackstrap's hand-off of Ready nodes to the site's
// local cluster, carrying the hardware facts Rackstrap verified, and their
// release on quarantine or decommission. Each scheduler has a subpackage:
//
//   - cluster/slurm: dynamic Slurm nodes through scontrol (Slurm 22.05+).
//
// The subpackages know nothing of the node lifecycle: the controller maps
// its node records onto their inputs and calls them from its hand-off and
// release steps. Their errors carry FailureClass() "handoff-failed".
package cluster
