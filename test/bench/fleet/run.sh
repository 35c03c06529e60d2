#!/usr/bin/env bash
# make bench-fleet: provision simulated fleets of 1,000 and 10,000 machines
# through a real controller (store with synchronous=FULL, lifecycle engine,
# API) with the simulated edge in the same process, and report wall time,
# peak RSS, CPU time and the share of it spent in the simulator, and the
# linearity ratio, against the targets of issue 11. Exits non-zero when a
# target is missed.
#
#   FLEET_SIZES="1000 10000"  sizes to run (the first is the linearity base)
#   FLEET_DATABASE=postgres://...  run on PostgreSQL instead of SQLite
#   BENCH_OUT=DIR             keep the JSON results and CPU profiles there
#   RACKSTRAP=PATH            the binary (default bin/rackstrap, built if missing)
#   FLEET_CACHE_RACK_SIZES="10 40"  hosts per rack of the rack-cache measure
#   REALFLEET_SIZES="25x40 250x40"  racks x machines of the real-protocol
#                             fleets ("" skips them; the first is the linearity base)
#   REALFLEET_WORKERS=64      the controller's --workers for them
#
# Then fleets whose machines speak the real protocols (test/bench/fleet:
# Redfish BMC simulators driven by bmclib, the controller's own DHCP through
# one relay per rack, TFTP, HTTP, agents streaming the signed image), the
# machines in a process of their own beside the controller's; Discovered ->
# Ready, against the same targets (10,000 in ≤ 10 minutes, controller RSS
# ≤ 1 GiB, ≤ 11× the 1,000-machine time and memory).
#
# Then the image bytes the controller's boot server sends per node, with and
# without a rack cache (controller/cache, `serve --role rack-cache`): two
# racks of real-protocol simulated hosts (test/fleet: DHCP through a relay,
# TFTP, HTTP, the agent streaming and hashing its image), counted by the
# boot server itself (pxe/http FileBytes).
set -euo pipefail
# 10,000 agents hold a connection each to the controller and the simulator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$(dirname "$0")/../../.."

bin=${RACKSTRAP:-bin/rackstrap}
if [ ! -x "$bin" ]; then
	CGO_ENABLED=0 go build -o "$bin" ./cmd/rackstrap
fi
sizes=${FLEET_SIZES:-"1000 10000"}
out=${BENCH_OUT:-$(mktemp -d /tmp/bench-fleet.XXXXXX)}
mkdir -p "$out"
db_args=()
if [ -n "${FLEET_DATABASE:-}" ]; then
	db_args=(--database "$FLEET_DATABASE")
fi

# targets WHAT N WALL RSS READY BASE_N BASE_WALL BASE_RSS checks issue 11's
# targets: every machine Ready; 10,000 in ≤ 600 s with ≤ 1 GiB (the
# controller's peak RSS); ≤ 1.1× linear time and memory from the first size.
# It sets ratio_t and ratio_m, and fail=1 on a miss.
targets() {
	local what=$1 n=$2 wall=$3 rss=$4 ready=$5 bn=$6 bw=$7 br=$8 scale
	ratio_t=$(awk -v a="$wall" -v b="$bw" 'BEGIN{printf "%.1f", a/b}')
	ratio_m=$(awk -v a="$rss" -v b="$br" 'BEGIN{printf "%.1f", a/b}')
	scale=$(awk -v a="$n" -v b="$bn" 'BEGIN{print a/b}')
	if awk -v r="$ratio_t" -v s="$scale" 'BEGIN{exit !(r > 1.1*s)}' || awk -v r="$ratio_m" -v s="$scale" 'BEGIN{exit !(r > 1.1*s)}'; then
		echo "bench-fleet: MISSED linearity ($what): ${bn}→${n} took ${ratio_t}x time and ${ratio_m}x memory (target ≤ $(awk -v s="$scale" 'BEGIN{print 1.1*s}')x)" >&2
		fail=1
	fi
	if [ "$ready" != "$n" ]; then
		echo "bench-fleet: MISSED: only $ready of $n $what reached Ready" >&2
		fail=1
	fi
	if [ "$n" -ge 10000 ]; then
		if awk -v w="$wall" 'BEGIN{exit !(w > 600)}'; then echo "bench-fleet: MISSED: $n $what took ${wall}s (target ≤ 600 s)" >&2; fail=1; fi
		if awk -v m="$rss" 'BEGIN{exit !(m > 1024)}'; then echo "bench-fleet: MISSED: $n $what: peak RSS ${rss} MiB (target ≤ 1024 MiB)" >&2; fail=1; fi
	fi
	return 0
}

