#!/usr/bin/env python3
"""Raw probe of the ways to make appends to N files durable in one round, no Strom involved:
the measurement behind the node-wide journal (docs/ARCHITECTURE.md, "Group commit across
partitions"; figures in docs/PERFORMANCE.md).

Each round appends ROUND_BYTES in total, spread evenly over N files (one write per file,
as N partitions each receiving part of a round's produce requests), then makes them
durable by one of:
  per-file    fdatasync each file in turn (Strom before the journal, one flusher thread)
  parallel    fdatasync the files from THREADS threads at once (Strom before the journal
              had 4 flusher threads)
  journal     also write the round's bytes to one preallocated journal file and fdatasync
              only that (the files are synced later, at checkpoints: here every
              CHECKPOINT_ROUNDS rounds, inside the timed loop, so their cost is counted)
  syncfs      syncfs(2) once (Linux-only; one journal commit for the whole filesystem,
              but it also writes back every other dirty file there, and a FUSE
              filesystem is not told of it)

usage: scripts/commit-probe.py DIR [N ...]   (default N: 1 16 256 1000)
env:   ROUND_BYTES (32768: 128 messages of 256 B), SECS per case (3), THREADS (4),
       CHECKPOINT_ROUNDS (2000)
"""
import ctypes
import os
import sys
import threading
import time

ROUND = int(os.environ.get("ROUND_BYTES", 32768))
SECS = float(os.environ.get("SECS", 3))
THREADS = int(os.environ.get("THREADS", 4))
CHECKPOINT_ROUNDS = int(os.environ.get("CHECKPOINT_ROUNDS", 2000))
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def open_files(d, n, tag):
    fds = []
    for i in range(n):
        fds.append(os.open(os.path.join(d, f"{tag}-{i}"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
    return fds


def parallel_sync(fds):
    chunks = [fds[i::THREADS] for i in range(THREADS)]
    ts = [threading.Thread(target=lambda c=c: [os.fdatasync(f) for f in c]) for c in chunks if c]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run(d, n, mode):
    fds = open_files(d, n, f"p{mode}")
    per = max(1, ROUND // n)
    buf = os.urandom(per)
    jfd, jpos = None, 0
    if mode == "journal":
        jfd = os.open(os.path.join(d, "journal"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        z = b"\0" * (1 << 20)
        for _ in range(256):
            os.write(jfd, z)
        os.fsync(jfd)
        jbuf = os.urandom(ROUND)
    rounds, lat = 0, []
    stop = time.time() + SECS
    while time.time() < stop:
        t = time.perf_counter()
        for f in fds:
            os.write(f, buf)
        if mode == "per-file":
            for f in fds:
                os.fdatasync(f)
        elif mode == "parallel":
            parallel_sync(fds)
        elif mode == "journal":
            if jpos + ROUND > (256 << 20):
                jpos = 0
            os.pwrite(jfd, jbuf, jpos)
            jpos += ROUND
            os.fdatasync(jfd)
            if rounds % CHECKPOINT_ROUNDS == CHECKPOINT_ROUNDS - 1:
                parallel_sync(fds)
        elif mode == "syncfs":
            if libc.syncfs(fds[0]) != 0:
                raise OSError(ctypes.get_errno(), "syncfs")
        lat.append(time.perf_counter() - t)
        rounds += 1
    for f in fds:
        os.close(f)
    if jfd is not None:
        os.close(jfd)
    lat.sort()
    k = len(lat)
    print(f"N={n:5} {mode:9} rounds/s={k / SECS:7.0f} p50={lat[k // 2] * 1e3:7.3f}ms "
          f"p99={lat[int(k * .99)] * 1e3:7.3f}ms  MB/s={k * per * n / SECS / 1e6:6.1f}", flush=True)


def main():
    d = sys.argv[1]
    ns = [int(x) for x in sys.argv[2:]] or [1, 16, 256, 1000]
    os.makedirs(d, exist_ok=True)
    print(f"# dir={d} round={ROUND} B secs={SECS} threads={THREADS} checkpoint every {CHECKPOINT_ROUNDS} rounds")
    for n in ns:
        for mode in ["per-file", "parallel", "journal", "syncfs"]:
            run(d, n, mode)


if __name__ == "__main__":
    main()
