#!/usr/bin/env bash
# What one node pays per partition (issue 12), in one command:
#
#   scripts/bench-scale.sh                 # 10,000 partitions, ~3 minutes
#   PARTITIONS=2000 scripts/bench-scale.sh
#
# Starts `strom serve` on a fresh data directory and measures, with the broker's own
# process figures (/proc/<pid>/status VmRSS, /proc/<pid>/fd, threads):
# 1. the idle broker; then a topic of PARTITIONS partitions created in one CreateTopics
#    request (its duration), and the broker again: memory, descriptors and threads per
#    idle partition;
# 2. a Metadata request for all of them (`strom topic list`, librdkafka), timed;
# 3. data in every partition (`strom bench` at a low rate on that topic), then produce spread
#    over 1,000 partitions at a low rate (1,000 msg/s, acks=all): latency percentiles;
# 4. a clean restart (SIGTERM, start, ready) and an unclean one (kill -9, start, ready),
#    timed until the broker answers /health.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTITIONS=${PARTITIONS:-10000}
if [[ -z "${STROM_BIN:-}" ]]; then
    cargo build --release --locked -p strom >&2
    STROM_BIN=target/release/strom
fi
command -v jq >/dev/null || { echo "bench-scale: needs jq" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-bench-scale.XXXXXX")
PID=""
trap '[[ -n "$PID" ]] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
MPORT=$(free_port)
BOOT=127.0.0.1:$PORT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

start() { # sets PID and READY_S (seconds until /health answers); not in a $( ) subshell, so PID sticks
    local t0
    t0=$(now)
    "$STROM_BIN" serve --data-dir "$WORK/data" --listen "$BOOT" --metrics-listen "127.0.0.1:$MPORT" \
        >> "$WORK/broker.log" 2>&1 &
    PID=$!
    for _ in $(seq 6000); do
        curl -sf "127.0.0.1:$MPORT/health" >/dev/null 2>&1 && { READY_S=$(since "$t0"); return 0; }
        sleep 0.02
    done
    echo "bench-scale: broker not ready" >&2
    tail -20 "$WORK/broker.log" >&2
    exit 1
}

proc() { # rss_kib fds threads
    echo "$(awk '/^VmRSS/{print $2}' "/proc/$PID/status") $(ls "/proc/$PID/fd" | wc -l) $(awk '/^Threads/{print $2}' "/proc/$PID/status")"
}

echo "# strom: cost per partition on one node"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cpus, $(free -h | awk '/Mem:/{print $2}') RAM, kernel $(uname -r); data dir on $(df --output=source,fstype "$WORK" | tail -1 | xargs)"
echo "- binary: $STROM_BIN ($("$STROM_BIN" --version)); open-file limit $(ulimit -n)"
echo
start
read -r rss0 fd0 th0 <<< "$(proc)"
t0=$(now)
"$STROM_BIN" topic create -b "$BOOT" --timeout 600s -p "$PARTITIONS" many > /dev/null
create_s=$(since "$t0")
read -r rss1 fd1 th1 <<< "$(proc)"
printf -- '- idle broker: %d KiB resident, %d open descriptors, %d threads\n' "$rss0" "$fd0" "$th0"
printf -- '- CreateTopics of %d partitions: %.1f s\n' "$PARTITIONS" "$create_s"
printf -- '- with %d idle partitions: %d KiB resident (%.1f KiB per partition), %d descriptors (%.2f per partition), %d threads\n' \
    "$PARTITIONS" "$rss1" "$(echo "($rss1 - $rss0) / $PARTITIONS" | bc -l)" "$fd1" "$(echo "($fd1 - $fd0) / $PARTITIONS" | bc -l)" "$th1"
t0=$(now)
"$STROM_BIN" topic list -b "$BOOT" --timeout 120s --output json > "$WORK/list.json"
printf -- '- Metadata for all partitions (`strom topic list`, one librdkafka metadata request and the listing): %.2f s, %s partitions listed\n' \
    "$(since "$t0")" "$(jq '[.[] | .partitions] | add' "$WORK/list.json")"
# librdkafka's producer thread walks every partition it holds on each wake-up, so at 10,000
# partitions the client (not the broker) tops out near 3,500 single-message requests a second:
# the fill lingers 20 ms so one request carries many partitions' batches.
"$STROM_BIN" bench -b "$BOOT" --topic many --rate 2000 --linger-ms 20 --concurrency 256 --message-size 256 \
    --acks all --warmup 0s --duration 10s --json > "$WORK/fill.json" 2>/dev/null
read -r rss2 fd2 th2 <<< "$(proc)"
printf -- '- after %s messages spread over them (2,000 msg/s for 10 s, linger 20 ms): %d KiB resident, %d descriptors, %d threads; %s\n' \
    "$(jq '.produce.messages' "$WORK/fill.json")" "$rss2" "$fd2" "$th2" \
    "$(jq -r '"stored / acknowledged \(.verification.stored) / \(.verification.acknowledged)"' "$WORK/fill.json")"
"$STROM_BIN" topic create -b "$BOOT" -p 1000 thousand > /dev/null
"$STROM_BIN" bench -b "$BOOT" --topic thousand --rate 1000 --concurrency 64 --message-size 256 --acks all \
    --warmup 2s --duration 15s --json > "$WORK/low.json" 2>/dev/null
jq -r '"- produce over 1,000 partitions at 1,000 msg/s, acks=all: achieved \(.produce.msgs_per_sec | floor) msg/s, latency p50 \(.produce_latency.p50_ms) ms, p99 \(.produce_latency.p99_ms) ms, p99.9 \(.produce_latency.p999_ms) ms; stored / acknowledged \(.verification.stored) / \(.verification.acknowledged)"' "$WORK/low.json"
top -b -n 1 -p "$PID" | tail -1 | awk '{print "- broker CPU in that moment (top): " $9 "%"}'
kill -TERM "$PID"
t0=$(now)
wait "$PID" 2>/dev/null || true
printf -- '- clean shutdown (SIGTERM to exit): %.1f s\n' "$(since "$t0")"
start
printf -- '- start after a clean shutdown, until ready: %.1f s\n' "$READY_S"
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
start
printf -- '- start after kill -9, until ready: %.1f s\n' "$READY_S"
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=""
