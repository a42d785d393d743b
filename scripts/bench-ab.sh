#!/usr/bin/env bash
# Two builds of strom, alternating within the same minutes (one command):
#
#   OLD_BIN=/tmp/strom-old NEW_BIN=target/release/strom scripts/bench-ab.sh
#
# For ROUNDS rounds (3), each build in turn starts on a fresh data directory and runs the
# produce bench (256 B, 128 in flight, acks=all, flush.policy=always, 6 s after 2 s warmup)
# on one topic per count in PARTS ("1 16"). Prints one table row per run: round, build,
# partitions, msg/s, p50 ms, p99 ms, stored == acknowledged.
set -euo pipefail
: "${OLD_BIN:?set OLD_BIN}" "${NEW_BIN:?set NEW_BIN}"
W=$(mktemp -d "${TMPDIR:-/tmp}/strom-ab.XXXX")
trap 'rm -rf "$W"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for round in $(seq "${ROUNDS:-3}"); do
  for v in old new; do
    BIN=$OLD_BIN; [[ $v == new ]] && BIN=$NEW_BIN
    rm -rf $W/data; P=$(free_port); M=$(free_port)
    $BIN serve --data-dir $W/data --listen 127.0.0.1:$P --metrics-listen 127.0.0.1:$M > $W/log 2>&1 & PID=$!
    for _ in $(seq 100); do curl -sf 127.0.0.1:$M/health >/dev/null 2>&1 && break; sleep 0.1; done
    for parts in ${PARTS:-1 16}; do
      sync
      $BIN topic create -b 127.0.0.1:$P -p $parts -c flush.policy=always t$parts >/dev/null
      $BIN bench -b 127.0.0.1:$P --topic t$parts --concurrency 128 --message-size 256 --acks all --warmup 2s --duration 6s --json 2>/dev/null \
        | jq -r --arg v $v --arg p $parts --arg r $round '"| \($r) | \($v) | \($p) | \(.produce.msgs_per_sec|floor) | \(.produce_latency.p50_ms) | \(.produce_latency.p99_ms) | \(.verification.consistent) |"'
    done
    kill $PID; wait $PID 2>/dev/null || true
  done
done
