#!/usr/bin/env python3
"""Partition replication benchmark (one command):

    STROM_BIN=target/release/strom python3 scripts/bench-replication.py [--rounds 2] [--failovers 20]

All in one run, on fresh temporary data directories, the load generator sharing the machine:

1. throughput, alternating ROUNDS times: a single-node `strom serve` (no config) against a
   3-node cluster on 127.0.0.1 with replication factor 3; `strom bench` produce, 256 B,
   128 in flight, acks=all, 2 s warmup + DURATION, at 1 and at 64 partitions; the ratio
   cluster / single node per partition count (means over the rounds). Each also with the
   topic at `flush.policy=never`, which takes the fsyncs out (three nodes on this machine
   share one disk, which serialises their flushes) and leaves the replication protocol;
2. replication at half load: the cluster at half of its measured 1-partition rate (--rate),
   acks=all, p50/p99/max produce latency. An acks=all produce is answered once every
   in-sync follower has fsynced the batch and reported it, so this latency bounds the
   replication lag from above; and the followers' `strom_replica_lag_offsets` sampled
   every 100 ms meanwhile (max);
3. catch-up: a follower is killed, CATCHUP_GIB GiB are produced to a 4-partition RF=3
   topic without it (16 KiB messages, acks=1), then it restarts while a light produce load
   (256 B, 5,000 msg/s, acks=all) goes on: the time until it is back in every ISR, and the
   rate that makes (bytes it was behind / time); compared with the disk's sequential write
   bandwidth measured in the same run (1 GiB, 1 MiB writes, one fdatasync at the end);
4. leader failover, FAILOVERS times: kill -9 of the leader of a 1-partition RF=3 topic, then
   how long until an acks=all Produce (raw Kafka protocol, a fresh connection to each
   survivor in turn, every 10 ms) succeeds through the new leader; the node restarts on its
   data and rejoins the ISR before the next run.

5. reassignment throttle (`--only-reassign`): for each throttle setting, a fresh 3-node
   cluster, REASSIGN_GIB GiB in a 1-partition RF=1 topic (16 KiB messages, acks=1), then
   the partition is reassigned to add a second replica (`strom cluster reassign`) while a
   1-partition RF=3 topic takes 5,000 msg/s of 256 B acks=all produces: how long the move
   takes and the produce latency (p50/p99/max) over the 10 s from its start, against the same
   load with no move.

6. compounded failover (`--only-controller-failover`, FAILOVERS times): the leader of a
   1-partition RF=3 topic is made the controller's own node (replicas reordered with
   `strom cluster reassign`, then `strom cluster elect-leaders`), then that node is killed
   -9: how long until an acks=all Produce succeeds through the new leader (the new
   controller must be elected before it can move the leadership).

Prints Markdown tables.
"""
import argparse
import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

spec = importlib.util.spec_from_file_location("bench_cluster", os.path.join(os.path.dirname(__file__), "bench-cluster.py"))
bc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bc)
BIN = bc.BIN


# --- a produce request with one record batch (CRC32C by hand: no module for it here) --------

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def batch(value, ts):
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    records = varint(len(rec)) + rec
    after_crc = struct.pack(">hiqqqhii", 0, 0, ts, ts, -1, -1, -1, 1) + records
    head = struct.pack(">ib", 0, 2) + struct.pack(">I", crc32c(after_crc))
    body = head + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def produce(addr, topic, value, acks=-1, timeout_ms=1000):
    """Produce v3 of one record to partition 0; returns the error code (or None if unreachable)."""
    try:
        c = bc.Conn(addr, timeout=2)
    except OSError:
        return None
    try:
        rb = batch(value, int(time.time() * 1000))
        body = struct.pack(">hhi", -1, acks, timeout_ms) + struct.pack(">i", 1) + bc._str(topic)
        body += struct.pack(">ii", 1, 0) + struct.pack(">i", len(rb)) + rb
        r = bc.Reader(c.call(0, 3, body))
        r.take(">i")
        r.string()
        r.take(">i")
        r.take(">i")
        return r.take(">h")
    except (OSError, ConnectionError, AssertionError, struct.error):
        return None
    finally:
        c.close()


