#!/usr/bin/env python3
"""Turns what scripts/fuzz-seeds.sh recorded into seed files of fuzz/corpus/<target>/.

Usage: seeds.py client|cluster TMP CORPUS
  client:  TMP/frames (request frames) and TMP/data (the broker's data directory)
  cluster: TMP/internal (internal frames) and TMP/node<i>/raft (Raft logs, snapshots)
"""
import hashlib, json, os, struct, sys
LIMIT = 64 * 1024  # seeds over 64 KiB are left out


def put(corpus, target, data):
    if len(data) <= LIMIT:
        with open(os.path.join(corpus, target, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
            f.write(data)


def node_files(data):
    """The journal's first file (its start), its checkpoint and the topic registry."""
    journal = os.path.join(data, ".journal")
    wals = sorted(f for f in os.listdir(journal) if f.endswith(".wal")) if os.path.isdir(journal) else []
    out = []
    for path, cap in ((os.path.join(journal, wals[0]) if wals else "", 16 * 1024),
                      (os.path.join(journal, "checkpoint"), 4096), (os.path.join(data, "topics.json"), 16 * 1024)):
        out.append(open(path, "rb").read()[:cap] if path and os.path.exists(path) else b"")
    return out


def client(tmp, corpus):
    for name in sorted(os.listdir(os.path.join(tmp, "frames"))):
        put(corpus, "request_frame", open(os.path.join(tmp, "frames", name), "rb").read())
    data = os.path.join(tmp, "data")
    for part in sorted(os.listdir(data)):
        d = os.path.join(data, part)
        if not os.path.isdir(d) or part.startswith("."):
            continue
        logs = sorted(f for f in os.listdir(d) if f.endswith(".log"))
        for log in logs[:1]:
            seg = open(os.path.join(d, log), "rb").read()
            at, kept, end = 0, 0, 0
            while at + 61 <= len(seg):
                (length,) = struct.unpack(">i", seg[at + 8 : at + 12])
                if length <= 0 or at + 12 + length > len(seg):
                    break
                if kept < 3:
                    put(corpus, "record_batch", b"\x00" + seg[at : at + 12 + length])
                    kept += 1
                if at + 12 + length <= LIMIT // 2:
                    end = at + 12 + length
                at += 12 + length
            files = [seg[:end]]
            for ext in ("index", "timeindex", "snapshot"):
                p = os.path.join(d, log[:-3] + ext)
                files.append(open(p, "rb").read()[:4096] if os.path.exists(p) else b"")
            files += node_files(data)
            out = b"\x00" + b"".join(struct.pack(">I", len(f)) + f for f in files)
            put(corpus, "recovery", out)


def cluster(tmp, corpus):
    for name in sorted(os.listdir(os.path.join(tmp, "internal"))):
        put(corpus, "wire_frame", open(os.path.join(tmp, "internal", name), "rb").read())
    commands = []
    for i in (1, 2, 3):
        raft = os.path.join(tmp, f"node{i}", "raft")
        for name in sorted(os.listdir(raft)):
            data = open(os.path.join(raft, name), "rb").read()
            if "log" in name:
                put(corpus, "raft_log", data[:LIMIT])
                at = 0
                while at + 8 <= len(data):
                    n = int.from_bytes(data[at:at + 4], "big")
                    try:
                        rec = json.loads(data[at + 8:at + 8 + n])
                    except ValueError:
                        break
                    entry = rec.get("Entry") if isinstance(rec, dict) else None
                    for e in [entry] if isinstance(entry, dict) else []:
                        payload = e.get("payload", {})
                        if isinstance(payload, dict) and "Normal" in payload:
                            commands.append(payload["Normal"])
                    at += 8 + n
            elif "snapshot" in name:
                try:
                    snap = json.loads(data)
                except ValueError:
                    continue
                state = snap.get("cluster", snap) if isinstance(snap, dict) else snap
                put(corpus, "state_machine", json.dumps({"state": state, "commands": []}).encode())
    for k in range(0, len(commands), 10):
        put(corpus, "state_machine", json.dumps(commands[k:k + 10]).encode())


if __name__ == "__main__":
    {"client": client, "cluster": cluster}[sys.argv[1]](sys.argv[2], sys.argv[3])
