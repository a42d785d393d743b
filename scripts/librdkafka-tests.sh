#!/usr/bin/env bash
# Runs librdkafka's own integration test suite (librdkafka/tests, `test-runner`) against a
# Strom broker, the way the suite runs against a trivup Kafka cluster: a broker with
# auto-created topics of 4 partitions, a tests/test.conf naming it, and the test-runner
# started once per test number (one test at a time, a timeout each).
#
#   scripts/librdkafka-tests.sh                 # build (once) and run every applicable test
#   scripts/librdkafka-tests.sh --list          # the catalogue: every test, its category, n/a reason
#   LIBRDKAFKA_TESTS="0001 0045 0081_admin" scripts/librdkafka-tests.sh   # a subset
#   scripts/librdkafka-tests.sh --ci            # the quick subset in scripts/librdkafka/ci-subset.txt
#
# Options:
#   --list          print the catalogue and exit (no build, no broker)
#   --build-only    build librdkafka and the test runner, then exit
#   --no-local      skip the local (broker-less / mock-cluster) tests
#   --local-only    run only the local tests
#   --ci            run the tests named in scripts/librdkafka/ci-subset.txt (overrides
#                   LIBRDKAFKA_TESTS)
#   --quick         pass -Q to the test runner (librdkafka's "quick" mode: less data)
#   --check-expected  exit non-zero only for failures of tests in expected-pass.txt (default;
#                   --strict fails on any failure)
#
# Environment:
#   STROM_BIN                 broker binary (default target/release/strom; never built here)
#   LIBRDKAFKA_TESTS          space/comma-separated test numbers ("0045": all its tests) or
#                             exact test names ("0045_subscribe_update") to run
#   LIBRDKAFKA_TEST_TIMEOUT   seconds one test number may take (default 300; the few long
#                             ones have their own in scripts/librdkafka/timeouts.txt)
#   LIBRDKAFKA_TOTAL_TIMEOUT  seconds the whole run may take (default 5400); tests not
#                             started by then are reported SKIPPED ("run deadline")
#   LIBRDKAFKA_RUN_NA=1       also run the tests classified not applicable
#   LIBRDKAFKA_TEST_DEBUG     passed as TEST_DEBUG (librdkafka debug contexts, e.g. protocol,cgrp)
#   LIBRDKAFKA_TEST_LEVEL     passed as TEST_LEVEL (default 2)
#   LIBRDKAFKA_SUBTESTS       passed as SUBTESTS: only sub-tests whose name contains it (e.g.
#                             do_test_DescribeConfigs with LIBRDKAFKA_TESTS=0081)
#   LIBRDKAFKA_NICE           nice level of builds and test runs (default 19)
#   STROM_LOG                 RUST_LOG of the broker (default info,strom_broker=debug)
#   LIBRDKAFKA_KEEP_DATA=1    keep the brokers' data directories after the run
#   LIBRDKAFKA_ERROR_COUNTS=1 serve the broker's /metrics on an ephemeral 127.0.0.1 port
#                             (instead of --metrics-listen "") and record, per test, the
#                             error codes the broker answered (broker-errors.tsv, unit logs)
#
# Output (all under target/librdkafka-tests/):
#   results.tsv              one row per test: name, number, category, status, seconds, reason, log
#   summary.txt              the printed summary
#   logs/<unit>.log          each test-runner invocation's full output
#   broker-<scenario>/broker.log, broker-events.log (starts, deaths, restarts)
#   build.log                configure + make output
#
# Exit status: 1 when a test listed in scripts/librdkafka/expected-pass.txt did not pass
# (or, with --strict, when any test failed), 2 on a setup error, 0 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPERS=$ROOT/scripts/librdkafka
PY="python3 $HELPERS/rktests.py"
OUT=${LIBRDKAFKA_TESTS_OUT:-$ROOT/target/librdkafka-tests}
STROM_BIN=${STROM_BIN:-$ROOT/target/release/strom}
TEST_TIMEOUT=${LIBRDKAFKA_TEST_TIMEOUT:-300}
TOTAL_TIMEOUT=${LIBRDKAFKA_TOTAL_TIMEOUT:-5400}
NICE=${LIBRDKAFKA_NICE:-19}
STROM_LOG=${STROM_LOG:-info,strom_broker=debug}
RK_VERSION=2.12.1

