#!/usr/bin/env bash
# Figures for views: lookup overhead in a view of 20 entries against native, bubblewrap and
# PRoot with the same binds; edit-to-visible latency; 1,000 namespaces of 100 entries.
# Starts its own pnsd (in a mount namespace of its own, a slave of this one) on a temporary
# socket and state dir. Ratios are against native runs measured in the same run, alternated.
#
#   tests/bench/views.sh [BUILD_DIR] [COUNT]     (default: build, 300000 lookups a run)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
count=${2:-300000}
pnsd=$build/pnsd pnsctl=$build/pnsctl enter=$build/tests/pns-test-enter
lookup=$build/tests/pns-bench-lookup watch=$build/tests/pns-bench-watch
for tool in "$pnsd" "$pnsctl" "$enter" "$lookup" "$watch"; do
  [ -x "$tool" ] || { echo "bench: $tool not built (run scripts/run-tests first)" >&2; exit 1; }
done
for tool in bwrap proot; do
  command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

source "$root/tests/bench/common.sh"
bench_start_pnsd "$pnsd"
pin() { echo "/proc/$pid/root$work/run/views/$1/mnt"; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
p99() { sort -n | awk '{a[NR]=$1} END {i=int(0.99*NR); if (i<1) i=1; printf "%.3f", a[i]}'; }
ratio() { python3 -c "print('%.3f' % ($1 / $2))"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- 1. Lookup overhead: a view of 20 entries, the workload under one of its binds --------
m=$work/mnt
# (Sources are not nested in one another: PRoot loses files when they are.)
mkdir -p "$m/share" "$m/lib"
pns_entries=("bind /usr/share $m/share" "bind /usr/lib $m/lib")
bwrap_args=(--bind /usr/share "$m/share" --bind /usr/lib "$m/lib")
proot_args=(-b "/usr/share:$m/share" -b "/usr/lib:$m/lib")
for i in $(seq 1 10); do
  mkdir -p "$m/e$i"
  pns_entries+=("bind /etc $m/e$i")
  bwrap_args+=(--bind /etc "$m/e$i")
  proot_args+=(-b "/etc:$m/e$i")
done
for i in $(seq 1 4); do
  mkdir -p "$m/t$i" "$m/r$i"
  pns_entries+=("tmpfs $m/t$i" "ro $m/r$i")
  bwrap_args+=(--tmpfs "$m/t$i" --ro-bind "$m/r$i" "$m/r$i")
  proot_args+=(-b "/srv:$m/t$i" -b "$m/r$i:$m/r$i")  # PRoot has no tmpfs or read-only binds
done
printf '%s\n' "${pns_entries[@]}" >"$work/view.table"
"$pnsctl" ns create bench --from "$work/view.table"
entries=$(wc -l <"$work/view.table")

run_native() { "$lookup" /usr/share "$count"; }
run_pns() { "$enter" --mnt "$(pin bench)" -- "$lookup" "$m/share" "$count"; }
run_bwrap() { bwrap --dev-bind / / "${bwrap_args[@]}" -- "$lookup" "$m/share" "$count"; }
run_proot() { proot "${proot_args[@]}" "$lookup" "$m/share" "$count"; }
for variant in native pns bwrap proot; do : >"$work/lookup.$variant"; done
for round in 1 2 3 4 5; do
  for variant in native pns bwrap proot; do
    "run_$variant" >>"$work/lookup.$variant"
  done
done

find_native() { find /usr/lib >/dev/null; }
find_pns() { "$enter" --mnt "$(pin bench)" -- find "$m/lib" >/dev/null; }
find_bwrap() { bwrap --dev-bind / / "${bwrap_args[@]}" -- find "$m/lib" >/dev/null; }
find_proot() { proot "${proot_args[@]}" find "$m/lib" >/dev/null; }
for variant in native pns bwrap proot; do : >"$work/find.$variant"; done
for round in 1 2 3; do
  for variant in native pns bwrap proot; do
    start=$(now_ms)
    "find_$variant"
    echo $(( $(now_ms) - start )) >>"$work/find.$variant"
  done
done

# --- 2. Edit-to-visible: a member spins on stat(2) until the new entry shows --------------
echo probe >"$work/probe"
mkdir -p "$m/vis"
: >"$work/visible" ; : >"$work/edit"
for round in $(seq 1 100); do
  "$enter" --mnt "$(pin bench)" -- "$watch" "$m/vis/probe" >"$work/seen" &
  watcher=$!
  t0=$("$watch")
  "$pnsctl" bind --ns bench "$work/probe" "$m/vis/probe"
  t1=$("$watch")
  wait "$watcher"
  seen=$(cat "$work/seen")
  echo "$(( (seen - t1) / 1000 ))" >>"$work/visible"   # µs after pnsctl returned (<0: before)
  echo "$(( (t1 - t0) / 1000 ))" >>"$work/edit"        # µs the whole pnsctl bind took
  "$pnsctl" unbind --ns bench "$m/vis/probe"
done

# --- 3. 1,000 namespaces of 100 entries ---------------------------------------------------
echo a >"$work/a"
mkdir -p "$m/many"
for i in $(seq 1 100); do echo "bind $work/a $m/many/f$i"; done >"$work/many.table"
rss_before=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
start=$(now_ms)
for i in $(seq 1 1000); do "$pnsctl" ns create "n$i" --from "$work/many.table"; done
create_ms=$(( $(now_ms) - start ))
rss_after=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
mounts=0
for i in $(seq 1 1000); do
  n=$("$enter" --mnt "$(pin "n$i")" -- wc -l /proc/self/mountinfo | cut -d' ' -f1)
  mounts=$(( mounts + n ))
done
host_mounts=$(wc -l <"/proc/$pid/mountinfo")

native=$(median <"$work/lookup.native")
fnative=$(median <"$work/find.native")
echo "pns views bench ($(date -u +%F), $(nproc) cores, kernel $(uname -r))"
echo "1. lookups: $count stat+open+close of files under /usr/share, through a view of $entries entries; median of 5"
printf '   %-10s %10s ms  ratio %s\n' native "$native" 1.000
for variant in pns bwrap proot; do
  v=$(median <"$work/lookup.$variant")
  printf '   %-10s %10s ms  ratio %s\n' "$variant" "$v" "$(ratio "$v" "$native")"
done
echo "   find over /usr/lib (median of 3)"
printf '   %-10s %10s ms  ratio %s\n' native "$fnative" 1.000
for variant in pns bwrap proot; do
  v=$(median <"$work/find.$variant")
  printf '   %-10s %10s ms  ratio %s\n' "$variant" "$v" "$(ratio "$v" "$fnative")"
done
echo "2. edit to visible, 100 binds (µs; negative: the member saw it before pnsctl returned)"
echo "   visible after pnsctl bind returned: median $(median <"$work/visible"), p99 $(p99 <"$work/visible")"
echo "   whole pnsctl bind:                  median $(median <"$work/edit"), p99 $(p99 <"$work/edit")"
echo "3. 1,000 namespaces of 100 entries each"
echo "   created in ${create_ms} ms ($(python3 -c "print('%.1f' % ($create_ms/1000))") ms a namespace)"
echo "   pnsd RSS ${rss_before} KiB before, ${rss_after} KiB after"
echo "   mounts in the 1,000 views: $mounts in all; in pnsd's own namespace: $host_mounts"
