#!/usr/bin/env bash
# Fair sharing (issue 11, case 6): root's `pnsctl status` latency, median and 99th percentile,
# while one ordinary user (uid 4242) floods pnsd, against the same with no flood, measured in
# the same run. Floods: 4,096 connections (what kept everyone out before per-user bounds), then
# a connect loop ("hold"); 4,096 connections trickling a request a byte every 2 s, reconnecting
# those pnsd closes ("trickle"); 128 connections each sending status requests back to back
# ("requests"). Starts its own pnsd (in a mount namespace of its own, a slave of this one) on a
# temporary socket and state dir.
#
#   tests/bench/flood.sh [BUILD_DIR] [ROUNDS]     (default: build, 300 rounds of pnsctl status)
#   PNSD=OTHER/pnsd tests/bench/flood.sh ...      the same against another pnsd
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
rounds=${2:-300}
# PNSD=path runs another pnsd (an older build, for figures before the bounds).
pnsd=${PNSD:-$build/pnsd} pnsctl=$build/pnsctl flood=$build/tests/pns-bench-flood
for tool in "$pnsd" "$pnsctl" "$flood"; do
  [ -x "$tool" ] || { echo "bench: $tool not built (run scripts/run-tests first)" >&2; exit 1; }
done
command -v setpriv >/dev/null || { echo "bench: setpriv is not installed" >&2; exit 1; }

source "$root/tests/bench/common.sh"
bench_start_pnsd "$pnsd"
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

# Server::kMaxConnectionsPerUser: the most one user may hold; the connection flood tries
# Server::kMaxConnections (which kept everyone out before there were per-user bounds).
share=128
everything=4096
# The flooder runs as uid 4242 from a copy it can reach.
cp "$flood" "$work/flood"
chmod 755 "$work/flood"
flooder=
bench_extra_cleanup() { [ -z "$flooder" ] || kill "$flooder" 2>/dev/null || true; }

# start_flood MODE ARGS...: runs the flood as uid 4242 until stop_flood; returns once its
# connections are open. (setpriv execs the flood: $! is the flood itself.)
start_flood() {
  mkfifo "$work/ready"
  setpriv --reuid=4242 --regid=4242 --clear-groups "$work/flood" "$@" >"$work/ready" 2>/dev/null &
  flooder=$!
  read -r _ <"$work/ready"
  rm -f "$work/ready"
}
stop_flood() {
  kill "$flooder" 2>/dev/null || true
  wait "$flooder" 2>/dev/null || true
  flooder=
}

# measure: root's pnsctl status latency now: "median p99 failed" (ms; "-" when none succeeded).
measure() { "$flood" latency "$pnsctl" "$rounds"; }
# report LABEL BASE_MEDIAN BASE_P99 MEDIAN P99 FAILED
report() {
  if [ "$4" = - ]; then
    printf '  %-52s every request refused (%s of %s)\n' "$1" "$6" "$rounds"
    return
  fi
  printf '  %-52s median %7.3f (%sx)  p99 %7.3f (%sx)%s\n' "$1" "$4" "$(ratio "$4" "$2")" \
    "$5" "$(ratio "$5" "$3")" "$([ "$6" = 0 ] || echo ", $6 refused")"
}

"$pnsctl" status >/dev/null
echo "root's pnsctl status, $rounds rounds each (ms; ratio against no flood, measured just before):"
# Each flood is measured right after a baseline of its own: other work on the machine moves
# the figures more between minutes than between neighbouring measures.
run_flood() {
  local label=$1
  shift
  read -r base_med base_p99 _ < <(measure)
  start_flood "$@"
  read -r med p99 failed < <(measure)
  stop_flood
  printf '  %-52s median %7.3f  p99 %7.3f\n' "no flood" "$base_med" "$base_p99"
  report "$label" "$base_med" "$base_p99" "$med" "$p99" "$failed"
}
run_flood "uid 4242 opens $everything connections, then loops" hold "$PNS_SOCKET" "$everything"
run_flood "uid 4242 trickles a byte/2 s on $everything connections" trickle "$PNS_SOCKET" "$everything" 2000
run_flood "uid 4242 sends status on $share connections" requests "$PNS_SOCKET" "$share"
