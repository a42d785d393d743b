#!/usr/bin/env python3
"""Raw write + fdatasync loops against a directory, no Strom involved: the reference the
preallocation figures in docs/PERFORMANCE.md were compared with.

usage: scripts/disk-probe.py DIR MODE [MODE ...]
  append      write 12.8 KiB at the end of a growing file, fdatasync, repeat (4 s)
  zeroed      the same into a file zero-filled and fsynced beforehand (4 s)
  fallocate   the same into a posix_fallocate'd file (unwritten extents) (4 s)
  zero-ahead  append while a second thread zero-fills 1 MiB pieces up to 8 MiB ahead (4 s)
  concurrent  one thread writes 2.7 KiB pieces, another fdatasyncs in a loop; counts
              fdatasyncs over 10 ms (8 s)
"""
import os, sys, threading, time

CHUNK = 12800


def report(mode, lat, secs):
    lat.sort()
    n = len(lat)
    print(f"{mode:10} fsyncs/s={n/secs:7.0f} mean={sum(lat)/n*1e3:.3f}ms p50={lat[n//2]*1e3:.3f}ms p99={lat[int(n*.99)]*1e3:.3f}ms "
          f"p999={lat[int(n*.999)]*1e3:.2f}ms max={lat[-1]*1e3:.1f}ms over10ms={sum(1 for x in lat if x > 0.01)}")


def loop(d, mode, secs=4):
    path = os.path.join(d, f"probe_{mode}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if mode == "zeroed":
        z = b"\0" * (1 << 20)
        for _ in range(256):
            os.write(fd, z)
        os.fsync(fd)
    if mode == "fallocate":
        os.posix_fallocate(fd, 0, 512 << 20)
        os.fsync(fd)
    stop = time.time() + secs
    pos, zeroed, cv = [0], [0], threading.Condition()

    def zeroer():
        z = b"\0" * (1 << 20)
        while time.time() < stop:
            with cv:
                while zeroed[0] - pos[0] > (8 << 20) and time.time() < stop:
                    cv.wait(0.01)
                p = zeroed[0]
            os.pwrite(fd, z, p)
            os.fdatasync(fd)
            with cv:
                zeroed[0] = p + len(z)
                cv.notify_all()

    if mode == "zero-ahead":
        zt = threading.Thread(target=zeroer)
        zt.start()
    buf, lat = os.urandom(CHUNK), []
    while time.time() < stop:
        if mode == "zero-ahead":
            with cv:
                while zeroed[0] < pos[0] + CHUNK:
                    cv.wait()
        os.pwrite(fd, buf, pos[0])
        pos[0] += CHUNK
        t = time.perf_counter()
        os.fdatasync(fd)
        lat.append(time.perf_counter() - t)
    if mode == "zero-ahead":
        zt.join()
    report(mode, lat, secs)
    os.close(fd)
    os.unlink(path)


def concurrent(d, secs=8, chunk=2700):
    path = os.path.join(d, "probe_concurrent")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    z = b"\0" * (1 << 20)
    for _ in range(256):
        os.write(fd, z)
    os.fsync(fd)
    buf, pos, stop, lock, lat = os.urandom(chunk), [0], time.time() + secs, threading.Lock(), []

    def writer():
        while time.time() < stop:
            with lock:
                os.pwrite(fd, buf, pos[0])
                pos[0] += chunk
            time.sleep(0.00005)

    def syncer():
        while time.time() < stop:
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)

    ts = [threading.Thread(target=writer), threading.Thread(target=syncer)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    report("concurrent", lat, secs)
    os.close(fd)
    os.unlink(path)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for m in sys.argv[2:]:
        concurrent(sys.argv[1]) if m == "concurrent" else loop(sys.argv[1], m)
