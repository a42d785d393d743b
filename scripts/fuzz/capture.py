#!/usr/bin/env python3
"""A TCP proxy that records every Kafka request frame clients send through it.

Usage: capture.py LISTEN_PORT UPSTREAM_HOST:PORT OUT_DIR [--raw]

Each client->broker frame (the payload after its 4-byte size: header and body) is written to
OUT_DIR/<api key>-<api version>-<sha1 prefix>, deduplicated by content. With --raw (for
Strom's internal protocol, also length-prefixed) the whole frame, size included, is written
as OUT_DIR/<sha1 prefix>. The broker must
advertise this proxy's address (`strom serve --advertised-address`), so clients send all
their traffic here after bootstrapping. Stops on SIGTERM.
"""
import hashlib
import os
import socket
import struct
import sys
import threading


RAW = "--raw" in sys.argv


def pump(src, dst, frames_out):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if frames_out is None:
                continue
            buf += data
            while len(buf) >= 4:
                (size,) = struct.unpack(">i", buf[:4])
                if size < 0 or len(buf) < 4 + size:
                    break
                frame, buf = buf[4 : 4 + size], buf[4 + size :]
                if RAW:
                    whole = struct.pack(">i", size) + frame
                    path = os.path.join(frames_out, hashlib.sha1(whole).hexdigest()[:16])
                    if not os.path.exists(path):
                        with open(path, "wb") as f:
                            f.write(whole)
                elif len(frame) >= 4:
                    key, version = struct.unpack(">hh", frame[:4])
                    name = f"{key:02}-{version:02}-{hashlib.sha1(frame).hexdigest()[:16]}"
                    path = os.path.join(frames_out, name)
                    if not os.path.exists(path):
                        with open(path, "wb") as f:
                            f.write(frame)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    port, upstream, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    host, uport = upstream.rsplit(":", 1)
    os.makedirs(out, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    while True:
        client, _ = srv.accept()
        try:
            broker = socket.create_connection((host, int(uport)))
        except OSError:
            client.close()  # upstream not listening (yet): the peer retries
            continue
        threading.Thread(target=pump, args=(client, broker, out), daemon=True).start()
        threading.Thread(target=pump, args=(broker, client, None), daemon=True).start()


if __name__ == "__main__":
    main()
