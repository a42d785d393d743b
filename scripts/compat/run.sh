#!/usr/bin/env bash
# Runs every client-compatibility check (kcat, kafka-python, kafkajs); exits non-zero if any fails.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$dir/kcat.sh"
STROM_SKIP_BUILD=1 "$dir/python.sh"
STROM_SKIP_BUILD=1 "$dir/groups_python.sh"
STROM_SKIP_BUILD=1 "$dir/kafkajs.sh"
echo "compat: all client checks passed"