def partition_states(addr, topic):
    """Metadata v1 for `topic`: [(leader, sorted isr)] per partition, or None."""
    c = bc.Conn(addr)
    try:
        r = bc.Reader(c.call(3, 1, struct.pack(">i", 1) + bc._str(topic)))
        for _ in range(r.take(">i")):
            r.take(">i"); r.string(); r.take(">i"); r.string()
        r.take(">i")
        out = None
        for _ in range(r.take(">i")):
            err = r.take(">h"); r.string(); r.take(">b")
            parts = []
            for _ in range(r.take(">i")):
                r.take(">h"); idx = r.take(">i"); leader = r.take(">i")
                for _ in range(r.take(">i")):
                    r.take(">i")
                isr = sorted(r.take(">i") for _ in range(r.take(">i")))
                parts.append((idx, leader, isr))
            if err == 0:
                out = [(l, isr) for _, l, isr in sorted(parts)]
        return out
    finally:
        c.close()


def wait_state(addr, topic, ok, what, deadline_s=60):
    deadline = time.time() + deadline_s
    while True:
        try:
            s = partition_states(addr, topic)
            if s and all(ok(l, isr) for l, isr in s):
                return s
        except OSError:
            pass
        assert time.time() < deadline, f"{topic} never reached {what}"
        time.sleep(0.02)


def run_bench(bootstrap, topic, extra, duration):
    out = subprocess.run([BIN, "bench", "-b", bootstrap, "--topic", topic, "--concurrency", "128",
                          "--message-size", "256", "--acks", "all", "--warmup", "2s",
                          "--duration", f"{duration}s", "--json", *extra], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"strom bench failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


POLICIES = [("always", []), ("never", ["-c", "flush.policy=never"])]


def single_node(root, parts, duration):
    port, metrics = bc.free_port(), bc.free_port()
    ready = os.path.join(root, "ready-single")
    log = open(os.path.join(root, "single.log"), "ab")
    data = os.path.join(root, "single-data")
    shutil.rmtree(data, ignore_errors=True)
    p = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                          "--metrics-listen", f"127.0.0.1:{metrics}", "--ready-file", ready],
                         stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    try:
        while not os.path.exists(ready):
            assert p.poll() is None, "single node exited"
            time.sleep(0.01)
        out = {}
        for policy, config in POLICIES:
            for n in parts:
                topic = f"p{n}-{policy}"
                subprocess.run([BIN, "topic", "create", "-b", f"127.0.0.1:{port}", "-p", str(n), *config, topic],
                               check=True, stdout=subprocess.DEVNULL)
                out[(n, policy)] = run_bench(f"127.0.0.1:{port}", topic, [], duration)
        return out
    finally:
        p.terminate()
        p.wait(timeout=60)
        os.remove(ready)


def disk_write_bandwidth(root, gib):
    """Sequential write of `gib` GiB in 1 MiB writes plus one fdatasync, in bytes/s."""
    path = os.path.join(root, "disk-probe")
    block = os.urandom(1 << 20)
    t0 = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for _ in range(int(gib * 1024)):
            os.write(fd, block)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    elapsed = time.time() - t0
    os.remove(path)
    return gib * (1 << 30) / elapsed


