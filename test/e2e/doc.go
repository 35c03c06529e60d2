// Package e2e drives one QEMU machine, whose BMC is ipmi_sim, from power-off
// to Ready through Rackstrap's real protocols. Its tests carry the build tag
// e2e and run under `make e2e`.
package e2e
