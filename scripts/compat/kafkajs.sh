#!/usr/bin/env bash
# Compatibility check with npm's kafkajs (pure JavaScript, independent of librdkafka):
# starts its own broker and runs kafkajs_client.mjs against it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v node >/dev/null || { echo "FAIL: node not installed" >&2; exit 1; }
KAFKAJS_DIR="${KAFKAJS_DIR:-$COMPAT_TMP/kafkajs}"
if [[ ! -d "$KAFKAJS_DIR/node_modules/kafkajs" ]]; then
    mkdir -p "$KAFKAJS_DIR"
    (cd "$KAFKAJS_DIR" && npm install --silent --no-audit --no-fund --no-save kafkajs@2.2.4 >/dev/null) \
        || { echo "FAIL: npm install kafkajs" >&2; exit 1; }
fi
build_strom
start_broker
KAFKAJS_DIR="$KAFKAJS_DIR/node_modules" node "$(dirname "${BASH_SOURCE[0]}")/kafkajs_client.mjs" "$BOOTSTRAP" || fail "kafkajs checks"
stop_broker
