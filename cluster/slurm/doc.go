// Package slurm hands a Ready node to a local Slurm cluster with its
// verified hardware facts, drains it when Rackstrap quarantines or
// decommissions it, and reads its state back, all through scontrol.
//
// # Dynamic nodes, not an include file
//
// A node is registered as a dynamic node: `scontrol create NodeName=…
// NodeAddr=… CPUs=… Sockets=… CoresPerSocket=… ThreadsPerCore=…
// RealMemory=… Gres=gpu:h100:8 Feature=… State=CLOUD`. The other way the
// issue allows, writing the node into a file that slurm.conf includes and
// running `scontrol reconfigure`, crashes slurmctld 22.05 (Debian 12's): it
// exits with "node count has changed … You have to restart slurmctld", and a
// delete made just before the crash was lost on restart. Dynamic nodes need
// no file on the controller host, survive reconfigure and restart (they are
// kept in StateSaveLocation), and take effect at once.
//
// What slurm.conf must have (verified against 22.05):
//
//   - MaxNodeCount=N: room for dynamic nodes. slurmctld refuses to start
//     with no nodes and no MaxNodeCount, and a create into a full table
//     exits 0 without creating anything (Register catches that by reading
//     the node back).
//   - PrivateData=cloud: 22.05 creates only State=FUTURE or State=CLOUD
//     nodes; CLOUD nodes are schedulable once resumed, but slurmctld hides
//     powered-down CLOUD nodes from `scontrol show node` without it (while
//     still updating and deleting them).
//   - GresTypes=gpu for GPU nodes. The controller needs no gres.conf for a
//     dynamic node; the node's slurmd does: GresConf renders its lines.
//   - A partition the nodes land in: Nodes=ALL, or a NodeSet with Feature=
//     matching a feature Rackstrap gives (Config.Features, or the node's
//     profile or GPU model). Config.Partition can instead append the node
//     to a partition's Nodes=, but 22.05 has no `Nodes+=`, so that is a
//     read-modify-write, and slurmctld forgets it when restarted from
//     slurm.conf; Register re-adds it the next time it runs.
//
// # Idempotence
//
// Every operation reads the node first and changes only what differs, then
// reads it back to confirm: scontrol answers a create of an existing name,
// and a create into a full node table, with exit status 0 and no change.
// Register leaves an identical node alone; updates address, Gres and
// features in place; and replaces (delete, create, drain again if it was
// drained) a node whose CPUs, topology or memory changed, which scontrol
// cannot update. Resume on a node that is not drained or down does nothing
// (22.05 refuses RESUME there: "Invalid node state specified"); Drain with
// the reason the node is already drained for does nothing; Remove of an
// unknown node does nothing. Calls for one node must not run concurrently
// (the lifecycle engine runs one step per node at a time).
//
// # Facts
//
// FromInventory maps an inventory to a Node: sockets, cores and threads
// from the CPU packages (uniform sockets only), RealMemory 3% below the
// installed memory (slurmd reports MemTotal, and slurmctld drains a node
// reporting less than RealMemory), the GPUs' Gres type (GresType: "NVIDIA
// H100 80GB HBM3" → "h100"), their device files /dev/nvidiaN by NVML index
// (in-band inventories; the BMC's list order is not the device order).
//
// # Errors
//
// Every scontrol call runs through exec.CommandContext with Config.Timeout,
// never a shell. Failures are *Error: the operation, the command, what
// scontrol printed, a sentinel kind (ErrNotFound, ErrUnreachable, ErrAuth,
// ErrTimeout, …) and a remedy; FailureClass() is "handoff-failed".
package slurm