field() { # field NAME FILE: a number from the run's JSON
	sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" "$2" | head -1
}

echo "bench-fleet: results and CPU profiles in $out (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
rows=()
base_wall="" base_rss="" base_n=""
fail=0
for n in $sizes; do
	echo "bench-fleet: $n machines..." >&2
	"$bin" simulate fleet --nodes "$n" "${db_args[@]}" --progress 30s --cpuprofile "$out/cpu-$n.pprof" -o json >"$out/run-$n.json"
	wall=$(field wallSeconds "$out/run-$n.json")
	rss=$(field peakRssMiB "$out/run-$n.json")
	cpu=$(field cpuSeconds "$out/run-$n.json")
	ready=$(field ready "$out/run-$n.json")
	# The simulator's share: CPU samples whose stack passes through the
	# simulated edge (its journal, its timers); the rest is the controller.
	sim=$(go tool pprof -top -focus='controller/simedge' "$out/cpu-$n.pprof" 2>/dev/null |
		sed -n 's/.*Showing nodes accounting for [^,]*, \([0-9.]*\)% of .*/\1/p' | head -1)
	sim=${sim:-0}
	ctl=$(awk -v s="$sim" 'BEGIN{printf "%.1f", 100-s}')
	if [ -z "$base_n" ]; then base_wall=$wall base_rss=$rss base_n=$n; fi
	targets "machines" "$n" "$wall" "$rss" "$ready" "$base_n" "$base_wall" "$base_rss"
	rows+=("| $n | $(awk -v w="$wall" 'BEGIN{printf "%.1f s", w}') | $(awk -v n="$n" -v w="$wall" 'BEGIN{printf "%.1f", n/w}') | $(awk -v m="$rss" 'BEGIN{printf "%.0f MiB", m}') | $(awk -v c="$cpu" 'BEGIN{printf "%.1f s", c}') | ${ctl}% / ${sim}% | ${ratio_t}x / ${ratio_m}x |")
done

echo
echo "Simulated fleet, Discovered → Ready, controller and simulated edge in one process on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); store: ${FLEET_DATABASE:+PostgreSQL}${FLEET_DATABASE:-SQLite, synchronous=FULL}; 40 machines a rack, 8 BMC steps and 8 image streams at once per rack; simulated boot 1-2 s, image 2 s, burn-in 0.5 s, BMC reply 50 ms."
echo
echo "| machines | wall time | machines/s | peak RSS | CPU time | CPU controller / simulator | time / memory vs first row |"
echo "| ---: | ---: | ---: | ---: | ---: | :---: | :---: |"
printf '%s\n' "${rows[@]}"

