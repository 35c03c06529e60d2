#!/usr/bin/env bash
# Image builder benchmark: our build of a generated root tree against the
# native Debian pipeline on the same tree, in the same run. Prints a markdown
# table of wall time, peak memory and the ratio (ours / native; <= 1.0 means
# we are as fast). BENCH_MB sets the tree size (default 1024).
set -euo pipefail
cd "$(dirname "$0")/../../.."
MB=${BENCH_MB:-1024}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"
go build -o "$T/imagebench" ./test/bench/images/imagebench

tree=$T/tree
"$T/imagebench" gen "$tree" "$MB" >/dev/null
kver=6.1.0-bench-amd64
mkdir -p "$tree/boot" "$tree/usr/lib/systemd/boot/efi"
head -c 8388608 /dev/urandom >"$tree/boot/vmlinuz-$kver"
cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$tree/usr/lib/systemd/boot/efi/"
bytes=$(du -sb "$tree" | cut -f1)
disk_mb=$(( MB * 13 / 10 + 300 ))
esp_mb=64

cat >"$T/spec.yaml" <<YAML
api_version: rackstrap.io/image/v1
name: bench
version: "1"
source_date_epoch: 1700000000
base: {dir: tree}
kernel: {version: $kver}
outputs:
  OUTPUT
YAML
spec() { sed "s|OUTPUT|$1|" "$T/spec.yaml" >"$T/$2.yaml"; }
spec "disk: {size: ${disk_mb}MiB, esp_size: ${esp_mb}MiB}" disk
spec "squashfs: {compression: zstd}" squashfs
spec "netboot: {compression: zstd}" netboot

# measure NAME CMD...: wall seconds and peak RSS (KiB) of CMD and its children
measure() {
  local name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %M" -o "$T/$name.time" "$@" >/dev/null 2>"$T/$name.err" || { cat "$T/$name.err" >&2; return 1; }
  cat "$T/$name.time" >>"$T/${name%_*}.times"
}

native_disk() {
  local d=$T/native.raw esp_off=$((1024*1024)) root_off=$(( (1 + esp_mb) * 1024 * 1024 ))
  rm -f "$d"
  truncate -s "${disk_mb}M" "$d"
  sgdisk -q -n "1:2048:+${esp_mb}M" -t 1:ef00 -n 2:0:0 -t 2:8304 "$d"
  mkfs.vfat -F 32 -s 1 -n ESP --offset 2048 "$d" $((esp_mb * 1024)) >/dev/null 2>&1
  mmd -i "$d@@$esp_off" ::EFI ::EFI/BOOT ::loader ::loader/entries
  mcopy -i "$d@@$esp_off" "$tree/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::EFI/BOOT/BOOTX64.EFI
  mcopy -i "$d@@$esp_off" "$tree/boot/vmlinuz-$kver" ::vmlinuz
  E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -E offset=$root_off -d "$tree" "$d" "$((disk_mb - esp_mb - 2))M"
}
export -f native_disk; export T tree esp_mb disk_mb kver

# BENCH_OUTPUTS picks the rows (default: all three); BENCH_RUNS (default 1)
# repeats each pair, ours and native alternating, and reports medians: this
# machine is shared, and one run can land on a busy moment.
OUTPUTS=${BENCH_OUTPUTS:-disk squashfs netboot}
RUNS=${BENCH_RUNS:-1}
has() { [[ " $OUTPUTS " == *" $1 "* ]]; }
for i in $(seq "$RUNS"); do
  if has disk; then
    rm -rf "$T/out-disk"
    measure "ours_disk_$i" "$T/imagebench" build "$T/disk.yaml" "$T/out-disk"
    measure "native_disk_$i" bash -c native_disk
  fi
  if has squashfs; then
    rm -rf "$T/out-squashfs"
    measure "ours_squashfs_$i" "$T/imagebench" build "$T/squashfs.yaml" "$T/out-squashfs"
    measure "native_squashfs_$i" mksquashfs "$tree" "$T/native.squashfs" -noappend -no-progress -quiet -comp zstd -b 1048576
  fi
  if has netboot; then
    rm -rf "$T/out-netboot"
    measure "ours_netboot_$i" "$T/imagebench" build "$T/netboot.yaml" "$T/out-netboot"
    measure "native_netboot_$i" bash -c "cd '$tree' && find . | LC_ALL=C sort | cpio -o -H newc --quiet | zstd -q -3 -T1 >'$T/native.cpio.zst'"
  fi
done

# median NAME: the median wall time and the largest peak RSS of NAME's runs
median() {
  sort -n "$T/$1.times" | awk '{ t[NR] = $1; if ($2 > m) m = $2 } END { printf "%s %d\n", t[int((NR + 1) / 2)], m }'
}
row() {
  local ot om nt nm ratio tput
  read -r ot om < <(median "ours_$1"); read -r nt nm < <(median "native_$1")
  ratio=$(awk -v a="$ot" -v b="$nt" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  tput=$(awk -v s="$bytes" -v t="$ot" 'BEGIN { printf "%.0f", (t > 0 ? s / t / 1048576 : 0) }')
  printf '| %s | %s | %s s | %s s | **%s×** | %s MiB/s | %d MiB | %d MiB |\n' "$1" "$2" "$ot" "$nt" "$ratio" "$tput" $((om / 1024)) $((nm / 1024))
}
echo "Tree: $((bytes / 1048576)) MiB ($(find "$tree" -type f | wc -l) files), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg) at the end; caches dropped before each run; median of $RUNS run(s), ours and native alternating."
echo
echo "| output | native pipeline | ours | native | ratio | our throughput | our peak RSS | native peak RSS |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
if has disk; then row disk "truncate+sgdisk+mkfs.vfat+mcopy+mkfs.ext4 -d"; fi
if has squashfs; then row squashfs "mksquashfs -comp zstd"; fi
if has netboot; then row netboot "find\|cpio -H newc\|zstd -3"; fi
