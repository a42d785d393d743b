#!/usr/bin/env bash
# What broker-side recompression (topic compression.type other than `producer`) and
# LogAppendTime cost: each case on a fresh single-node broker and a fresh topic, the bench's
# own closed-loop producer (256 B incompressible payloads, acks=all, flush always), alternating
# cases ROUNDS times. Reports msg/s and the broker's CPU time per message (utime + stime from
# /proc, over the whole run), so the cost shows even where the client, not the broker, bounds
# the rate on this 2-core machine.
#
#   STROM_BIN=target/release/strom scripts/bench-recompress.sh
#   (DURATION=6s CONCURRENCY=128 ROUNDS=2 SIZE=256)
set -euo pipefail
cd "$(dirname "$0")/.."
STROM_BIN="${STROM_BIN:-target/release/strom}"
DURATION="${DURATION:-6s}"
CONCURRENCY="${CONCURRENCY:-128}"
ROUNDS="${ROUNDS:-2}"
SIZE="${SIZE:-256}"
TMP="$(mktemp -d -t strom-recompress-XXXXXX)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
TICKS=$(getconf CLK_TCK)

# name | topic configs | producer compression
CASES=(
    "baseline|compression.type=producer|none"
    "topic zstd, producer none|compression.type=zstd|none"
    "topic lz4, producer none|compression.type=lz4|none"
    "topic gzip, producer none|compression.type=gzip|none"
    "topic producer, producer zstd|compression.type=producer|zstd"
    "topic uncompressed, producer zstd|compression.type=uncompressed|zstd"
    "LogAppendTime|message.timestamp.type=LogAppendTime|none"
)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '| case | msg/s | p99 ms | broker CPU µs/msg |\n| --- | ---: | ---: | ---: |\n'
for round in $(seq "$ROUNDS"); do
    for case in "${CASES[@]}"; do
        IFS='|' read -r name configs codec <<<"$case"
        rm -rf "$TMP/data" "$TMP/ready"
        "$STROM_BIN" serve --listen 127.0.0.1:0 --data-dir "$TMP/data" --ready-file "$TMP/ready" --metrics-listen "" \
            >"$TMP/broker.log" 2>&1 &
        PID=$!
        for _ in $(seq 200); do [[ -s "$TMP/ready" ]] && break; sleep 0.05; done
        BOOT="$(head -n1 "$TMP/ready")"
        args=()
        for c in ${configs//,/ }; do args+=(--config "$c"); done
        "$STROM_BIN" topic create bench --bootstrap-servers "$BOOT" "${args[@]}" >/dev/null
        before=$(cpu_ticks "$PID")
        out="$("$STROM_BIN" bench --bootstrap-servers "$BOOT" --topic bench --mode produce --duration "$DURATION" \
            --warmup 2s --concurrency "$CONCURRENCY" --message-size "$SIZE" --acks all --compression "$codec" --json)"
        after=$(cpu_ticks "$PID")
        kill "$PID"; wait "$PID" 2>/dev/null || true
        python3 - "$name" "$out" "$before" "$after" "$TICKS" <<'EOF'
import json, sys
name, out, before, after, ticks = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rate = out["produce"]["msgs_per_sec"]
p99 = out["produce_latency"]["p99_ms"]
acked = out["acknowledged"]  # warmup included, as is the CPU time
assert out["verification"]["consistent"], f"{name}: stored != acknowledged"
per_msg = (after - before) / ticks * 1e6 / acked
print(f"| {name} | {rate:,.0f} | {p99:.2f} | {per_msg:.2f} |")
EOF
    done
done