# The librdkafka test harness gates tests on the broker version it is told (it never asks the
# broker). Strom's ApiVersions floors are Kafka 4.0's (KIP-896: Produce >= 3, Fetch >= 4,
# ListOffsets >= 1, OffsetCommit >= 2, ...; no message format v0/v1), so we say 4.0.0: tests
# of features removed in 4.0 (MsgVersion 1 in 0092, api.version.request=false in 0052) are
# skipped as they are against Apache Kafka 4.0, and version-gated tests take their newest
# paths (e.g. 0081's group configs and Kafka-4.0 ACL operation sets, ListOffsets
# MAX_TIMESTAMP). 3.9 would instead run the MsgVersion-1 tests, which Strom (like 4.0)
# cannot serve.
KAFKA_VERSION=${TEST_KAFKA_VERSION:-4.0.0}

MODE=run
CATEGORIES=broker,local
STRICT=0
QUICK=0
SELECT=${LIBRDKAFKA_TESTS:-}
while [[ $# -gt 0 ]]; do
    case "$1" in
    --list) MODE=list ;;
    --build-only) MODE=build ;;
    --no-local) CATEGORIES=broker ;;
    --local-only) CATEGORIES=local ;;
    --ci) SELECT=$(grep -v '^\s*#' "$HELPERS/ci-subset.txt" | awk '{print $1}' | tr '\n' ' ') ;;
    --quick) QUICK=1 ;;
    --strict) STRICT=1 ;;
    --check-expected) STRICT=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

die() {
    echo "librdkafka-tests: $*" >&2
    exit 2
}
log() { echo "[$(date +%H:%M:%S)] $*"; }

# ---------------------------------------------------------------------------------------
# The librdkafka sources: from the cargo registry (rdkafka-sys vendors librdkafka).
shopt -s nullglob
srcs=("$HOME"/.cargo/registry/src/*/rdkafka-sys-*+"$RK_VERSION"/librdkafka)
shopt -u nullglob
[[ ${#srcs[@]} -gt 0 && -f ${srcs[0]}/tests/test.c ]] ||
    die "librdkafka $RK_VERSION sources not found (looked for ~/.cargo/registry/src/*/rdkafka-sys-*+$RK_VERSION/librdkafka/tests/test.c); run 'cargo fetch' in the repo first"
SRC=${srcs[0]}
BUILD=$OUT/librdkafka-$RK_VERSION
TESTS_DIR=$BUILD/tests
mkdir -p "$OUT"

CATALOG=$OUT/catalog.tsv
$PY catalog --test-c "$SRC/tests/test.c" --na "$HELPERS/not-applicable.txt" >"$CATALOG"

if [[ $MODE == list ]]; then
    $PY list --catalog "$CATALOG"
    exit 0
fi

# ---------------------------------------------------------------------------------------
# Build (reused when tests/test-runner is there and was built from these sources).
# What the build is configured with; a build dir made with another spec is reconfigured.
CONFIGURE_ARGS=(--no-download --disable-ssl --disable-gssapi --disable-curl --enable-zlib
    --enable-zstd --disable-lz4-ext)
BUILD_DEPS=(zlib1g-dev libzstd-dev rapidjson-dev g++ make python3)
BUILD_SPEC="$SRC ${CONFIGURE_ARGS[*]} deps:${BUILD_DEPS[*]}"

