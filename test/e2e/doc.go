// Package e2e drives one QEMU machine, whose BMC is ipmi_sim, from power-off
// to HandedOff through Rackstrap's real protocols, the hand-off going to a
// real slurmctld, then decommissions it; and runs `rackstrap demo --slurm on`
// against a private slurmctld. Its tests carry the build tag e2e and run
// under `make e2e`.
package e2e
