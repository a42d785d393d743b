#!/usr/bin/env bash
# The `strom sink` benchmark: rows/s into PostgreSQL and SQLite for 256 B records, against
# one autocommitted INSERT per record and the database's raw bulk path, plus the end-to-end
# lag at a fixed rate; all in one run (crates/strom/tests/sink_bench.rs). Needs PostgreSQL
# (scripts/compat/install.sh installs it). STROM_SINK_BENCH_ROWS sets the backlog size.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/compat/install.sh >/dev/null
cargo test --release -p strom --test sink_bench -- --ignored --nocapture 2>&1 | grep -v '^round\|^$' | sed -n '/records of/,$p'