build() {
    local stamp=$BUILD/.strom-build-ok
    if [[ -x $TESTS_DIR/test-runner && -f $stamp && $(cat "$stamp") == "$BUILD_SPEC" ]]; then
        log "reusing the build in $BUILD"
        return
    fi
    local t0=$SECONDS
    log "building librdkafka $RK_VERSION and its test runner in $BUILD (log: $OUT/build.log)"
    if [[ ! -f $BUILD/configure ]]; then
        rm -rf "$BUILD"
        cp -a "$SRC" "$BUILD"
        chmod -R u+w "$BUILD"
    fi
    # Build dependencies: zstd for the zstd codec tests, RapidJSON (headers) for the tests
    # that validate statistics JSON (0053, 0110); zlib; LZ4 is librdkafka's builtin copy.
    local missing=()
    for pkg in "${BUILD_DEPS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing build dependencies: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >>"$OUT/build.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed (see $OUT/build.log)"
    fi
    (
        cd "$BUILD"
        # No SSL, SASL/GSSAPI or libcurl (OIDC): those tests are out of scope.
        if [[ ! -f Makefile.config || ! -f $stamp || $(cat "$stamp") != "$BUILD_SPEC" ]]; then
            rm -f "$stamp" config.cache
            nice -n "$NICE" ./configure "${CONFIGURE_ARGS[@]}"
        fi
        nice -n "$NICE" make -j1 libs
        nice -n "$NICE" make -j1 -C tests build
    ) >>"$OUT/build.log" 2>&1 || die "build failed; see the end of $OUT/build.log"
    [[ -x $TESTS_DIR/test-runner ]] || die "build finished but $TESTS_DIR/test-runner is missing"
    echo "$BUILD_SPEC" >"$stamp"
    echo "$((SECONDS - t0))" >"$OUT/build-seconds"
    log "build done in $((SECONDS - t0)) s"
}
build
[[ $MODE == build ]] && exit 0

# ---------------------------------------------------------------------------------------
# The broker.
[[ -x $STROM_BIN ]] || die "STROM_BIN=$STROM_BIN is not an executable (build it with cargo build --release -p strom)"
BROKER_PID=
BROKER_ADDR=
BROKER_SCENARIO=
BROKER_STARTS=0
METRICS_ADDR=
# LIBRDKAFKA_ERROR_COUNTS=1: the broker serves /metrics on an ephemeral port and every
# test's log gets the error codes the broker answered during it (strom_errors_total).
ERROR_COUNTS=${LIBRDKAFKA_ERROR_COUNTS:-0}
EVENTS=$OUT/broker-events.log

stop_broker() {
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        echo "$(date -Is) stopped broker pid $BROKER_PID ($BROKER_SCENARIO)" >>"$EVENTS"
    fi
    BROKER_PID=
}
trap 'stop_broker' EXIT
trap 'stop_broker; exit 130' INT TERM

# start_broker <scenario>: a fresh broker (new data dir, ephemeral port) and test.conf.
start_broker() {
    local scenario=$1 autocreate=true
    [[ $scenario == noautocreate ]] && autocreate=false
    local metrics_listen=""
    [[ $ERROR_COUNTS == 1 ]] && metrics_listen=127.0.0.1:0
    local bdir=$OUT/broker-$scenario
    BROKER_STARTS=$((BROKER_STARTS + 1))
    local data=$bdir/data-$BROKER_STARTS
    mkdir -p "$bdir"
    rm -rf "$data"
    mkdir -p "$data"
    # auto_create_topics and num_partitions are top-level keys of the config (not [log]):
    # the suite's "default" scenario is Kafka with auto.create.topics.enable=true and
    # num.partitions=4; "noautocreate" turns auto-creation off.
    cat >"$bdir/strom.toml" <<EOF
# librdkafka test scenario "$scenario" (written by scripts/librdkafka-tests.sh)
auto_create_topics = $autocreate
num_partitions = 4
EOF
    echo "$(date -Is) starting broker #$BROKER_STARTS ($scenario) data=$data" >>"$EVENTS"
    NO_COLOR=1 RUST_LOG=$STROM_LOG "$STROM_BIN" serve --config "$bdir/strom.toml" --listen 127.0.0.1:0 \
        --data-dir "$data" --ready-file "$data/ready" --metrics-listen "$metrics_listen" \
        >>"$bdir/broker.log" 2>&1 &
    BROKER_PID=$!
    BROKER_SCENARIO=$scenario
    for _ in $(seq 1 300); do
        [[ -s $data/ready ]] && break
        kill -0 "$BROKER_PID" 2>/dev/null || die "broker exited at startup; see $bdir/broker.log"
        sleep 0.1
    done
    [[ -s $data/ready ]] || die "broker not ready after 30 s; see $bdir/broker.log"
    BROKER_ADDR=$(head -n1 "$data/ready")
    METRICS_ADDR=$(sed -n 's/^metrics=//p' "$data/ready")
    echo "$(date -Is) broker #$BROKER_STARTS pid $BROKER_PID ready at $BROKER_ADDR" >>"$EVENTS"
    # tests/test.conf: read by every test (RDKAFKA_TEST_CONF). test.timeout.multiplier
    # stretches the tests' own timeouts: this machine is small and shared.
    cat >"$TESTS_DIR/test.conf" <<EOF
# written by scripts/librdkafka-tests.sh for Strom at $BROKER_ADDR ($scenario)
bootstrap.servers=$BROKER_ADDR
broker.address.family=v4
test.timeout.multiplier=2
EOF
    log "broker #$BROKER_STARTS ($scenario) pid $BROKER_PID at $BROKER_ADDR"
}

