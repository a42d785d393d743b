#!/usr/bin/env bash
# The `strom bench` matrix of docs/PERFORMANCE.md, in one command:
#
#   scripts/bench-matrix.sh            # full matrix, ~8 minutes
#   SIZES=256 CONCS=128 scripts/bench-matrix.sh   # a subset
#
# 1. Builds the release binary (unless STROM_BIN points at one), starts its own broker on
#    free ports with a fresh data directory under a temp dir (removed at the end).
# 2. Measures the disk ceiling in that same directory: raw write+fdatasync bandwidth and
#    the p50 of one write+fdatasync (`strom log-bench`'s raw baseline).
# 3. Produce runs for every message size x concurrency x acks x flush policy, each on its
#    own fresh topic (flush.policy=never through a topic config), then end-to-end latency
#    (`--mode roundtrip`) at 50% of the peak measured for each size (concurrency 128,
#    acks=all, flush always).
# 4. Prints markdown tables. Every row says whether the broker stored exactly what it
#    acknowledged (the bench's own check: growth of the high watermarks); a row that is
#    not consistent makes the script exit non-zero.
#
# Settings (environment): SIZES, CONCS, ACKS_LIST, FLUSH_LIST, DURATION (5s), WARMUP (1s),
# PARTITIONS (4), LINGER_MS (0: librdkafka sends as soon as it can; its default of 5 ms
# throttles a closed loop), E2E (1: run the roundtrip rows), OUT_DIR (keep the JSON results
# there). Run it on a quiet machine: the load average is printed next to every row.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"100 256 1024 16384"}
CONCS=${CONCS:-"1 16 128"}
ACKS_LIST=${ACKS_LIST:-"1 all"}
FLUSH_LIST=${FLUSH_LIST:-"always never"}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
PARTITIONS=${PARTITIONS:-4}
LINGER_MS=${LINGER_MS:-0}
E2E=${E2E:-1}

if [[ -z "${STROM_BIN:-}" ]]; then
    cargo build --release --locked -p strom >&2
    STROM_BIN=target/release/strom
fi
command -v jq >/dev/null || { echo "bench-matrix: needs jq" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-bench-matrix.XXXXXX")
OUT_DIR=${OUT_DIR:-$WORK/results}
mkdir -p "$OUT_DIR"
BROKER_PID=""
cleanup() {
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK/data" "$WORK"/strom-log-bench-*
    [[ "$OUT_DIR" == "$WORK/results" ]] && rm -rf "$WORK"
    return 0
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
load() { cut -d' ' -f1 /proc/loadavg; }

PORT=$(free_port)
METRICS_PORT=$(free_port)
BOOT=127.0.0.1:$PORT

echo "# strom bench matrix" 
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) cpus ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -h | awk '/Mem:/{print $2}') RAM, kernel $(uname -r)"
echo "- data dir: $WORK on $(df --output=source,fstype "$WORK" | tail -1 | xargs)"
echo "- binary: $STROM_BIN ($("$STROM_BIN" --version))"
echo "- bench: $PARTITIONS partitions, 1 librdkafka producer, linger.ms=$LINGER_MS, other librdkafka settings default (batch.size 1000000, no compression, not idempotent), duration $DURATION after $WARMUP warmup"
echo

# Disk ceiling, in the directory the broker will use.
"$STROM_BIN" log-bench --dir "$WORK" --duration 2s --appenders 64 --reopen-partitions 0 --json > "$OUT_DIR/disk.json" 2>/dev/null
CEIL_MBS=$(jq '.baseline_mb_per_s' "$OUT_DIR/disk.json")
FSYNC_P50=$(jq '.baseline_fdatasync_p50_ms' "$OUT_DIR/disk.json")
printf -- '- disk ceiling (raw write+fdatasync of 16 KiB batches, same directory): %.1f MB/s; one write+fdatasync p50 %.3f ms\n\n' "$CEIL_MBS" "$FSYNC_P50"

"$STROM_BIN" serve --data-dir "$WORK/data" --listen "$BOOT" --metrics-listen "127.0.0.1:$METRICS_PORT" > "$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do
    curl -sf "127.0.0.1:$METRICS_PORT/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "127.0.0.1:$METRICS_PORT/health" >/dev/null || { echo "bench-matrix: broker did not start" >&2; cat "$WORK/broker.log" >&2; exit 1; }

