#!/usr/bin/env bash
# Figures for the BPF tracker and cgroup policy: fork+exec throughput with the tracker loaded
# against without (the baseline, measured before and after in the same run); the time from a
# process entering a policy cgroup to being in the view; the members map's memory.
#
#   tests/bench/tracker.sh [BUILD_DIR] [COUNT]     (default: build, 10000 fork+exec)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
count=${2:-10000}
pnsd=$build/pnsd pnsctl=$build/pnsctl forks=$build/tests/pns-bench-forks
join=$build/tests/pns-bench-policy-join
for tool in "$pnsd" "$pnsctl" "$forks" "$join"; do
  [ -x "$tool" ] || { echo "bench: $tool not built (run scripts/run-tests first)" >&2; exit 1; }
done
if ls -d /sys/fs/bpf/pns* >/dev/null 2>&1; then
  echo "bench: trackers are pinned already (/sys/fs/bpf/pns*): the baseline would not be one" >&2
  exit 1
fi
cgroot=$(awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo)
[ -n "$cgroot" ] || { echo "bench: no cgroup2 mount" >&2; exit 1; }

source "$root/tests/bench/common.sh"
ratio() { python3 -c "print('%.3f' % ($1 / $2))"; }

forkexec() { # -> "median_us p99_us" of fork + exec /bin/true + wait, COUNT rounds
  rm -f "$work/go.$1"; touch "$work/go.$1"
  "$forks" "$count" "$work/go.$1" exec
}

# The pins as the bench's pnsd sees them: through its root, since on a machine where nobody
# mounted bpffs it mounts one in its own mount namespace (a slave of this one), out of sight here.
pins() { echo "/proc/$pid/root$BENCH_BPF_DIR"; }
cg=$cgroot/pnsbench$$
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
bench_extra_cleanup() {
  rmdir "$cg" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$stats_before"
}
trap bench_cleanup EXIT

# Without and with the tracker, alternated three times (the machine's noise is larger than
# what is measured): each run is COUNT rounds; the figure is the median of the runs' medians.
base_runs=() loaded_runs=() base_p99=() loaded_p99=()
for round in 1 2 3; do
  work=$(mktemp -d /tmp/pns-bench.XXXXXX)
  read -r m p < <(forkexec "a$round")
  base_runs+=("$m"); base_p99+=("$p")
  rm -rf "$work"
  bench_start_pnsd "$pnsd"
  for _ in $(seq 50); do [ -e "$(pins)/link_on_exec" ] && break; sleep 0.1; done
  read -r m p < <(forkexec "b$round")
  loaded_runs+=("$m"); loaded_p99+=("$p")
  if [ $round -lt 3 ]; then bench_cleanup; fi
done

# What the tracker's programs themselves cost, from the kernel's own accounting
# (kernel.bpf_stats_enabled): the time each takes per run, for one more loaded run.
prog_of() { bpftool link show pinned "$(pins)/link_$1" | awk '{for (i=1;i<=NF;i++) if ($i=="prog") print $(i+1)}'; }
stat_of() { bpftool prog show id "$1" | tr ' ' '\n' | grep -A1 "^$2\$" | tail -1 | tr -dc 0-9; }
sysctl -qw kernel.bpf_stats_enabled=1
declare -A t0 c0
for p in on_fork on_exec on_exit; do
  id=$(prog_of $p); t0[$p]=$(stat_of "$id" run_time_ns); c0[$p]=$(stat_of "$id" run_cnt)
done
read -r accounted_run _ < <(forkexec d)
per_round_ns=0
declare -A avg
for p in on_fork on_exec on_exit; do
  id=$(prog_of $p)
  t=$(( $(stat_of "$id" run_time_ns) - ${t0[$p]} )); c=$(( $(stat_of "$id" run_cnt) - ${c0[$p]} ))
  avg[$p]=$(( c > 0 ? t / c : 0 ))
  per_round_ns=$(( per_round_ns + avg[$p] ))
done
sysctl -qw kernel.bpf_stats_enabled="$stats_before"
mid() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(mid "${base_runs[@]}") loaded=$(mid "${loaded_runs[@]}")

# Policy join latency, with the pnsd of the last round.
mkdir -p "$cg"
mkdir -p "$work/d"; echo view >"$work/v"; echo host >"$work/d/t"
"$pnsctl" ns create bench
"$pnsctl" bind --ns bench "$work/v" "$work/d/t"
"$pnsctl" policy set --cgroup "$cg" --ns bench
view=$(stat -c %i "/proc/$pid/root$work/run/views/bench/mnt")
read -r join_med join_p99 < <("$join" 1000 "$cg" "$view")
held=$("$pnsctl" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["tracker"]["held_at_exec"])')
memlock=$(bpftool map show pinned "$(pins)/members" | tr ' ' '\n' | grep -A1 '^memlock$' | tail -1 | tr -dc 0-9)
max_entries=$(bpftool map show pinned "$(pins)/members" | tr ' ' '\n' | grep -A1 '^max_entries$' | tail -1 | tr -dc 0-9)

echo "pns tracker bench ($(date -u +%F), $(nproc) cores, kernel $(uname -r))"
printf '%-62s %10s %8s\n' "measure" "value" "ratio"
printf '%-62s %7s us %8s\n' "fork+exec /bin/true+wait, no tracker (median of 3 runs)" "$base" "1.000"
printf '%-62s %7s us %8s\n' "  with the tracker loaded (target ratio <= 1.03)" "$loaded" "$(ratio "$loaded" "$base")"
printf '%-62s %10s\n' "  the runs without" "${base_runs[*]}"
printf '%-62s %10s\n' "  the runs with" "${loaded_runs[*]}"
printf '%-62s %10s\n' "  p99 of the runs without / with" "${base_p99[*]} / ${loaded_p99[*]}"
printf '%-62s %7s ns %8s\n' "  tracker programs per round (fork+exec+exit), kernel-accounted" "$per_round_ns" "$(python3 -c "print('%.4f' % (1 + $per_round_ns / 1000 / $base))")"
printf '%-62s %10s\n' "    on_fork / on_exec / on_exit, ns per run" "${avg[on_fork]} / ${avg[on_exec]} / ${avg[on_exit]}"
printf '%-62s %7s us\n' "policy join latency: cgroup.procs write to in the view, median" "$join_med"
printf '%-62s %7s us\n' "  p99 (1000 rounds)" "$join_p99"
printf '%-62s %10s\n' "  holds at exec meanwhile (none expected: no exec)" "$held"
printf '%-62s %10s\n' "members map: max entries (preallocated hash)" "$max_entries"
printf '%-62s %7s KiB\n' "  its memory (memlock), the same for 1 or 10,000 members" "$((memlock / 1024))"
printf '%-62s %7s B\n' "  per entry" "$((memlock / max_entries))"
