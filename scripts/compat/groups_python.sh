#!/usr/bin/env bash
# Consumer-group compatibility check with PyPI's kafka-python: starts its own broker, runs
# groups_kafka_python.py (join, split, commit, leave, resume, admin list/describe/delete).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
python3 -c 'import kafka' 2>/dev/null || { echo "FAIL: kafka-python not installed (run scripts/compat/install.sh)" >&2; exit 1; }
build_strom
start_broker
python3 "$(dirname "${BASH_SOURCE[0]}")/groups_kafka_python.py" "$BOOTSTRAP" || fail "kafka-python group checks"
stop_broker
