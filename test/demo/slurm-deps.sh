#!/usr/bin/env bash
# `make demo` hands the simulated rack to a private slurmctld when it can.
# This installs what that needs (Debian's slurmctld, slurm-client, munge,
# iproute2) when they are missing and we are root on Debian; otherwise it
# says nothing, and the demo itself says that hand-off is skipped and why.
# It never fails the demo: a machine without the packages, or without a
# reachable mirror, gets the demo ending at Ready.
set -u
missing=()
for bin in slurmctld scontrol munged ip; do
	command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || [ ! -r /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
	exit 0
fi
echo "make demo: installing slurmctld, slurm-client, munge and iproute2 (apt-get) so the demo can hand its rack to a real Slurm controller..."
log=$(mktemp /tmp/rackstrap-demo-apt.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends slurmctld slurm-client munge iproute2 >"$log" 2>&1; then
	apt-get update -q >>"$log" 2>&1
	if ! apt-get install -y -q --no-install-recommends slurmctld slurm-client munge iproute2 >>"$log" 2>&1; then
		echo "make demo: could not install them (apt-get's output is in $log); the demo runs without Slurm and ends at Ready."
		exit 0
	fi
fi
rm -f "$log"
echo "make demo: installed."
