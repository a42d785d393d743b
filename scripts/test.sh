#!/usr/bin/env bash
# Strom's whole test suite, as CI runs it (.ci/run calls exactly this script).
#
# 1. Installs what the tests need beyond the Rust toolchain (kcat from Debian, kafka-python
#    from PyPI; kafkajs from npm inside its check), unless already present. librdkafka is
#    built from source by the rdkafka crate.
# 2. Runs every Rust test: unit, property, crash (kill -9 of real processes) and end-to-end
#    tests against a real `strom serve` with real Kafka clients (librdkafka via rdkafka).
# 3. Runs the compatibility checks with independent clients (kcat, kafka-python, kafkajs) in
#    scripts/compat/, each against its own broker.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/compat/install.sh
cargo test --workspace --locked
scripts/compat/run.sh
