#!/usr/bin/env bash
# Regenerates the fuzz seed corpora (fuzz/corpus/<target>/) from real traffic:
#  - request_frame: every request frame librdkafka (kcat, the strom CLI and bench),
#    kafka-python and kafkajs send in the compatibility scenarios, recorded by a proxy
#    (scripts/fuzz/capture.py) in front of a broker that advertises the proxy;
#  - record_batch and recovery: the batches and segment files that traffic left on disk;
#  - wire_frame, raft_log and state_machine: a 3-node cluster's internal frames (recorded by
#    a proxy in front of each internal listener), Raft log files and snapshots.
# Needs what scripts/compat/install.sh installs. Seeds over 64 KiB are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CORPUS="${FUZZ_CORPUS:-$ROOT/fuzz/corpus}"
TMP="$(mktemp -d -t strom-seeds-XXXXXX)"
PIDS=()
cleanup() { local rc=$?; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; if (( rc )); then echo "failed; logs kept in $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
cargo build -q -p strom
STROM="$ROOT/target/debug/strom"
# The interpreter itself, not a version-manager shim (a shim can take seconds per start).
PY="$(python3 -c 'import sys; print(sys.executable)')"
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until something listens on 127.0.0.1:$1.
wait_port() { for _ in $(seq 400); do "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }
wait_ready() { for _ in $(seq 400); do [[ -s "$1" ]] && return 0; sleep 0.05; done; echo "not ready: $1" >&2; exit 1; }
mkdir -p "$CORPUS"/{request_frame,record_batch,recovery,wire_frame,raft_log,state_machine}

# --- One broker behind the capturing proxy, driven by every client.
BPORT=$(port); PPORT=$(port)
"$STROM" serve --listen "127.0.0.1:$BPORT" --advertised-address "127.0.0.1:$PPORT" --data-dir "$TMP/data" \
    --ready-file "$TMP/ready" --metrics-listen "" >"$TMP/broker.log" 2>&1 &
PIDS+=($!)
wait_ready "$TMP/ready"
"$PY" scripts/fuzz/capture.py "$PPORT" "127.0.0.1:$BPORT" "$TMP/frames" &
PIDS+=($!)
wait_port "$PPORT"
B="127.0.0.1:$PPORT"
python3 scripts/compat/python_client.py "$B" >/dev/null
python3 scripts/compat/groups_kafka_python.py "$B" >/dev/null
KAFKAJS_DIR="$TMP/kafkajs"
mkdir -p "$KAFKAJS_DIR" && (cd "$KAFKAJS_DIR" && npm install --silent --no-audit --no-fund --no-save kafkajs@2.2.4 >/dev/null)
KAFKAJS_DIR="$KAFKAJS_DIR/node_modules" node scripts/compat/kafkajs_client.mjs "$B" >/dev/null
seq 1 200 | kcat -b "$B" -P -t seeds-kcat -K: -z snappy 2>/dev/null || seq 1 200 | kcat -b "$B" -P -t seeds-kcat
kcat -b "$B" -C -t seeds-kcat -e -q >/dev/null
kcat -b "$B" -L >/dev/null
"$STROM" topic create seeds-cli -b "$B" --partitions 2 --config retention.ms=86400000 >/dev/null
printf 'a\nb\nc\n' | "$STROM" produce seeds-cli -b "$B" >/dev/null
"$STROM" consume seeds-cli -b "$B" --from-beginning --count 3 >/dev/null || true
"$STROM" topic describe seeds-cli -b "$B" >/dev/null
for codec in none gzip snappy lz4 zstd; do
    "$STROM" bench -b "$B" --topic "seeds-$codec" --create-topic --messages 500 --message-size 100 \
        --compression "$codec" --idempotent --acks all >/dev/null
done
kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; PIDS=()

"$PY" scripts/fuzz/seeds.py client "$TMP" "$CORPUS"

# --- A 3-node cluster whose internal traffic goes through capturing proxies.
CLUSTER="seeds-$RANDOM"
VOTERS=""; declare -a IPORT PXPORT KPORT
for i in 1 2 3; do IPORT[$i]=$(port); PXPORT[$i]=$(port); KPORT[$i]=$(port); VOTERS+="${VOTERS:+,}$i@127.0.0.1:${PXPORT[$i]}"; done
for i in 1 2 3; do
    "$PY" scripts/fuzz/capture.py "${PXPORT[$i]}" "127.0.0.1:${IPORT[$i]}" "$TMP/internal" --raw &
    PIDS+=($!)
done
for i in 1 2 3; do wait_port "${PXPORT[$i]}"; done
for i in 1 2 3; do
    "$STROM" serve --node-id "$i" --listen "127.0.0.1:${KPORT[$i]}" --data-dir "$TMP/node$i" --metrics-listen "" \
        --cluster-id "$CLUSTER" --voters "$VOTERS" --internal-listen "127.0.0.1:${IPORT[$i]}" \
        --ready-file "$TMP/ready$i" >"$TMP/node$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 1 2 3; do wait_ready "$TMP/ready$i"; done
"$STROM" topic create seeds-cluster --timeout 60s -b "127.0.0.1:${KPORT[1]}" --partitions 3 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
"$STROM" bench --timeout 60s -b "127.0.0.1:${KPORT[2]}" --topic seeds-cluster --messages 300 --message-size 100 --acks all >/dev/null
"$STROM" topic delete seeds-cluster --timeout 60s -b "127.0.0.1:${KPORT[3]}" >/dev/null || true
kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; PIDS=()
"$PY" scripts/fuzz/seeds.py cluster "$TMP" "$CORPUS"
for t in request_frame record_batch recovery wire_frame raft_log state_machine; do
    echo "$t: $(ls "$CORPUS/$t" | wc -l) seeds"
done
