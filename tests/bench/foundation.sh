#!/usr/bin/env bash
# Figures for the foundation: pnsctl round trip, apply of a 10,000-entry table, pnsd's RSS.
# Starts its own pnsd on a temporary socket and state dir; never touches /run/pns or
# /var/lib/pns. Times are noisy on these machines, so each is printed beside a baseline
# measured in the same run (exec of /bin/true) as a ratio.
#
#   tests/bench/foundation.sh [BUILD_DIR]      (default: build)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
pnsd=$build/pnsd
pnsctl=$build/pnsctl
for tool in "$pnsd" "$pnsctl"; do
  [ -x "$tool" ] || { echo "bench: $tool not built (run scripts/run-tests first)" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "bench: hyperfine is not installed" >&2; exit 1; }

source "$root/tests/bench/common.sh"
bench_start_pnsd "$pnsd"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
median_ms() { # hyperfine JSON -> median in ms
  python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"
}
p99_ms() {
  python3 -c 'import json,sys
t=sorted(json.load(open(sys.argv[1]))["results"][0]["times"]); print("%.3f" % (t[min(len(t)-1,int(0.99*len(t)))]*1000))' "$1"
}

idle_rss=$(rss_kib)

mkdir -p "$work/src" "$work/dst"
echo a >"$work/src/a"
echo b >"$work/src/b"
"$pnsctl" ns create bench
for i in $(seq 1 20); do "$pnsctl" bind --ns bench "$work/src/a" "$work/dst/f$i"; done

# 1. Round trip of `pnsctl ns ls`, whole process, against exec of /bin/true.
hyperfine -N --warmup 10 --runs 100 --export-json "$work/true.json" /bin/true >/dev/null 2>&1
hyperfine -N --warmup 10 --runs 100 --export-json "$work/ls.json" "$pnsctl ns ls" >/dev/null 2>&1
true_ms=$(median_ms "$work/true.json")
ls_ms=$(median_ms "$work/ls.json")

# 2. apply of a 10,000-entry table (two tables alternating, so every apply changes every
#    entry): each apply takes 10,000 bind mounts off the view and puts 10,000 new ones on.
for variant in a b; do
  for i in $(seq 1 10000); do
    echo "bind $work/src/$variant $work/dst/f$i"
  done >"$work/table-$variant"
done
"$pnsctl" ns create big
# hyperfine would run each command several times in a row, and all but the first apply of a
# table would change nothing; alternate by hand instead.
: >"$work/apply.times"
for round in 1 2 3 4 5 6; do
  for variant in a b; do
    start=$(date +%s%N)
    "$pnsctl" apply --ns big "$work/table-$variant"
    echo $(( ($(date +%s%N) - start) / 1000 )) >>"$work/apply.times"
  done
done
apply_ms=$(sort -n "$work/apply.times" | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]/1000}')
apply_rss=$(rss_kib)
"$pnsctl" export --ns big | cmp -s - "$work/table-b" ||
  "$pnsctl" export --ns big | cmp -s - "$work/table-a" ||
  { echo "bench: exported table differs from the applied one" >&2; exit 1; }

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo "pns foundation bench ($(date -u +%F), $(nproc) cores, kernel $(uname -r))"
printf '%-44s %10s %10s\n' "measure" "value" "ratio"
printf '%-44s %8s ms %10s\n' "/bin/true exec (baseline), median of 100" "$true_ms" "1.00"
printf '%-44s %8s ms %10s\n' "pnsctl ns ls round trip, median of 100" "$ls_ms" "$(ratio "$ls_ms" "$true_ms")"
printf '%-44s %8s ms %10s\n' "  p99" "$(p99_ms "$work/ls.json")" ""
printf '%-44s %8s ms %10s\n' "apply 10,000 changed entries, median of 12" "$apply_ms" "$(ratio "$apply_ms" "$true_ms")"
printf '%-44s %10s\n' "mounts in the view after it" "$(nsenter --mount="/proc/$pid/root$work/run/views/big/mnt" cat /proc/self/mountinfo | wc -l)"
printf '%-44s %7s KiB %10s\n' "pnsd RSS idle (target < 16 MiB)" "$idle_rss" ""
printf '%-44s %7s KiB %10s\n' "pnsd RSS after 10,000-entry applies (< 32 MiB)" "$apply_rss" ""
