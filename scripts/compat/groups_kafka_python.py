#!/usr/bin/env python3
"""Consumer-group compatibility check with PyPI's kafka-python (a pure-Python client,
independent of librdkafka): two consumers in one group split a 4-partition topic, commit
manually, one leaves and the other takes everything over, a new consumer resumes exactly
after the commits, and the admin client lists, describes and deletes the group.

Usage: groups_kafka_python.py BOOTSTRAP   (scripts/compat/groups_python.sh starts a broker)
Exits non-zero on any mismatch and prints each check it made.
"""
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

bootstrap = sys.argv[1]
failures = []
TOPIC = "compat-groups"
GROUP = "compat-group"
PARTITIONS = 4


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def consumer():
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
    c.subscribe([TOPIC])
    return c


def poll_until(consumers, cond, what, limit=60):
    """Polls every consumer in turn (each poll drives its own rebalance) until cond() holds."""
    got = {id(c): [] for c in consumers}
    deadline = time.time() + limit
    while not cond(got) and time.time() < deadline:
        for c in consumers:
            for msgs in c.poll(timeout_ms=100).values():
                got[id(c)].extend(msgs)
    check(cond(got), what)
    return got


def produce(start, n):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(start, start + n):
        p.send(TOPIC, key=str(i % 7).encode(), value=str(i).encode())
    p.flush()
    p.close()


admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-groups-admin")
admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
produce(0, 400)
every = {TopicPartition(TOPIC, p) for p in range(PARTITIONS)}

a = consumer()
poll_until([a], lambda _: a.assignment() == every, "the first consumer owns all four partitions")
b = consumer()
poll_until([a, b], lambda _: a.assignment() | b.assignment() == every and not (a.assignment() & b.assignment())
           and a.assignment() and b.assignment(), "two consumers split the partitions disjointly and completely")
for c in (a, b):
    c.seek_to_beginning()
got = poll_until([a, b], lambda g: sum(len(v) for v in g.values()) >= 400, "both consumers read all 400 records")
values = sorted(int(m.value) for msgs in got.values() for m in msgs)
check(values == list(range(400)), "each record exactly once across the group")
a.commit()
b.commit()
committed = {tp.partition: a.committed(tp) for tp in every}
ends = a.end_offsets(list(every))
check(all(committed[tp.partition] == ends[tp] for tp in every), f"commits equal the end offsets ({committed})")

def group_ids():
    return [g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups()]


check(GROUP in group_ids(), f"admin lists the group ({group_ids()})")
desc = admin.describe_groups([GROUP])
desc = desc[GROUP] if isinstance(desc, dict) else desc[0]
state = desc.get("group_state") if isinstance(desc, dict) else desc.state
members = desc.get("members") if isinstance(desc, dict) else desc.members
check(state == "Stable" and len(members) == 2, f"admin describes a Stable group of two ({state}, {len(members)})")
offsets = admin.list_group_offsets({GROUP: None})[GROUP]
check({tp: o.offset for tp, o in offsets.items()} == {tp: ends[tp] for tp in every},
      f"admin reads the committed offsets of every partition (OffsetFetch, all partitions: {offsets})")

b.close()  # a clean leave: the other member takes over at once
start = time.time()
poll_until([a], lambda _: a.assignment() == every, "after a clean leave the remaining consumer owns everything", limit=20)
check(time.time() - start < 5, f"the rebalance after the leave was quick ({time.time() - start:.1f} s)")
a.close()

produce(400, 10)
c = consumer()
got = poll_until([c], lambda g: sum(len(v) for v in g.values()) >= 10, "a new consumer of the group reads the new records")
values = sorted(int(m.value) for msgs in got.values() for m in msgs)
check(values == list(range(400, 410)), f"it resumed exactly after the commits ({values[:5]}...)")
c.close()

res = admin.delete_groups([GROUP])
results = dict(res) if not isinstance(res, dict) else res
err = results.get(GROUP, "missing")
check(GROUP in results and (err is None or err == "OK" or getattr(err, "errno", None) == 0), f"admin deleted the group ({res})")
check(GROUP not in group_ids(), "the group is gone")
admin.delete_topics([TOPIC])
admin.close()

if failures:
    print(f"{len(failures)} check(s) failed", flush=True)
    sys.exit(1)
print("kafka-python group checks passed", flush=True)
