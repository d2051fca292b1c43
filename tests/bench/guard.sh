#!/usr/bin/env bash
# Figure for the LSM guard: the cost of its hooks on a mount-free, open/stat-heavy workload
# (pns-bench-lookup: stat + open + close of the files below /usr/share), run by a member of a
# locked namespace that has a deny entry (so every open is looked up), with the guard against
# without it (pnsd --no-guard), alternated ROUNDS times in one run. Needs a kernel that runs BPF
# LSM programs: vmtest/run --bench runs it in the VM.
#
# Wall times under an emulated CPU are noisy, so it also reports the guard programs' own time
# as the kernel accounts it (kernel.bpf_stats_enabled) against the workload's.
#
#   tests/bench/guard.sh [BUILD_DIR] [COUNT] [ROUNDS]   (default: build, 200000 lookups, 5)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
count=${2:-200000}
rounds=${3:-5}
pnsd=$build/pnsd pnsctl=$build/pnsctl lookup=$build/tests/pns-bench-lookup
for tool in "$pnsd" "$pnsctl" "$lookup"; do
  [ -x "$tool" ] || { echo "bench: $tool not built (run scripts/run-tests first)" >&2; exit 1; }
done
source "$root/tests/bench/common.sh"

# One measurement: a pnsd with or without the guard, a locked namespace showing /usr/share
# at a directory of its own, its member running the workload. Prints milliseconds.
measure() { # guard|none
  if [ "$1" = none ]; then BENCH_PNSD_ARGS=(--no-guard); else BENCH_PNSD_ARGS=(); fi
  bench_start_pnsd "$pnsd"
  if [ "$1" = guard ] && ! "$pnsctl" status | grep -q '^lsm guard: *active'; then
    echo "bench: the LSM guard is not active here: $("$pnsctl" status | grep 'lsm guard')" >&2
    exit 1
  fi
  mkdir -p "$work/share" && echo secret >"$work/secret"
  "$pnsctl" ns create --locked bench >/dev/null
  "$pnsctl" bind --ns bench /usr/share "$work/share" >/dev/null
  [ "$1" = guard ] && "$pnsctl" deny --ns bench "$work/secret" >/dev/null
  local before after ms
  before=$(guard_ns)
  ms=$("$pnsctl" run --ns bench -- "$lookup" "$work/share" "$count")
  after=$(guard_ns)
  echo "$ms $((after - before))"
  bench_cleanup
  trap - EXIT
}

# The run time of the guard's programs so far, in ns, as the kernel accounts it.
guard_ns() {
  bpftool prog show 2>/dev/null |
    awk '/ name guard_/ { for (i = 1; i < NF; i++) if ($i == "run_time_ns") t += $(i + 1) }
         END { print t + 0 }'
}
bpf_stats=$(cat /proc/sys/kernel/bpf_stats_enabled)
echo 1 >/proc/sys/kernel/bpf_stats_enabled
trap 'echo "$bpf_stats" >/proc/sys/kernel/bpf_stats_enabled' EXIT

echo "guard bench: $count lookups (stat + open + close) by a member of a locked namespace, $rounds rounds"
declare -a with without accounted
for i in $(seq "$rounds"); do
  read -r ms _ < <(measure none)
  without+=("$ms")
  read -r ms ns < <(measure guard)
  with+=("$ms")
  accounted+=("$ns")
  echo "round $i: without the guard ${without[-1]} ms, with it ${with[-1]} ms" \
    "(the guard's programs ran $((ns / 1000000)) ms of it)"
done
# (awk, not python: the VM's root file system has no python)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_without=$(median "${without[@]}") m_with=$(median "${with[@]}")
m_accounted=$(median "${accounted[@]}")
awk -v a="$m_without" -v b="$m_with" -v g="$m_accounted" 'BEGIN {
  printf "median without %.1f ms, with %.1f ms: ratio %.3f (with / without)\n", a, b, b / a
  printf "kernel-accounted: the guard ran %.1f ms per run: ratio %.4f (1 + that / without)\n",
         g / 1e6, 1 + g / 1e6 / a }'
