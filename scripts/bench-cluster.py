#!/usr/bin/env python3
"""Cluster control-plane benchmark on a local 3-node Strom cluster (one command):

    STROM_BIN=target/release/strom python3 scripts/bench-cluster.py [--topics 1000] [--failovers 20]

Starts 3 `strom serve` nodes on 127.0.0.1 (fresh temporary data directories), then measures:

1. creating TOPICS topics x 10 partitions one after another through node 2 (CreateTopics v2,
   forwarded to the controller when node 2 is not it): total time, p50/p99/max per create;
2. metadata propagation for 50 more topics: after CreateTopics returns at node 1, how long until
   *every* node's Metadata lists the topic with leaders (polled every 0.5 ms): p50/p99/max;
3. controller failover, FAILOVERS times: kill -9 of the controller, then how long until a
   CreateTopics through a survivor succeeds (retried every 10 ms; each attempt is a new
   connection), p50/max; the node is restarted on its data, and before the next run the cluster
   lists 3 brokers and a CreateTopics through the restarted node has succeeded (it has caught
   up);
3b. broker failure detection, FENCES times: kill -9 of a broker that is not the controller,
   then how long until the controller's Metadata no longer lists it (fenced), p50/max;
4. produce at full load (strom bench, 256 B, 128 in flight, acks=all, 12 partitions) for
   LOAD_SECS while the nodes heartbeat: no broker may be fenced (strom_cluster_broker_fenced_total
   on every node stays 0).

Talks the Kafka wire protocol directly (Metadata v1, CreateTopics v2) so each request goes to
exactly the node named. Prints a Markdown table of results.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

BIN = os.environ.get("STROM_BIN", "target/release/strom")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --- a minimal Kafka client: just the two requests this benchmark needs -------------------

def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Conn:
    def __init__(self, addr, timeout=10):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.corr = 0

    def call(self, api_key, version, body):
        self.corr += 1
        header = struct.pack(">hhi", api_key, version, self.corr) + _str("bench-cluster")
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        corr = struct.unpack(">i", data[:4])[0]
        assert corr == self.corr, "correlation id"
        return data[4:]

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def close(self):
        self.sock.close()


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.i)
        self.i += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.b[self.i:self.i + n].decode()
        self.i += n
        return s


def metadata(conn, topics=None):
    """Metadata v1: (brokers, controller, {topic: [leader per partition]})."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics)
    r = Reader(conn.call(3, 1, body))
    brokers = []
    for _ in range(r.take(">i")):
        node = r.take(">i")
        r.string()
        r.take(">i")
        r.string()
        brokers.append(node)
    controller = r.take(">i")
    out = {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")
        leaders = []
        for _ in range(r.take(">i")):
            r.take(">h")
            r.take(">i")
            leaders.append(r.take(">i"))
            for _ in range(r.take(">i")):
                r.take(">i")
            for _ in range(r.take(">i")):
                r.take(">i")
        if err == 0:
            out[name] = leaders
    return brokers, controller, out


def create_topic(conn, name, partitions=10, timeout_ms=30000, replication_factor=1):
    """CreateTopics v2; returns the topic's error code."""
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">ihii", partitions, replication_factor, 0, 0)
    body += struct.pack(">ib", timeout_ms, 0)
    r = Reader(conn.call(19, 2, body))
    r.take(">i")  # throttle
    n = r.take(">i")
    assert n == 1
    r.string()
    return r.take(">h")


# --- the cluster ---------------------------------------------------------------------------