cache_rows=()
cache_sizes=${FLEET_CACHE_RACK_SIZES-10 40}
for per in $cache_sizes; do
	echo "bench-fleet: rack cache, 2 racks of $per real-protocol hosts..." >&2
	log="$out/cache-$per.log"
	if ! FLEET_CACHE_RACK_SIZE=$per go test -count=1 -run 'TestRackCacheBytes$' -v ./test/fleet >"$log" 2>&1; then
		echo "bench-fleet: MISSED: the rack-cache measure failed (see $log)" >&2
		tail -20 "$log" >&2
		fail=1
		continue
	fi
	line=$(grep -o 'cache-bytes: .*' "$log" | head -1)
	val() { echo "$line" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
	image=$(val image) without=$(val perNodeWithout) with=$(val perNodeWith)
	cache_rows+=("| 2 × $per | $(awk -v b="$image" 'BEGIN{printf "%.0f KB", b/1000}') | $(awk -v b="$without" -v i="$image" 'BEGIN{printf "%.0f B (%.2f images)", b, b/i}') | $(awk -v b="$with" -v i="$image" 'BEGIN{printf "%.0f B (%.3f images)", b, b/i}') | $(awk -v a="$without" -v b="$with" 'BEGIN{printf "%.0f×", a/b}') |")
done
echo
echo "Image bytes the controller's boot server sent per node, without and with one rack cache per rack (real-protocol simulated hosts on loopback, counted by the boot server):"
echo
echo "| racks × hosts | image | per node, no cache | per node, rack cache | reduction |"
echo "| :---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${cache_rows[@]}"

real_rows=()
real_base_wall="" real_base_rss="" real_base_n=""
real_sizes=${REALFLEET_SIZES-25x40 250x40}
for size in $real_sizes; do
	racks=${size%x*} per=${size#*x}
	echo "bench-fleet: real-protocol fleet, $racks racks of $per..." >&2
	log="$out/realfleet-$size.log"
	if ! REALFLEET_RACKS=$racks REALFLEET_PER_RACK=$per REALFLEET_TIMEOUT_S=${REALFLEET_TIMEOUT_S:-1200} go test -count=1 -timeout 30m -run 'TestRealProtocolFleet$' -v \
		-cpuprofile "$out/realfleet-$size.pprof" -o "$out/realfleet.test" ./test/bench/fleet >"$log" 2>&1; then
		echo "bench-fleet: MISSED: the real-protocol fleet of $size did not finish (see $log)" >&2
		tail -5 "$log" >&2
		fail=1
		continue
	fi
	line=$(grep -o 'realfleet: .*' "$log" | head -1)
	val() { echo "$line" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
	n=$(val nodes) wall=$(val wall) cpu=$(val cpu) rss=$(val rssMiB) workers=$(val workers) simcpu=$(val simCpu) simrss=$(val simRssMiB) ready=$(val ready)
	if [ -z "$real_base_n" ]; then real_base_wall=$wall real_base_rss=$rss real_base_n=$n; fi
	targets "real-protocol machines" "$n" "$wall" "$rss" "$ready" "$real_base_n" "$real_base_wall" "$real_base_rss"
	share=$(awk -v c="$cpu" -v s="$simcpu" 'BEGIN{printf "%.0f %% / %.0f %%", 100*c/(c+s), 100*s/(c+s)}')
	real_rows+=("| $n ($racks × $per) | $workers | $(awk -v w="$wall" 'BEGIN{printf "%.1f s", w}') | $(awk -v n="$n" -v w="$wall" 'BEGIN{printf "%.1f", n/w}') | ${rss} MiB | $(awk -v c="$cpu" 'BEGIN{printf "%.0f s", c}') / $(awk -v c="$simcpu" 'BEGIN{printf "%.0f s", c}') ($share) | ${simrss} MiB | ${ratio_t}x / ${ratio_m}x |")
done
if [ ${#real_rows[@]} -gt 0 ]; then
	echo
	echo "Real-protocol fleet, Discovered → Ready: the controller (SQLite, synchronous=FULL) in one process, the simulated machines (Redfish BMCs driven by bmclib, DHCP through one relay per rack, TFTP, HTTP, agents long-polling and streaming the signed image) in another, on the same $(nproc) cores; 8 BMC steps a rack:"
	echo
	echo "| machines | workers | wall time | machines/s | controller peak RSS | CPU controller / simulator | simulator peak RSS | time / memory vs first row |"
	echo "| ---: | ---: | ---: | ---: | ---: | :---: | ---: | :---: |"
	printf '%s\n' "${real_rows[@]}"
fi
exit $fail
