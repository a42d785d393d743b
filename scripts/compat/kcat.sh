#!/usr/bin/env bash
# Compatibility check with Debian's kcat (librdkafka): metadata listing, produce from stdin
# under every compression codec (with keys and headers), consume to the end, offset query by
# timestamp, and a graceful restart that keeps everything. Exits non-zero on any mismatch.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v kcat >/dev/null || { echo "FAIL: kcat not installed (run scripts/compat/install.sh)" >&2; exit 1; }

build_strom
start_broker
B="$BOOTSTRAP"
T=compat-kcat
expected="$COMPAT_TMP/expected.txt"
: >"$expected"

for codec in none gzip snappy lz4 zstd; do
    input="$COMPAT_TMP/in-$codec.txt"
    for i in $(seq 1 500); do echo "k$((i % 7)):$codec-value-$i"; done >"$input"
    kcat -P -b "$B" -t "$T" -p 0 -K: -z "$codec" -H "codec=$codec" -X request.required.acks=-1 <"$input" \
        || fail "kcat produce ($codec)"
    cat "$input" >>"$expected"
    echo "ok: produced 500 keyed records with a header from stdin, compression $codec"
done

got="$COMPAT_TMP/got.txt"
kcat -C -b "$B" -t "$T" -p 0 -o beginning -e -q -f '%k:%s\n' >"$got" || fail "kcat consume"
cmp -s "$expected" "$got" || { diff "$expected" "$got" | head -20 >&2; fail "consumed records differ from produced ones"; }
echo "ok: consumed all $(wc -l <"$got") records to the end, keys and values in order"

headers="$(kcat -C -b "$B" -t "$T" -p 0 -o beginning -e -q -f '%h\n' | sort | uniq -c | awk '{print $1" "$2}')"
for codec in none gzip snappy lz4 zstd; do
    grep -qx "500 codec=$codec" <<<"$headers" || fail "headers: expected 500 x codec=$codec, got: $headers"
done
echo "ok: every record carries its header"

meta="$(kcat -L -b "$B")"
grep -q "$STROM_COMPAT_NODES brokers:" <<<"$meta" || fail "metadata: expected $STROM_COMPAT_NODES broker(s) in: $meta"
grep -q "broker $BOOTSTRAP_NODE at $B" <<<"$meta" || fail "metadata: expected 'broker $BOOTSTRAP_NODE at $B' in: $meta"
grep -q "topic \"$T\" with 1 partitions" <<<"$meta" || fail "metadata: topic $T missing in: $meta"
echo "ok: metadata lists $STROM_COMPAT_NODES broker(s), broker $BOOTSTRAP_NODE at $B, and topic $T"

# Offsets by timestamp: far in the past -> 0; far in the future -> end (-1).
q_past="$(kcat -Q -b "$B" -t "$T:0:1000")"
grep -q "offset 0" <<<"$q_past" || fail "offset query (past): $q_past"
q_future="$(kcat -Q -b "$B" -t "$T:0:99999999999999")"
grep -q "offset -1" <<<"$q_future" || fail "offset query (future): $q_future"
echo "ok: offset query by timestamp (earliest match 0, none in the future)"

stop_broker
start_broker
B="$BOOTSTRAP"
kcat -C -b "$B" -t "$T" -p 0 -o beginning -e -q -f '%k:%s\n' >"$got" || fail "kcat consume after restart"
cmp -s "$expected" "$got" || fail "records differ after a graceful restart"
echo "ok: all $(wc -l <"$got") records back after a graceful restart"
echo "kcat compatibility: PASS"