# ---------------------------------------------------------------------------------------
# The plan: one unit per (test number, scenario, local or not), in order.
PLAN=$OUT/plan.tsv
plan_args=(--catalog "$CATALOG" --categories "$CATEGORIES")
[[ -n $SELECT ]] && plan_args+=(--select "$SELECT")
[[ ${LIBRDKAFKA_RUN_NA:-0} == 1 ]] && plan_args+=(--run-na)
$PY plan "${plan_args[@]}" >"$PLAN"
nunits=$(wc -l <"$PLAN")
[[ $nunits -gt 0 ]] || die "nothing to run (LIBRDKAFKA_TESTS=${SELECT:-all}, categories $CATEGORIES)"

LOGS=$OUT/logs
RESULTS=$OUT/results.tsv
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$OUT/unit-results.tsv" "$EVENTS" "$RESULTS" "$OUT/summary.txt" \
    "$OUT/broker-errors.tsv" "$OUT"/errors.before "$OUT"/errors.after
rm -rf "$OUT"/broker-*/
: >"$OUT/unit-results.tsv"

runner_flags=()
[[ $QUICK == 1 ]] && runner_flags+=(-Q)

export LD_LIBRARY_PATH=$BUILD/src:$BUILD/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export TEST_KAFKA_VERSION=$KAFKA_VERSION
export TEST_LEVEL=${LIBRDKAFKA_TEST_LEVEL:-2}
export RDKAFKA_GITVER="v$RK_VERSION"
unset TESTS SUBTESTS TESTS_SKIP TEST_SCENARIO CI KAFKA_PATH BROKERS ZK_ADDRESS TEST_DEBUG
[[ -n ${LIBRDKAFKA_TEST_DEBUG:-} ]] && export TEST_DEBUG=$LIBRDKAFKA_TEST_DEBUG
[[ -n ${LIBRDKAFKA_SUBTESTS:-} ]] && export SUBTESTS=$LIBRDKAFKA_SUBTESTS

