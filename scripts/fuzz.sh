#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, bodies in crates/strom-fuzz) for FUZZ_SECONDS seconds each
# with cargo fuzz (libFuzzer), starting from the committed seed corpus, and prints each
# target's executions per second and coverage. A crash stops the run with the input's path:
# add it to fuzz/regressions/<target>/ (the normal test suite replays that directory) once
# it is fixed.
#
#   scripts/fuzz.sh                                   # 60 s per target
#   FUZZ_SECONDS=3600 FUZZ_TARGETS=request_frame scripts/fuzz.sh
#   FUZZ_DEV=1 FUZZ_SECONDS=5 scripts/fuzz.sh          # what CI runs: an unoptimised build
#                                                     # (2 min to build instead of 3.5)
#
# Needs the nightly toolchain and cargo-fuzz; installs both if missing (the project itself
# builds on stable). Targets are built without a sanitizer (-s none): Strom is safe Rust, so
# what the fuzzer looks for is panics, aborts, hangs and unbounded allocation (libFuzzer's
# -rss_limit_mb and request_frame's own allocation bound), and ASan would halve the rate.
# Debug assertions (overflow checks) are on. New inputs go to target/fuzz-work/<target>/;
# the committed corpus is only read.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TARGETS="${FUZZ_TARGETS:-request_frame record_batch recovery raft_log wire_frame state_machine}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
WORK="$PWD/target/fuzz-work"
mkdir -p "$WORK"
PROFILE=(-O)
[[ -n "${FUZZ_DEV:-}" ]] && PROFILE=(--dev)
(cd fuzz && cargo +nightly fuzz build "${PROFILE[@]}" -a -s none)
summary=()
for t in $FUZZ_TARGETS; do
    mkdir -p "$WORK/$t" "fuzz/artifacts/$t"
    log="$WORK/$t.log"
    echo "fuzz: $t for ${FUZZ_SECONDS}s"
    set +e
    (cd fuzz && cargo +nightly fuzz run "${PROFILE[@]}" -a -s none "$t" "$WORK/$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") >"$log" 2>&1
    rc=$?
    set -e
    done_line="$(grep -E '^#[0-9]+\s+DONE' "$log" | tail -1)"
    execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    rate="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    rss="$(grep -oE 'stat::peak_rss_mb: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
    cov="$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$done_line")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")"
    summary+=("| $t | ${FUZZ_SECONDS} | ${execs} | ${rate} | ${cov:-?} | ${ft:-?} | ${rss} |")
    if (( rc != 0 )); then
        tail -40 "$log" >&2
        echo "FAIL: fuzz target $t crashed; the input is in fuzz/artifacts/$t/ (full log: $log)" >&2
        exit 1
    fi
done
echo
echo "| target | seconds | executions | exec/s | coverage (edges) | features | peak RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${summary[@]}"
