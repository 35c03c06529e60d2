#!/usr/bin/env bash
# Image write benchmark: Rackstrap's streaming writer (rackstrap-agent
# write-image: HTTP GET, sha256 while streaming, zero blocks skipped, every
# range read back with O_DIRECT and compared with the hashed bytes while the
# next is written, one fsync at the end; and the same fetching the .zst and
# decoding it) against the
# usual pipeline `curl | zstd -d | dd conv=fsync` (no verification at all),
# the same image served by the same nginx on loopback, in the same run,
# alternating, best of RUNS. Also `curl | dd` of the raw image (the peer
# without decompression), and the zstd pipeline given our checks (sha256
# while writing through tee, then a read-back sha256sum after dropping the
# cache), which is the like-for-like comparison. Prints a markdown table; ratio = peer time / ours
# (>= 1.0 means ours is as fast). BENCH_MB sets the image size (default 1024),
# RUNS the repetitions (default 3). Needs root (drop_caches), nginx-light,
# curl, zstd.
set -euo pipefail
cd "$(dirname "$0")/../../.."
MB=${BENCH_MB:-1024}
RUNS=${RUNS:-3}
for tool in nginx curl zstd dd sha256sum; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed: run 'make test-deps' (nginx-light, curl, zstd, coreutils)" >&2; exit 1; }
done
T=$(mktemp -d)
chmod 755 "$T"
cleanup() {
  [ -n "${KEEP:-}" ] && { echo "kept $T" >&2; kill "$(cat "$T/nginx.pid")" 2>/dev/null; return; }
  [ -s "$T/nginx.pid" ] && kill "$(cat "$T/nginx.pid")" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -trimpath -o "$T/rackstrap-agent" ./cmd/rackstrap-agent

# The image: like an OS disk, data and zeros interleaved (a quarter of it
# incompressible, a quarter text-like, half zeros).
mkdir -p "$T/www"
img=$T/www/os.raw
: >"$img"
chunk=$(( MB / 16 ))
for i in $(seq 1 4); do
  head -c "$((chunk * 1024 * 1024))" /dev/urandom >>"$img"
  { yes "rackstrap image benchmark line $i with some repetitive text in it" || true; } | head -c "$((chunk * 1024 * 1024))" >>"$img"
  head -c "$((2 * chunk * 1024 * 1024))" /dev/zero >>"$img"
done
size=$(stat -c %s "$img")
sum=$(sha256sum "$img" | cut -d' ' -f1)
zstd -q -3 -T0 "$img" -o "$T/www/os.raw.zst"

port=$(( 20000 + RANDOM % 20000 ))
cat >"$T/nginx.conf" <<NGINX
daemon on;
worker_processes 2;
pid $T/nginx.pid;
error_log $T/nginx.err;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$port; root $T/www; }
}
NGINX
nginx -c "$T/nginx.conf" -p "$T"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/os.raw.zst" -r 0-0 && break; sleep 0.1; done
# both sources warm in the page cache, as on a boot server serving a rack
cat "$img" "$T/www/os.raw.zst" >/dev/null

best() { sort -n | head -1; }
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; return 1; }; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", e - s }'; }
# ours fetches the raw image (what the controller serves by default)
ours() {
  rm -f "$T/out-rs.img"; sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
  secs "$T/rackstrap-agent" write-image --url "http://127.0.0.1:$port/os.raw" --sha256 "$sum" --size "$size" --disk "$T/out-rs.img"
}
# and the .zst, decoding it (a quarter of the bytes on the wire)
ours_zst() {
  rm -f "$T/out-rszst.img"; sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
  secs "$T/rackstrap-agent" write-image --url "http://127.0.0.1:$port/os.raw.zst" --sha256 "$sum" --size "$size" --disk "$T/out-rszst.img"
}
peer_zst() {
  rm -f "$T/out-dd.img"; sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
  secs sh -c "curl -sf http://127.0.0.1:$port/os.raw.zst | zstd -d -q | dd of=$T/out-dd.img bs=4M iflag=fullblock conv=fsync status=none"
}
# the same guarantees as ours: hash while writing, then sync, drop the cache
# and hash what the file reads back
peer_verified() {
  rm -f "$T/out-ver.img"; sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
  secs bash -c "set -o pipefail; curl -sf http://127.0.0.1:$port/os.raw.zst | zstd -d -q | tee >(sha256sum >$T/ver.sum) | dd of=$T/out-ver.img bs=4M iflag=fullblock conv=fsync status=none && echo 1 >/proc/sys/vm/drop_caches && sha256sum $T/out-ver.img >$T/ver-back.sum"
}
peer_raw() {
  rm -f "$T/out-raw.img"; sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
  secs sh -c "curl -sf http://127.0.0.1:$port/os.raw | dd of=$T/out-raw.img bs=4M iflag=fullblock conv=fsync status=none"
}
: >"$T/ours"; : >"$T/ourszst"; : >"$T/zst"; : >"$T/raw"; : >"$T/ver"
for _ in $(seq "$RUNS"); do
  ours >>"$T/ours"
  ours_zst >>"$T/ourszst"
  peer_zst >>"$T/zst"
  peer_raw >>"$T/raw"
  peer_verified >>"$T/ver"
done
# every output is the image
for f in out-rs.img out-rszst.img out-dd.img out-raw.img out-ver.img; do
  got=$(sha256sum "$T/$f" | cut -d' ' -f1)
  [ "$got" = "$sum" ] || { echo "$f: sha256 $got, want $sum" >&2; exit 1; }
done
o=$(best <"$T/ours"); oz=$(best <"$T/ourszst"); z=$(best <"$T/zst"); r=$(best <"$T/raw"); v=$(best <"$T/ver")
mibs() { awk -v mb="$MB" -v t="$1" 'BEGIN { printf "%.0f", mb / t }'; }
ratio() { awk -v p="$1" -v o="$o" 'BEGIN { printf "%.2f", p / o }'; }
zmb=$(( $(stat -c %s "$T/www/os.raw.zst") / 1048576 ))
echo "Image write, ${MB} MiB image (${zmb} MiB as zstd -3), nginx on loopback to a file, best of $RUNS, $(nproc) cores"
echo
echo "| pipeline | seconds | MiB/s | ratio (peer / ours) |"
echo "| --- | --- | --- | --- |"
printf '| rackstrap-agent write-image (sha256 while writing, every byte read back with O_DIRECT and compared, fsync) | %.2f | %s | |\n' "$o" "$(mibs "$o")"
printf '| rackstrap-agent write-image of the .zst (the same, decoding a quarter of the bytes) | %.2f | %s | %s |\n' "$oz" "$(mibs "$oz")" "$(ratio "$oz")"
printf '| curl .zst \\| zstd -d \\| dd conv=fsync (no verification) | %.2f | %s | %s |\n' "$z" "$(mibs "$z")" "$(ratio "$z")"
printf '| curl .raw \\| dd conv=fsync (no verification) | %.2f | %s | %s |\n' "$r" "$(mibs "$r")" "$(ratio "$r")"
printf '| curl .zst \\| zstd -d \\| tee >(sha256sum) \\| dd conv=fsync; sha256sum (read back) | %.2f | %s | %s |\n' "$v" "$(mibs "$v")" "$(ratio "$v")"
