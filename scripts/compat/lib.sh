# Shared helpers for the compatibility checks: build strom, start a broker on a free
# 127.0.0.1 port with a temporary data directory, stop it on exit. Source this file.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STROM_BIN="${STROM_BIN:-$REPO_ROOT/target/debug/strom}"
COMPAT_TMP="$(mktemp -d -t strom-compat-XXXXXX)"
BROKER_PID=""

compat_cleanup() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$COMPAT_TMP"
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

# Stops the broker with SIGTERM and checks it exits 0.
stop_broker() {
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
    echo "--- broker log ---" >&2
    tail -50 "$COMPAT_TMP/broker.log" >&2 || true
    exit 1
}