run_start=$SECONDS
deadline=$((SECONDS + TOTAL_TIMEOUT))
i=0
log "running $nunits test-runner invocations (per-test timeout ${TEST_TIMEOUT}s, run limit ${TOTAL_TIMEOUT}s, TEST_KAFKA_VERSION=$KAFKA_VERSION)"
while IFS=$'\t' read -r unit num scenario localflag names; do
    i=$((i + 1))
    if ((SECONDS >= deadline)); then
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$num" "$scenario" deadline 0 "$names" >>"$OUT/unit-results.tsv"
        continue
    fi
    if [[ $BROKER_SCENARIO != "$scenario" ]]; then
        stop_broker
        start_broker "$scenario"
    elif ! kill -0 "$BROKER_PID" 2>/dev/null; then
        wait "$BROKER_PID" 2>/dev/null && rc=0 || rc=$?
        echo "$(date -Is) broker pid $BROKER_PID DIED (exit $rc) before unit $unit; restarting" >>"$EVENTS"
        log "broker died (exit $rc); restarting"
        BROKER_PID=
        start_broker "$scenario"
    fi
    ulog=$LOGS/$unit.log
    echo "=== librdkafka-tests: unit $unit ($names) starts $(date -Is) ===" >>"$OUT/broker-$scenario/broker.log"
    left=$((deadline - SECONDS))
    tmo=$(awk -v n="$num" -v u="$unit" '$1 == n || $1 == u { t = $2 } END { print t }' \
        "$HELPERS/timeouts.txt" 2>/dev/null)
    tmo=${tmo:-$TEST_TIMEOUT}
    tmo=$((tmo < left ? tmo : left))
    t0=$SECONDS
    printf '[%s] (%d/%d) %-22s %s ... ' "$(date +%H:%M:%S)" "$i" "$nunits" "$unit" "$names"
    {
        echo "# unit $unit: TESTS=$num TEST_SCENARIO=$scenario flags: $localflag ${runner_flags[*]:-} broker $BROKER_ADDR"
        echo "# started $(date -Is), timeout ${tmo}s"
    } >"$ulog"
    # stdbuf: the runner prints its summary with printf and may abort() right after (its main
    # thread asserts when a test failed), which would lose a block-buffered stdout.
    [[ -n $METRICS_ADDR ]] && $PY scrape --addr "$METRICS_ADDR" >"$OUT/errors.before" 2>/dev/null
    # The outer subshell reports a runner killed by a signal ("Aborted") into the log too.
    set +e
    ( (cd "$TESTS_DIR" && TESTS=$num TEST_SCENARIO=$scenario \
        timeout -k 10 "$tmo" nice -n "$NICE" stdbuf -oL -eL ./test-runner -p1 "$localflag" \
        "${runner_flags[@]}"); exit $? ) >>"$ulog" 2>&1 </dev/null
    rc=$?
    set -e
    dt=$((SECONDS - t0))
    status=rc$rc
    # 124: timeout(1) sent TERM; 137 after our deadline: it had to KILL. (librdkafka's own
    # per-test timeout also ends in SIGKILL, but earlier, after printing its summary.)
    if ((rc == 124)) || ((rc == 137 && dt >= tmo)); then status=timeout; fi
    if [[ -n $BROKER_PID ]] && ! kill -0 "$BROKER_PID" 2>/dev/null; then
        status="$status,broker-died"
        echo "$(date -Is) broker pid $BROKER_PID DIED during unit $unit" >>"$EVENTS"
    fi
    echo "# finished $(date -Is) after ${dt}s: $status" >>"$ulog"
    if [[ -n $METRICS_ADDR ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        $PY scrape --addr "$METRICS_ADDR" >"$OUT/errors.after" 2>/dev/null
        $PY errdelta --before "$OUT/errors.before" --after "$OUT/errors.after" --unit "$unit" |
            tee -a "$OUT/broker-errors.tsv" | sed 's/^/# broker error responses (unit, api, code, count): /' >>"$ulog"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$num" "$scenario" "$status" "$dt" "$names" >>"$OUT/unit-results.tsv"
    $PY brief --catalog "$CATALOG" --log "$ulog" --status "$status" --names "$names" --seconds "$dt"
done <"$PLAN"
stop_broker
run_seconds=$((SECONDS - run_start))
# The brokers' data (GBs of preallocated segments) goes; their logs stay.
[[ ${LIBRDKAFKA_KEEP_DATA:-0} == 1 ]] || rm -rf "$OUT"/broker-*/data-*
echo "$run_seconds" >"$OUT/run-seconds"

report_args=(--catalog "$CATALOG" --units "$OUT/unit-results.tsv" --logs "$LOGS"
    --expected "$HELPERS/expected-pass.txt" --results "$RESULTS" --timeout "$TEST_TIMEOUT"
    --run-seconds "$run_seconds" --broker-events "$EVENTS")
[[ -f $OUT/build-seconds ]] && report_args+=(--build-seconds "$(cat "$OUT/build-seconds")")
[[ $STRICT == 1 ]] && report_args+=(--strict)
[[ -n $SELECT ]] && report_args+=(--subset)
set +e
$PY report "${report_args[@]}" | tee "$OUT/summary.txt"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