def catch_up(c, bootstrap, gib):
    topic = "catchup"
    subprocess.run([BIN, "topic", "create", "-b", c.addr(1), "-p", "4", "-r", "3", topic], check=True,
                   stdout=subprocess.DEVNULL)
    wait_state(c.addr(1), topic, lambda l, isr: l > 0 and isr == [1, 2, 3], "a full ISR")
    lagging = 3
    c.kill9(lagging)
    wait_state(c.addr(1), topic, lambda l, isr: l > 0 and lagging not in isr, "the ISR without the killed follower")
    messages = int(gib * (1 << 30) / 16384)
    out = subprocess.run([BIN, "bench", "-b", bootstrap, "--topic", topic, "--concurrency", "64",
                          "--message-size", "16384", "--acks", "1", "--messages", str(messages), "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"strom bench (fill) failed: {out.stderr[-2000:]}")
    load = subprocess.Popen([BIN, "bench", "-b", bootstrap, "--topic", topic, "--concurrency", "16",
                             "--message-size", "256", "--acks", "all", "--rate", "5000", "--duration", "600s",
                             "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        c.start(lagging)
        wait_state(c.addr(1), topic, lambda l, isr: l > 0 and isr == [1, 2, 3], "the follower back in every ISR",
                   deadline_s=600)
        elapsed = time.time() - t0
    finally:
        load.terminate()
        load.wait()
    return messages * 16384, elapsed


def start_cluster(c):
    """Starts the 3 nodes of `c`, waits until each lists all three, returns the bootstrap."""
    for node in (1, 2, 3):
        c.start(node)
    for node in (1, 2, 3):
        c.wait_brokers(node, 3)
    return ",".join(c.addr(n) for n in (1, 2, 3))


def reassign_run(root, gib, throttle):
    """One fresh cluster with `throttle` bytes/s for added replicas: (move seconds, produce
    latency during the move, produce latency with no move)."""
    cfg = os.path.join(root, f"throttle-{throttle}.toml")
    with open(cfg, "w") as f:
        f.write(f"[cluster]\nreassignment_throttle_bytes_per_sec = {throttle}\nauto_rebalance = false\n")
    c = bc.Cluster(os.path.join(root, f"cluster-{time.time_ns()}"), extra=["--config", cfg])
    os.makedirs(c.root)
    try:
        bootstrap = start_cluster(c)
        subprocess.run([BIN, "topic", "create", "-b", c.addr(1), "-p", "1", "-r", "1", "big"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([BIN, "topic", "create", "-b", c.addr(1), "-p", "1", "-r", "3", "live"], check=True,
                       stdout=subprocess.DEVNULL)
        owner = wait_state(c.addr(1), "big", lambda l, isr: l > 0, "a leader")[0][0]
        wait_state(c.addr(1), "live", lambda l, isr: l > 0 and isr == [1, 2, 3], "a full ISR")
        messages = int(gib * (1 << 30) / 16384)
        out = subprocess.run([BIN, "bench", "-b", bootstrap, "--topic", "big", "--concurrency", "64",
                              "--message-size", "16384", "--acks", "1", "--messages", str(messages), "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"strom bench (fill) failed: {out.stderr[-2000:]}")
        live = ["--rate", "5000"]
        quiet = run_bench(bootstrap, "live", live, 8)
        target = f"{owner},{1 + owner % 3}"
        # The load runs a fixed 10 s window starting with the move (strom bench stops only at
        # its deadline); the move goes on past it when it takes longer.
        load = subprocess.Popen([BIN, "bench", "-b", bootstrap, "--topic", "live", "--concurrency", "16",
                                 "--message-size", "256", "--acks", "all", "--rate", "5000", "--warmup", "0s",
                                 "--duration", "10s", "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        t0 = time.time()
        move = subprocess.Popen([BIN, "cluster", "reassign", "-b", c.addr(1), "--topic", "big", "--partition", "0",
                                 "--replicas", target], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        done = []
        waiter = threading.Thread(target=lambda: done.append((move.communicate()[1], time.time() - t0)))
        waiter.start()
        during = json.loads(load.communicate(timeout=120)[0])
        waiter.join(timeout=1200)
        assert move.returncode == 0, f"the reassignment failed: {done}"
        moved = done[0][1]
        return moved, during, quiet
    finally:
        c.stop_all()


def controller_failover(root, runs):
    """Kill -9 of the node that is both the controller and the partition's leader, `runs`
    times: seconds until an acks=all produce succeeds through a survivor."""
    c = bc.Cluster(os.path.join(root, f"cluster-{time.time_ns()}"))
    os.makedirs(c.root)
    times = []
    try:
        start_cluster(c)
        topic = "failover"
        assert bc.create_topic(bc.Conn(c.addr(1)), topic, partitions=1, replication_factor=3) == 0
        for run in range(runs):
            controller = c.wait_brokers(1 if run % 2 else 2, 3)
            others = [n for n in (1, 2, 3) if n != controller]
            wait_state(c.addr(others[0]), topic, lambda l, isr: l > 0 and isr == [1, 2, 3], "a full ISR")
            subprocess.run([BIN, "cluster", "reassign", "-b", c.addr(others[0]), "--topic", topic, "--partition", "0",
                            "--replicas", ",".join(str(n) for n in [controller, *others])], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run([BIN, "cluster", "elect-leaders", "-b", c.addr(others[0]), "--topic", topic], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_state(c.addr(others[0]), topic, lambda l, isr: l == controller and isr == [1, 2, 3],
                       "the controller leading")
            assert produce(c.addr(controller), topic, b"before") == 0
            t0 = time.time()
            c.kill9(controller)
            while not any(produce(c.addr(n), topic, b"after") == 0 for n in others):
                assert time.time() - t0 < 60, "no leader took over"
                time.sleep(0.01)
            times.append(time.time() - t0)
            c.start(controller)
    finally:
        c.stop_all()
    return times


def cluster_run(root, parts, duration, half_load, failovers, catchup_gib=0):
    c = bc.Cluster(os.path.join(root, f"cluster-{time.time_ns()}"))
    os.makedirs(c.root)
    results = {"throughput": {}}
    try:
        bootstrap = start_cluster(c)
        for policy, config in POLICIES:
            for n in parts:
                topic = f"p{n}-{policy}"
                subprocess.run([BIN, "topic", "create", "-b", c.addr(1), "-p", str(n), "-r", "3", *config, topic],
                               check=True, stdout=subprocess.DEVNULL)
                wait_state(c.addr(1), topic, lambda l, isr: l > 0 and isr == [1, 2, 3], "a full ISR")
                results["throughput"][(n, policy)] = run_bench(bootstrap, topic, [], duration)
        if half_load:
            rate = int(results["throughput"][(parts[0], "always")]["produce"]["msgs_per_sec"] / 2)
            lag, stop = [], threading.Event()

            def sample():
                while not stop.is_set():
                    lag.append(max(c.metric(n, "strom_replica_lag_offsets") for n in (1, 2, 3)))
                    time.sleep(0.1)

            t = threading.Thread(target=sample)
            t.start()
            results["half"] = (rate, run_bench(bootstrap, f"p{parts[0]}-always", ["--rate", str(rate)], duration))
            stop.set()
            t.join()
            results["half_lag_offsets_max"] = max(lag) if lag else None
        if catchup_gib:
            results["catchup"] = catch_up(c, bootstrap, catchup_gib)
        if failovers:
            topic = "failover"
            code = bc.create_topic(bc.Conn(c.addr(1)), topic, partitions=1, replication_factor=3)
            assert code == 0, f"create failover: {code}"
            times = []
            for run in range(failovers):
                s = wait_state(c.addr(1 if run % 3 else 2), topic, lambda l, isr: l > 0 and isr == [1, 2, 3], "a full ISR")
                leader = s[0][0]
                assert produce(c.addr(leader), topic, b"before") == 0
                survivors = [n for n in (1, 2, 3) if n != leader]
                t0 = time.time()
                c.kill9(leader)
                while True:
                    if any(produce(c.addr(n), topic, b"after") == 0 for n in survivors):
                        break
                    assert time.time() - t0 < 60, "no leader took over"
                    time.sleep(0.01)
                times.append(time.time() - t0)
                c.start(leader)
            results["failover"] = times
    finally:
        c.stop_all()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--failovers", type=int, default=20)
    ap.add_argument("--catchup-gib", type=float, default=1.0)
    ap.add_argument("--only-catchup", action="store_true", help="skip the throughput and failover parts")
    ap.add_argument("--only-reassign", action="store_true", help="only the reassignment-throttle part")
    ap.add_argument("--only-controller-failover", action="store_true",
                    help="only the failover of a node that is both controller and leader")
    ap.add_argument("--reassign-gib", type=float, default=1.0)
    ap.add_argument("--throttles", default="0,100,50", help="added-replica throttles to compare, MiB/s (0: none)")
    args = ap.parse_args()
    if args.only_controller_failover:
        root = tempfile.mkdtemp(prefix="strom-bench-ctlfail-")
        try:
            t = controller_failover(root, args.failovers)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"compounded failover (kill -9 of the node that is controller and leader -> acks=all produce "
              f"through the new leader), {len(t)} runs: p50 {bc.ms(bc.pct(t, 50))}, max {bc.ms(max(t))}; "
              f"all: {', '.join(f'{x:.2f}' for x in t)} s")
        return
    if args.only_reassign:
        root = tempfile.mkdtemp(prefix="strom-bench-reassign-")
        try:
            print("| added-replica throttle | move of the partition | produce msg/s (first 10 s of the move) | p50 ms | "
                  "p99 ms | max ms | same load, no move: p99 ms |\n|---|---:|---:|---:|---:|---:|---:|")
            for throttle in (int(t) << 20 for t in args.throttles.split(",")):
                moved, r, quiet = reassign_run(root, args.reassign_gib, throttle)
                name = "none" if throttle == 0 else f"{throttle >> 20} MiB/s"
                lat = r["produce_latency"]
                print(f"| {name} | {args.reassign_gib:.1f} GiB in {moved:.1f} s "
                      f"({args.reassign_gib * (1 << 30) / moved / 1e6:.0f} MB/s) | {r['produce']['msgs_per_sec']:,.0f} | "
                      f"{lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} | {quiet['produce_latency']['p99_ms']} |")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    root = tempfile.mkdtemp(prefix="strom-bench-replication-")
    parts = [1, 64]
    keys = [(n, policy) for policy, _ in POLICIES for n in parts]
    rows, single, clustered = [], {k: [] for k in keys}, {k: [] for k in keys}
    half = failover = lag = catchup = None
    try:
        if args.only_catchup:
            args.rounds = 0
            cl = cluster_run(root, [], args.duration, False, 0, args.catchup_gib)
            catchup = cl.get("catchup")
        for rnd in range(args.rounds):
            s = single_node(root, parts, args.duration)
            last = rnd == args.rounds - 1
            cl = cluster_run(root, parts, args.duration, last, args.failovers if last else 0,
                             args.catchup_gib if last else 0)
            for k in keys:
                single[k].append(s[k])
                clustered[k].append(cl["throughput"][k])
                for name, r in (("1 node", s[k]), ("3 nodes, RF=3", cl["throughput"][k])):
                    rows.append((rnd + 1, name, k[0], k[1], r["produce"]["msgs_per_sec"],
                                 r["produce_latency"]["p50_ms"], r["produce_latency"]["p99_ms"]))
            if last:
                half, failover, lag = cl.get("half"), cl.get("failover"), cl.get("half_lag_offsets_max")
                catchup = cl.get("catchup")
        disk = disk_write_bandwidth(root, args.catchup_gib) if catchup else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if catchup:
        behind, secs = catchup
        rate = behind / secs
        print(f"catch-up: a follower {behind / (1 << 30):.2f} GiB behind (4 partitions) back in every ISR after "
              f"{secs:.1f} s while 5,000 msg/s went on: {rate / 1e6:.0f} MB/s; the disk's sequential write "
              f"bandwidth in this run: {disk / 1e6:.0f} MB/s; ratio {rate / disk:.0%}\n")
    if not rows:
        return
    print("| round | setup | partitions | flush.policy | msg/s | p50 ms | p99 ms |\n|---|---|---:|---|---:|---:|---:|")
    for rnd, name, n, policy, rate, p50, p99 in rows:
        print(f"| {rnd} | {name} | {n} | {policy} | {rate:,.0f} | {p50} | {p99} |")
    print()
    print("| partitions | flush.policy | 1 node mean msg/s | 3 nodes RF=3 mean msg/s | ratio |\n|---:|---|---:|---:|---:|")
    for k in keys:
        a = sum(r["produce"]["msgs_per_sec"] for r in single[k]) / len(single[k])
        b = sum(r["produce"]["msgs_per_sec"] for r in clustered[k]) / len(clustered[k])
        print(f"| {k[0]} | {k[1]} | {a:,.0f} | {b:,.0f} | {b / a:.0%} |")
    if half:
        rate, r = half
        print(f"\nhalf load ({rate:,} msg/s target, 1 partition, RF=3, acks=all): achieved "
              f"{r['produce']['msgs_per_sec']:,.0f} msg/s, latency p50 {r['produce_latency']['p50_ms']} ms, "
              f"p99 {r['produce_latency']['p99_ms']} ms, max {r['produce_latency']['max_ms']} ms; "
              f"followers' lag sampled every 100 ms: max {lag} offsets")
    if failover:
        print(f"\nleader failover (kill -9 of the leader -> acks=all produce succeeds through the new leader), "
              f"{len(failover)} runs: p50 {bc.ms(bc.pct(failover, 50))}, max {bc.ms(max(failover))}; "
              f"all: {', '.join(f'{t:.2f}' for t in failover)} s")


if __name__ == "__main__":
    main()
