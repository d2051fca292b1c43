# Shared by the bench scripts (sourced): a temporary work directory and a pnsd of the bench's
# own, in a mount namespace of its own (a slave of this one), so its views and pins go away
# with it and the machine's mount propagation is left as it is. Sets $work, $pid, PNS_SOCKET.

# bench_start_pnsd PNSD   (extra pnsd options in the array BENCH_PNSD_ARGS, if set)
# The bench's pnsd pins its tracker in a directory of its own, removed by bench_cleanup (a
# pnsd leaves its pins behind on purpose: tracking goes on while it is down).
BENCH_BPF_DIR=/sys/fs/bpf/pnsbench$$
BENCH_PNSD_ARGS=(${BENCH_PNSD_ARGS[@]+"${BENCH_PNSD_ARGS[@]}"})
bench_start_pnsd() {
  work=$(mktemp -d /tmp/pns-bench.XXXXXX)
  chmod 755 "$work"
  pid=
  trap bench_cleanup EXIT
  export PNS_SOCKET=$work/pnsd.sock
  unshare --mount --propagation slave \
    "$1" --socket "$PNS_SOCKET" --state-dir "$work/state" --runtime-dir "$work/run" \
    --log-level warn --bpf-dir "$BENCH_BPF_DIR" ${BENCH_PNSD_ARGS[@]+"${BENCH_PNSD_ARGS[@]}"} \
    2>"$work/pnsd.log" &
  pid=$!
  for _ in $(seq 200); do [ -S "$PNS_SOCKET" ] && return 0; sleep 0.05; done
  echo "bench: pnsd did not start" >&2
  cat "$work/pnsd.log" >&2
  exit 1
}

bench_cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
  rm -rf "$BENCH_BPF_DIR"
  # A bench's own cleanup, if it defines one.
  if declare -F bench_extra_cleanup >/dev/null; then bench_extra_cleanup; fi
  return 0
}
