#!/usr/bin/env bash
# Figures for joining: pnsctl attach latency; pnsctl run against /bin/true, bubblewrap and
# PRoot with the same binds; what supervision adds to each fork of a multithreaded process.
# Starts its own pnsd (in a mount namespace of its own, a slave of this one) on a temporary
# socket and state dir. Ratios are against baselines measured in the same run.
#
#   tests/bench/join.sh [BUILD_DIR] [ROUNDS]     (default: build, 300 attaches)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
rounds=${2:-300}
pnsd=$build/pnsd pnsctl=$build/pnsctl forks=$build/tests/pns-bench-forks
for tool in "$pnsd" "$pnsctl" "$forks"; do
  [ -x "$tool" ] || { echo "bench: $tool not built (run scripts/run-tests first)" >&2; exit 1; }
done
for tool in bwrap proot hyperfine; do
  command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

source "$root/tests/bench/common.sh"
bench_start_pnsd "$pnsd"
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
p99() { sort -n | awk '{a[NR]=$1} END {i=int(0.99*NR); if (i<1) i=1; printf "%.3f", a[i]}'; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
hf_median() { python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"; }

# The same four binds for pns, bubblewrap and PRoot.
m=$work/mnt
mkdir -p "$m"
pns_binds=() bwrap_args=() proot_args=()
for i in 1 2 3 4; do
  mkdir -p "$m/d$i"
  pns_binds+=("$m/d$i")
  bwrap_args+=(--bind /etc "$m/d$i")
  proot_args+=(-b "/etc:$m/d$i")
done
for ns in a b; do
  "$pnsctl" ns create $ns
  for d in "${pns_binds[@]}"; do "$pnsctl" bind --ns $ns /etc "$d"; done
done

# --- 1. attach latency: one single-threaded process moved between two views ---------------
sleep 1000 &
target=$!
: >"$work/attach" ; : >"$work/status"
# bash's own clock (EPOCHREALTIME, microseconds): no process is started to read it.
for i in $(seq 1 "$rounds"); do
  ns=a; [ $((i % 2)) = 0 ] && ns=b
  s=${EPOCHREALTIME/./}; "$pnsctl" attach --ns $ns $target; e=${EPOCHREALTIME/./}
  echo $((e - s)) >>"$work/attach"
  s=${EPOCHREALTIME/./}; "$pnsctl" status >/dev/null; e=${EPOCHREALTIME/./}
  echo $((e - s)) >>"$work/status"
done
[ "$(readlink /proc/$target/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] ||
  { echo "bench: the target is not in a view" >&2; exit 1; }
kill $target
attach_ms=$(awk '{print $1/1000}' "$work/attach" | median)
attach_p99=$(awk '{print $1/1000}' "$work/attach" | p99)
status_ms=$(awk '{print $1/1000}' "$work/status" | median)

# --- 2. pnsctl run against /bin/true, bubblewrap and PRoot --------------------------------
hyperfine -N --warmup 5 --runs 200 --export-json "$work/true.json" /bin/true >/dev/null 2>&1
hyperfine -N --warmup 5 --runs 200 --export-json "$work/run.json" \
  "$pnsctl run --ns a -- /bin/true" >/dev/null 2>&1
hyperfine -N --warmup 5 --runs 200 --export-json "$work/bwrap.json" \
  "bwrap --dev-bind / / ${bwrap_args[*]} /bin/true" >/dev/null 2>&1
hyperfine -N --warmup 5 --runs 100 --export-json "$work/proot.json" \
  "proot ${proot_args[*]} /bin/true" >/dev/null 2>&1
true_ms=$(hf_median "$work/true.json")
run_ms=$(hf_median "$work/run.json")
bwrap_ms=$(hf_median "$work/bwrap.json")
proot_ms=$(hf_median "$work/proot.json")

# --- 3. what supervision adds to each fork -------------------------------------------------
fork_run() { # fork_run MODE SUPERVISED -> "median p99" in us
  rm -f "$work/go"
  "$forks" 2000 "$work/go" $1 >"$work/forks.out" &
  local p=$!
  sleep 0.2
  if [ "$2" = yes ]; then
    "$pnsctl" attach --ns a $p >/dev/null
  fi
  touch "$work/go"
  wait $p
  cat "$work/forks.out"
}
read -r plain_fork plain_fork_p99 < <(fork_run fork no)
read -r sup_fork sup_fork_p99 < <(fork_run fork yes)
read -r plain_exec plain_exec_p99 < <(fork_run exec no)
read -r sup_exec sup_exec_p99 < <(fork_run exec yes)

echo "pns join bench ($(date -u +%F), $(nproc) cores, kernel $(uname -r))"
printf '%-58s %10s %8s\n' "measure" "value" "ratio"
printf '%-58s %7s ms %8s\n' "pnsctl status round trip (baseline), median of $rounds" "$status_ms" "1.00"
printf '%-58s %7s ms %8s\n' "pnsctl attach, single-threaded target, median" "$attach_ms" "$(ratio "$attach_ms" "$status_ms")"
printf '%-58s %7s ms %8s\n' "  p99 (target: median under 5 ms)" "$attach_p99" "$(ratio "$attach_p99" "$status_ms")"
printf '%-58s %7s ms %8s\n' "/bin/true (baseline), median of 200" "$true_ms" "1.00"
printf '%-58s %7s ms %8s\n' "pnsctl run --ns a -- /bin/true (4 binds)" "$run_ms" "$(ratio "$run_ms" "$true_ms")"
printf '%-58s %7s ms %8s\n' "bwrap --dev-bind / / + the same 4 binds /bin/true" "$bwrap_ms" "$(ratio "$bwrap_ms" "$true_ms")"
printf '%-58s %7s ms %8s\n' "proot + the same 4 binds /bin/true" "$proot_ms" "$(ratio "$proot_ms" "$true_ms")"
printf '%-58s %7s us %8s\n' "fork+exit+wait, multithreaded, unsupervised, median" "$plain_fork" "1.00"
printf '%-58s %7s us %8s\n' "  supervised (each child joins the view)" "$sup_fork" "$(ratio "$sup_fork" "$plain_fork")"
printf '%-58s %7s us %8s\n' "  p99 unsupervised / supervised" "$plain_fork_p99" "$sup_fork_p99"
printf '%-58s %7s us %8s\n' "fork+exec /bin/true+wait, unsupervised, median" "$plain_exec" "1.00"
printf '%-58s %7s us %8s\n' "  supervised" "$sup_exec" "$(ratio "$sup_exec" "$plain_exec")"