FAILED=0
N=0
declare -A PEAK

run_bench() { # name topic args... -> json in $OUT_DIR/name.json
    local name=$1
    shift
    if ! "$STROM_BIN" bench -b "$BOOT" "$@" --warmup "$WARMUP" --duration "$DURATION" \
        --linger-ms "$LINGER_MS" --json > "$OUT_DIR/$name.json" 2> "$OUT_DIR/$name.err"; then
        echo "bench-matrix: run $name failed: $(tail -3 "$OUT_DIR/$name.err")" >&2
        FAILED=1
        return 1
    fi
    if [[ $(jq '.verification.consistent' "$OUT_DIR/$name.json") != true ]]; then
        FAILED=1
    fi
}

echo "| size | conc | acks | flush | msg/s | MB/s | of disk ceiling | p50 ms | p99 ms | p99.9 ms | stored / acknowledged | load |"
echo "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
for flush in $FLUSH_LIST; do
    for size in $SIZES; do
        for acks in $ACKS_LIST; do
            for conc in $CONCS; do
                N=$((N + 1))
                topic="m$N-$size-$conc-$acks-$flush"
                "$STROM_BIN" topic create -b "$BOOT" -p "$PARTITIONS" -c "flush.policy=$flush" "$topic" >/dev/null
                l=$(load)
                run_bench "$topic" --topic "$topic" --concurrency "$conc" --message-size "$size" --acks "$acks" || continue
                f="$OUT_DIR/$topic.json"
                jq -r --arg size "$size" --arg flush "$flush" --arg load "$l" --argjson ceil "$CEIL_MBS" '
                    "| \($size) | \(.params.concurrency) | \(.params.acks) | \($flush) | \(.produce.msgs_per_sec | floor) | \(.produce.mb_per_sec * 10 | round / 10) | \(.produce.mb_per_sec / $ceil * 1000 | round / 10)% | \(.produce_latency.p50_ms) | \(.produce_latency.p99_ms) | \(.produce_latency.p999_ms) | \(.verification.stored) / \(.verification.acknowledged) \(if .verification.consistent then "consistent" else "**INCONSISTENT**" end) | \($load) |"' "$f"
                if [[ $flush == always && $acks == all && $conc == 128 ]]; then
                    PEAK[$size]=$(jq '.produce.msgs_per_sec | floor' "$f")
                fi
            done
        done
    done
done

if [[ $E2E == 1 ]]; then
    echo
    echo "End-to-end latency (produce to consume, \`--mode roundtrip\`, 1 consumer) at 50% of the peak above (concurrency 128, acks=all, flush always); latency counts from each message's intended send time:"
    echo
    echo "| size | rate msg/s | achieved msg/s | produce p50 / p99 ms | end-to-end p50 / p99 / p99.9 / max ms | stored / acknowledged | load |"
    echo "| ---: | ---: | ---: | --- | --- | --- | ---: |"
    for size in $SIZES; do
        peak=${PEAK[$size]:-}
        [[ -z "$peak" ]] && continue
        rate=$((peak / 2))
        topic="e2e-$size"
        "$STROM_BIN" topic create -b "$BOOT" -p "$PARTITIONS" -c "flush.policy=always" "$topic" >/dev/null
        l=$(load)
        run_bench "$topic" --topic "$topic" --mode roundtrip --rate "$rate" --concurrency 128 --message-size "$size" --acks all || continue
        jq -r --arg size "$size" --arg rate "$rate" --arg load "$l" '
            "| \($size) | \($rate) | \(.produce.msgs_per_sec | floor) | \(.produce_latency.p50_ms) / \(.produce_latency.p99_ms) | \(.end_to_end_latency.p50_ms) / \(.end_to_end_latency.p99_ms) / \(.end_to_end_latency.p999_ms) / \(.end_to_end_latency.max_ms) | \(.verification.stored) / \(.verification.acknowledged) \(if .verification.consistent then "consistent" else "**INCONSISTENT**" end) | \($load) |"' "$OUT_DIR/$topic.json"
    done
fi

if [[ $FAILED != 0 ]]; then
    echo "bench-matrix: some runs failed or were not consistent (results in $OUT_DIR)" >&2
    exit 1
fi
