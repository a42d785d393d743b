#!/usr/bin/env python3
"""Compatibility check with PyPI's kafka-python (a pure-Python client, independent of
librdkafka): admin create/describe/delete, produce with keys and headers (uncompressed and
gzip), consume everything back in order per partition, offsets by timestamp; Kafka topic
configs described, and a topic that recompresses (compression.type=uncompressed fed by a gzip
producer) and stamps LogAppendTime.

Usage: python_client.py BOOTSTRAP   (scripts/compat/python.sh starts a broker and calls this)
Exits non-zero on any mismatch and prints each check it made.
"""
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

bootstrap = sys.argv[1]
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-admin")
topic = "compat-python"
admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, topic_configs={"retention.ms": "86400000"})])
check(topic in admin.list_topics(), "admin created a 3-partition topic")

configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
text = repr(configs)
check("retention.ms" in text and "86400000" in text, "describe_configs shows retention.ms=86400000")

sent = {}
base_ts = 1_700_000_000_000
for codec in (None, "gzip"):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=5)
    futures = []
    for i in range(1000):
        key = f"key-{i % 13}".encode()
        value = f"{codec}-value-{i}".encode()
        headers = [("seq", str(i).encode())]
        futures.append((key, value, producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=base_ts + i)))
    producer.flush()
    for key, value, fut in futures:
        md = fut.get(timeout=30)
        sent[(md.partition, md.offset)] = (key, value)
    producer.close()
    check(True, f"produced 1000 keyed records with headers, compression {codec or 'none'}, acks=all")

consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
parts = [TopicPartition(topic, p) for p in range(3)]
consumer.assign(parts)
consumer.seek_to_beginning(*parts)
ends = consumer.end_offsets(parts)
check(sum(ends.values()) == 2000, f"end offsets sum to 2000 ({ends})")
got = {}
deadline = time.time() + 60
while sum(1 for _ in got) < 2000 and time.time() < deadline:
    for tp, msgs in consumer.poll(timeout_ms=1000).items():
        for m in msgs:
            got[(m.partition, m.offset)] = (m.key, m.value, m.headers)
check(len(got) == 2000, f"consumed {len(got)} of 2000 records")
mismatch = [pos for pos, (k, v) in sent.items() if pos not in got or got[pos][:2] != (k, v)]
check(not mismatch, f"every record at its acknowledged offset with its key and value ({len(mismatch)} mismatches)")
check(all(h and h[0][0] == "seq" for (_, _, h) in got.values()), "headers came back")

by_ts = consumer.offsets_for_times({TopicPartition(topic, p): base_ts + 500 for p in range(3)})
check(all(v is not None and v.timestamp >= base_ts + 500 for v in by_ts.values()),
      f"offsets_for_times finds the first record at or after the timestamp ({by_ts})")
consumer.close()

admin.delete_topics([topic])
deadline = time.time() + 10
while topic in admin.list_topics() and time.time() < deadline:
    time.sleep(0.1)
check(topic not in admin.list_topics(), "admin deleted the topic")

# A topic that stores uncompressed batches whatever the producer sends, stamped with the
# broker's append time.
stamped = "compat-python-stamped"
admin.create_topics([NewTopic(stamped, num_partitions=1, replication_factor=1, topic_configs={
    "compression.type": "uncompressed", "message.timestamp.type": "LogAppendTime", "flush.messages": "1",
    "message.format.version": "2.8", "preallocate": "true"})])
described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, stamped)])
text = repr(described)
check("LogAppendTime" in text and "uncompressed" in text, "describe_configs shows the configs Kafka tools set")
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip", linger_ms=5)
before = int(time.time() * 1000)
futs = [producer.send(stamped, value=f"s{i}".encode(), timestamp_ms=1000) for i in range(200)]
producer.flush()
check(all(f.get(timeout=30).offset >= 0 for f in futs), "produced 200 gzip records to the uncompressed topic")
producer.close()
consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
consumer.assign([TopicPartition(stamped, 0)])
records = []
for m in consumer:
    records.append(m)
    if len(records) == 200:
        break
consumer.close()
check([m.value for m in records] == [f"s{i}".encode() for i in range(200)], "the recompressed records read back in order")
now = int(time.time() * 1000)
check(all(m.timestamp_type == 1 and before <= m.timestamp <= now for m in records),
      "every record has timestamp type LogAppendTime and the broker's append time")
admin.delete_topics([stamped])
admin.close()

if failures:
    print(f"kafka-python compatibility: FAIL ({len(failures)} checks failed)")
    sys.exit(1)
print("kafka-python compatibility: PASS")