class Cluster:
    def __init__(self, root, n=3, extra=()):
        self.root, self.n, self.extra = root, n, list(extra)
        self.internal = [free_port() for _ in range(n)]
        self.kafka = [free_port() for _ in range(n)]
        self.metrics = [free_port() for _ in range(n)]
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(self.internal))
        self.procs = [None] * n

    def addr(self, node):
        return f"127.0.0.1:{self.kafka[node - 1]}"

    def start(self, node):
        i = node - 1
        ready = os.path.join(self.root, f"ready-{node}")
        if os.path.exists(ready):
            os.remove(ready)
        log = open(os.path.join(self.root, f"node-{node}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            [BIN, "serve", "--node-id", str(node), "--listen", self.addr(node),
             "--data-dir", os.path.join(self.root, f"data-{node}"),
             "--metrics-listen", f"127.0.0.1:{self.metrics[i]}", "--ready-file", ready,
             "--cluster-id", "bench", "--voters", self.voters,
             "--internal-listen", f"127.0.0.1:{self.internal[i]}", *self.extra],
            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        deadline = time.time() + 60
        while not os.path.exists(ready):
            assert self.procs[i].poll() is None, f"node {node} exited; see {self.root}/node-{node}.log"
            assert time.time() < deadline, f"node {node} not ready"
            time.sleep(0.01)

    def kill9(self, node):
        p = self.procs[node - 1]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p:
                p.wait(timeout=60)

    def wait_brokers(self, via, count, deadline_s=60):
        deadline = time.time() + deadline_s
        while True:
            try:
                c = Conn(self.addr(via))
                brokers, controller, _ = metadata(c, [])
                c.close()
                if len(brokers) == count and controller > 0:
                    return controller
            except OSError:
                pass
            assert time.time() < deadline, f"node {via} never listed {count} brokers"
            time.sleep(0.02)

    def metric(self, node, name):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics[node - 1]}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1000:.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--failovers", type=int, default=20)
    ap.add_argument("--fences", type=int, default=10)
    ap.add_argument("--load-secs", type=int, default=20)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="strom-bench-cluster-")
    c = Cluster(root)
    rows = []
    try:
        for node in (1, 2, 3):
            c.start(node)
        for node in (1, 2, 3):  # a node lists itself even while fenced: ask every one
            c.wait_brokers(node, 3)

        # 1. Topic creation through node 2.
        conn = Conn(c.addr(2), timeout=60)
        lat = []
        t0 = time.time()
        for i in range(args.topics):
            s = time.time()
            err = create_topic(conn, f"bench-{i:05d}")
            lat.append(time.time() - s)
            assert err == 0, f"create bench-{i}: error {err}"
        total = time.time() - t0
        conn.close()
        rows.append((f"create {args.topics} topics x 10 partitions (through node 2)",
                     f"total {total:.1f} s; per create p50 {ms(pct(lat, 50))}, p99 {ms(pct(lat, 99))}, max {ms(max(lat))}"))

        # 2. Propagation: create at node 1, poll every node until it lists the topic with leaders.
        conns = {n: Conn(c.addr(n)) for n in (1, 2, 3)}
        prop = []
        for i in range(50):
            name = f"prop-{i:03d}"
            assert create_topic(conns[1], name) == 0
            done = time.time()
            pending = {1, 2, 3}
            while pending:
                for n in list(pending):
                    _, _, topics = metadata(conns[n], [name])
                    if name in topics and all(l > 0 for l in topics[name]):
                        pending.discard(n)
                if pending:
                    time.sleep(0.0005)
            prop.append(time.time() - done)
        for x in conns.values():
            x.close()
        rows.append(("metadata propagation (CreateTopics returned at node 1 -> every node serves it), 50 topics",
                     f"p50 {ms(pct(prop, 50))}, p99 {ms(pct(prop, 99))}, max {ms(max(prop))}"))

        # 3. Controller failover.
        fail = []
        for run in range(args.failovers):
            controller = c.wait_brokers(1, 3)
            survivor = 1 if controller != 1 else 2
            killed = time.time()
            c.kill9(controller)
            while True:
                try:
                    x = Conn(c.addr(survivor), timeout=15)
                    err = create_topic(x, f"failover-{run:02d}", partitions=1, timeout_ms=10000)
                    x.close()
                    if err == 0:
                        break
                except OSError:
                    pass
                assert time.time() - killed < 60, "no write committed within 60 s of the kill"
                time.sleep(0.01)
            fail.append(time.time() - killed)
            c.start(controller)
            c.wait_brokers(survivor, 3)
            # Caught up before the next kill: a write through the restarted node returns once
            # that node has applied it, so its log no longer holds entries of its old term (a
            # candidate with such a stale log is refused and delays the election by a timeout).
            deadline = time.time() + 60
            while True:
                try:
                    x = Conn(c.addr(controller), timeout=15)
                    err = create_topic(x, f"settle-{run:02d}", partitions=1, timeout_ms=10000)
                    x.close()
                    if err == 0:
                        break
                except OSError:
                    pass
                assert time.time() < deadline, "the restarted node never caught up"
                time.sleep(0.01)
        rows.append((f"controller failover: kill -9 -> next committed write, {args.failovers} runs",
                     f"p50 {ms(pct(fail, 50))}, max {ms(max(fail))}"))

        # 3b. Broker failure detection: kill -9 of a broker that is not the controller, then how
        # long until the controller's Metadata stops listing it (fenced: its partitions show
        # offline and, once replicated, move).
        fence = []
        for run in range(args.fences):
            controller = c.wait_brokers(1, 3)
            victim = next(n for n in (1, 2, 3) if n != controller)
            killed = time.time()
            c.kill9(victim)
            while True:
                x = Conn(c.addr(controller))
                brokers, _, _ = metadata(x, [])
                x.close()
                if victim not in brokers:
                    break
                assert time.time() - killed < 60, "the killed broker was never fenced"
                time.sleep(0.005)
            fence.append(time.time() - killed)
            c.start(victim)
            for node in (1, 2, 3):
                c.wait_brokers(node, 3)
        rows.append((f"broker failure detection: kill -9 of a non-controller broker -> fenced (gone from the controller's Metadata), {args.fences} runs",
                     f"p50 {ms(pct(fence, 50))}, max {ms(max(fence))}"))

        # 4. Full produce load: no broker fenced.
        fenced_before = sum(c.metric(n, "strom_cluster_broker_fenced_total") for n in (1, 2, 3))
        subprocess.run([BIN, "topic", "create", "-b", c.addr(1), "-p", "12", "load"], check=True,
                       stdout=subprocess.DEVNULL)
        out = subprocess.run([BIN, "bench", "-b", ",".join(c.addr(n) for n in (1, 2, 3)), "--topic", "load",
                              "--concurrency", "128", "--message-size", "256", "--acks", "all",
                              "--warmup", "2s", "--duration", f"{args.load_secs}s", "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"strom bench failed: {out.stderr[-2000:]}")
        report = json.loads(out.stdout)
        fenced_after = sum(c.metric(n, "strom_cluster_broker_fenced_total") for n in (1, 2, 3))
        rows.append((f"full produce load ({args.load_secs} s, 12 partitions over 3 nodes, 256 B, 128 in flight, acks=all)",
                     f"{report['produce']['msgs_per_sec']:.0f} msg/s, p99 {report['produce_latency']['p99_ms']} ms; "
                     f"brokers fenced meanwhile: {int(fenced_after - fenced_before)}"))
    finally:
        c.stop_all()
    print("| measurement | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
