#!/usr/bin/env bash
# What durability costs as partitions grow (issue 12), in one command:
#
#   scripts/bench-partitions.sh                       # ~10 minutes
#   PARTS="1 16" VARIANTS=journal scripts/bench-partitions.sh
#
# For each variant of the broker — `journal` (the node journal, the default) and
# `per-partition` (journal = false: each partition fsyncs its own segment, as before the
# journal) — a broker is started on a fresh data directory, and for every partition count
# in PARTS a topic with flush.policy=always and one with flush.policy=never are benchmarked
# back to back with the bench's own client (256 B incompressible payloads, acks=all,
# concurrency 128, one producer; then 4 producers x 32 in flight). The ratio always/never
# at the same partition count, in the same minute, is the durability cost. Every row ends
# with the bench's own check that the broker stored exactly what it acknowledged.
#
# Then 16 KiB messages at 64 partitions (flush always) against the raw write+fdatasync
# bandwidth of the same directory (`strom log-bench`'s baseline, 64 KiB writes), and the
# 1-partition `always` rows of both variants again, alternating, so the single-partition
# figure is compared within the same minutes.
#
# Settings (environment): PARTS ("1 16 256 1000"), VARIANTS ("journal per-partition"),
# DURATION (6s), WARMUP (2s), STROM_BIN (a built binary; default: build release).
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS=${PARTS:-"1 16 256 1000"}
VARIANTS=${VARIANTS:-"journal per-partition"}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
if [[ -z "${STROM_BIN:-}" ]]; then
    cargo build --release --locked -p strom >&2
    STROM_BIN=target/release/strom
fi
command -v jq >/dev/null || { echo "bench-partitions: needs jq" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-bench-partitions.XXXXXX")
BROKER_PID=""
stop_broker() {
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
trap 'stop_broker; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1 /proc/loadavg; }
N=0

start_broker() { # variant
    stop_broker
    rm -rf "$WORK/data"
    local journal=true
    [[ $1 == per-partition ]] && journal=false
    printf 'journal = %s\n' "$journal" > "$WORK/strom.toml"
    PORT=$(free_port)
    METRICS_PORT=$(free_port)
    BOOT=127.0.0.1:$PORT
    "$STROM_BIN" serve --config "$WORK/strom.toml" --data-dir "$WORK/data" --listen "$BOOT" \
        --metrics-listen "127.0.0.1:$METRICS_PORT" > "$WORK/broker-$1.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 200); do
        curl -sf "127.0.0.1:$METRICS_PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench-partitions: broker did not start" >&2
    cat "$WORK/broker-$1.log" >&2
    exit 1
}

bench() { # variant partitions flush size producers -> one table row
    local variant=$1 parts=$2 flush=$3 size=$4 producers=$5
    N=$((N + 1))
    local topic="b$N-$parts-$flush"
    sync
    "$STROM_BIN" topic create -b "$BOOT" -p "$parts" -c "flush.policy=$flush" "$topic" >/dev/null
    local l
    l=$(load)
    "$STROM_BIN" bench -b "$BOOT" --topic "$topic" --concurrency 128 --producers "$producers" --message-size "$size" \
        --acks all --warmup "$WARMUP" --duration "$DURATION" --json > "$WORK/$topic.json" 2> "$WORK/$topic.err" || {
        echo "bench-partitions: $topic failed: $(tail -3 "$WORK/$topic.err")" >&2
        return 1
    }
    jq -r --arg v "$variant" --arg p "$parts" --arg f "$flush" --arg s "$size" --arg pr "$producers" --arg load "$l" '
        "| \($v) | \($p) | \($s) | \($pr) x \(128 / ($pr | tonumber)) | \($f) | \(.produce.msgs_per_sec | floor) | \(.produce.mb_per_sec * 10 | round / 10) | \(.produce_latency.p50_ms) | \(.produce_latency.p99_ms) | \(.verification.stored) / \(.verification.acknowledged) \(if .verification.consistent then "consistent" else "**INCONSISTENT**" end) | \($load) |"' \
        "$WORK/$topic.json"
}

echo "# strom bench: durability cost by partition count"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cpus ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -h | awk '/Mem:/{print $2}') RAM, kernel $(uname -r)"
echo "- data dir: $WORK on $(df --output=source,fstype "$WORK" | tail -1 | xargs); binary $STROM_BIN ($("$STROM_BIN" --version))"
echo "- bench: acks=all, 128 in flight (closed loop), linger 0, incompressible payloads, $DURATION after $WARMUP warmup"
"$STROM_BIN" log-bench --dir "$WORK" --duration 2s --appenders 64 --batch-bytes 65536 --reopen-partitions 0 --json \
    > "$WORK/disk.json" 2>/dev/null
printf -- '- disk: raw write+fdatasync of 64 KiB writes in the same directory: %.1f MB/s\n\n' "$(jq '.baseline_mb_per_s' "$WORK/disk.json")"
echo "| variant | partitions | size | producers x in flight | flush | msg/s | MB/s | p50 ms | p99 ms | stored / acknowledged | load |"
echo "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"
for variant in $VARIANTS; do
    start_broker "$variant"
    for parts in $PARTS; do
        bench "$variant" "$parts" always 256 1
        bench "$variant" "$parts" never 256 1
        bench "$variant" "$parts" always 256 4
        bench "$variant" "$parts" never 256 4
    done
    bench "$variant" 64 always 16384 1
done
# The single-partition figure again, alternating the variants within the same minutes.
for round in 1 2; do
    for variant in $VARIANTS; do
        start_broker "$variant"
        bench "$variant" 1 always 256 1
    done
done
stop_broker
