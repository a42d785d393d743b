#!/usr/bin/env bash
# Compatibility check with PyPI's kafka-python: starts its own broker, runs python_client.py.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
python3 -c 'import kafka' 2>/dev/null || { echo "FAIL: kafka-python not installed (run scripts/compat/install.sh)" >&2; exit 1; }
build_strom
start_broker
python3 "$(dirname "${BASH_SOURCE[0]}")/python_client.py" "$BOOTSTRAP" || fail "kafka-python checks"
stop_broker
