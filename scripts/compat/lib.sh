# Shared helpers for the compatibility checks: build strom, start a broker on a free
# 127.0.0.1 port with a temporary data directory, stop it on exit. Source this file.
#
# STROM_COMPAT_NODES=3 runs every check against a 3-node Strom cluster instead (separate data
# directories, internal ports picked once and kept across restarts); BOOTSTRAP is then one
# node only (node 2, not the first started), so the clients find the rest themselves.
set -euo pipefail
STROM_COMPAT_NODES="${STROM_COMPAT_NODES:-1}"
# The node id BOOTSTRAP points at.
BOOTSTRAP_NODE=1
(( STROM_COMPAT_NODES > 1 )) && BOOTSTRAP_NODE=2
NODE_PIDS=()
CLUSTER_VOTERS=""
INTERNAL_PORTS=()

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STROM_BIN="${STROM_BIN:-$REPO_ROOT/target/debug/strom}"
COMPAT_TMP="$(mktemp -d -t strom-compat-XXXXXX)"
BROKER_PID=""

compat_cleanup() {
    local pid
    for pid in "$BROKER_PID" "${NODE_PIDS[@]}"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "${STROM_COMPAT_KEEP:-}" ]]; then echo "kept $COMPAT_TMP" >&2; else rm -rf "$COMPAT_TMP"; fi
}
trap compat_cleanup EXIT

# Builds the strom binary unless STROM_BIN points at an existing one.
build_strom() {
    if [[ -z "${STROM_SKIP_BUILD:-}" ]]; then
        (cd "$REPO_ROOT" && cargo build -q -p strom)
    fi
    [[ -x "$STROM_BIN" ]] || { echo "FAIL: $STROM_BIN not found" >&2; exit 1; }
}

# Starts `strom serve` on a free port; sets BOOTSTRAP. Fails with the broker log if it does
# not become ready within 60 s.
start_broker() {
    if (( STROM_COMPAT_NODES > 1 )); then start_cluster; return; fi
    local ready="$COMPAT_TMP/ready"
    rm -f "$ready"
    "$STROM_BIN" serve --listen 127.0.0.1:0 --data-dir "$COMPAT_TMP/data" --ready-file "$ready" --metrics-listen 127.0.0.1:0 \
        >"$COMPAT_TMP/broker.log" 2>&1 &
    BROKER_PID=$!
    local deadline=$((SECONDS + 60))
    until [[ -s "$ready" ]]; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "FAIL: strom serve exited during startup:" >&2; cat "$COMPAT_TMP/broker.log" >&2; exit 1
        fi
        if (( SECONDS >= deadline )); then
            echo "FAIL: strom serve not ready in 60 s:" >&2; cat "$COMPAT_TMP/broker.log" >&2; exit 1
        fi
        sleep 0.05
    done
    BOOTSTRAP="$(head -n1 "$ready")"
    echo "broker: pid $BROKER_PID at $BOOTSTRAP (data in $COMPAT_TMP/data)"
}

# A free 127.0.0.1 port (bound and released: the internal listeners' addresses must be known
# before any node starts, as every node's voter list names them). Taken below the kernel's
# ephemeral range, so that no outgoing connection (the nodes' own, between picking and
# binding) can be handed the same port.
pick_port() {
    python3 -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(1000):
    port = random.randrange(max(1024, low - 12000), low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
'
}

# Starts (or restarts, on the same data directories and internal ports) an N-node cluster;
# sets BOOTSTRAP to node 2's Kafka address and waits until its Metadata lists every broker.
start_cluster() {
    local n="$STROM_COMPAT_NODES" i
    if [[ -z "$CLUSTER_VOTERS" ]]; then
        for i in $(seq 1 "$n"); do
            INTERNAL_PORTS[$i]="$(pick_port)"
            CLUSTER_VOTERS+="${CLUSTER_VOTERS:+,}$i@127.0.0.1:${INTERNAL_PORTS[$i]}"
        done
    fi
    NODE_PIDS=()
    for i in $(seq 1 "$n"); do
        rm -f "$COMPAT_TMP/ready-$i"
        "$STROM_BIN" serve --node-id "$i" --listen 127.0.0.1:0 --data-dir "$COMPAT_TMP/data-$i" \
            --ready-file "$COMPAT_TMP/ready-$i" --metrics-listen 127.0.0.1:0 --cluster-id strom-compat \
            --voters "$CLUSTER_VOTERS" --internal-listen "127.0.0.1:${INTERNAL_PORTS[$i]}" \
            >>"$COMPAT_TMP/broker-$i.log" 2>&1 &
        NODE_PIDS+=("$!")
    done
    local deadline=$((SECONDS + 60))
    for i in $(seq 1 "$n"); do
        until [[ -s "$COMPAT_TMP/ready-$i" ]]; do
            if ! kill -0 "${NODE_PIDS[$((i - 1))]}" 2>/dev/null; then
                echo "FAIL: node $i exited during startup:" >&2; cat "$COMPAT_TMP/broker-$i.log" >&2; exit 1
            fi
            (( SECONDS < deadline )) || { echo "FAIL: node $i not ready in 60 s" >&2; cat "$COMPAT_TMP/broker-$i.log" >&2; exit 1; }
            sleep 0.05
        done
    done
    BOOTSTRAP="$(head -n1 "$COMPAT_TMP/ready-2")"
    # Every broker registered and unfenced: every node lists all of them (a node lists
    # itself even while fenced, so one node's view is not enough).
    for i in $(seq 1 "$n"); do
        until "$STROM_BIN" cluster info -b "$(head -n1 "$COMPAT_TMP/ready-$i")" --output json 2>/dev/null \
            | python3 -c "import json,sys; i=json.load(sys.stdin); sys.exit(0 if len(i['brokers']) == $n else 1)" 2>/dev/null; do
            (( SECONDS < deadline )) || { echo "FAIL: node $i did not list $n brokers in 60 s" >&2; tail -20 "$COMPAT_TMP"/broker-*.log >&2; exit 1; }
            sleep 0.1
        done
    done
    echo "cluster: $n nodes (pids ${NODE_PIDS[*]}), voters $CLUSTER_VOTERS, bootstrap $BOOTSTRAP"
}

# Stops the broker with SIGTERM and checks it exits 0.
stop_broker() {
    if (( STROM_COMPAT_NODES > 1 )); then
        local pid status
        for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid"; done
        for pid in "${NODE_PIDS[@]}"; do
            status=0
            wait "$pid" || status=$?
            (( status == 0 )) || { echo "FAIL: node pid $pid exited with status $status on SIGTERM" >&2; tail -30 "$COMPAT_TMP"/broker-*.log >&2; exit 1; }
        done
        NODE_PIDS=()
        echo "ok: cluster stopped cleanly (every node exit 0)"
        return
    fi
    kill -TERM "$BROKER_PID"
    local status=0
    wait "$BROKER_PID" || status=$?
    BROKER_PID=""
    if (( status != 0 )); then
        echo "FAIL: broker exited with status $status on SIGTERM:" >&2; cat "$COMPAT_TMP/broker.log" >&2; exit 1
    fi
    echo "ok: broker stopped cleanly (exit 0)"
}

fail() {
    echo "FAIL: $*" >&2
    local log
    for log in "$COMPAT_TMP"/broker*.log; do
        echo "--- $log ---" >&2
        tail -50 "$log" >&2 || true
    done
    exit 1
}
