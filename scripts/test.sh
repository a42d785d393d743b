#!/usr/bin/env bash
# Strom's whole test suite, as CI runs it (.ci/run calls exactly this script).
#
# 1. Installs what the tests need beyond the Rust toolchain (kcat and the PostgreSQL server
#    for the sink tests from Debian, kafka-python from PyPI; kafkajs from npm inside its
#    check), unless already present. librdkafka is
#    built from source by the rdkafka crate.
# 2. Checks the tree is formatted (`cargo fmt --check`, rustfmt.toml) and lint-free
#    (`cargo clippy --workspace --all-targets -- -D warnings`).
# 3. Runs every Rust test: unit, property, crash (kill -9 of real processes), power-loss (a
#    FUSE filesystem the tests mount themselves, strom-faultfs: needs root and /dev/fuse), the
#    fault harness (3 nodes in network namespaces on power-loss filesystems, a seeded schedule
#    of faults; STROM_FAULT_STEPS/STROM_FAULT_SEED for longer runs) and
#    end-to-end tests against a real `strom serve` with real Kafka clients (librdkafka).
# 4. Runs every fuzz target briefly (scripts/fuzz.sh: FUZZ_SECONDS, 5 by default here, on an
#    unoptimised build; it installs the nightly toolchain and cargo-fuzz if missing). The
#    committed corpora and regressions already ran in step 3 (crates/strom-fuzz/tests).
# 5. Runs the compatibility checks with independent clients (kcat, kafka-python, kafkajs) in
#    scripts/compat/, each against its own broker, then again against a 3-node Strom cluster
#    (STROM_COMPAT_NODES=3: the clients bootstrap from one node).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/compat/install.sh
for tool in fmt clippy; do
    cargo "$tool" --version >/dev/null 2>&1 || rustup component add "$([[ $tool == fmt ]] && echo rustfmt || echo clippy)"
done
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
FUZZ_DEV=1 FUZZ_SECONDS="${FUZZ_SECONDS:-5}" scripts/fuzz.sh
scripts/compat/run.sh
STROM_COMPAT_NODES=3 scripts/compat/run.sh
