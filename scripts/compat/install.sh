#!/usr/bin/env bash
# Installs the clients the compatibility checks use: Debian's kcat, PyPI's kafka-python, and
# Node.js with npm (kafkajs itself is installed by kafkajs.sh into a temporary directory);
# and what the fault harness (crates/strom/tests/fault_harness.rs) runs: `ip` (iproute2)
# for its network namespaces, `nsenter` (util-linux) to start nodes in them; and Debian's
# PostgreSQL server, which the `strom sink` tests (crates/strom/tests/sink.rs) start on a
# temporary directory of their own (the packaged cluster is not used).
set -euo pipefail
if ! command -v ip >/dev/null 2>&1 || ! command -v nsenter >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux
fi
if ! command -v kcat >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
if ! python3 -c 'import kafka' >/dev/null 2>&1; then
    python3 -m pip install -q 'kafka-python>=2.2,<4'
fi
echo "kcat: $(kcat -V 2>&1 | head -1 | tr -d '\n'); kafka-python: $(python3 -c 'import kafka; print(kafka.__version__)')"
