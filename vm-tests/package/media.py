"""Numbered media stream for the package scenario (runs in the guest's namespaces).

media.py send SRC DST RATE MAX_SECS STOP_FILE OUT_FILE
    Sends 172-byte RTP-sized datagrams from SRC ("ip:port") to DST at RATE per second, each
    carrying its sequence number (from 0), until STOP_FILE exists or MAX_SECS have passed.
    Writes "sent=N" to OUT_FILE, and every 0.1 s the count so far to OUT_FILE.progress.
media.py sink ADDR EXPECTED_SRC MAX_SECS STOP_FILE OUT_FILE
    Receives on ADDR ("ip:port") until STOP_FILE exists and 2 s passed without a datagram (or
    MAX_SECS in all) and writes "received=N unique=U dups=D bad=B missing=M gaps=FIRST-LAST,..." to
    OUT_FILE: B counts datagrams not from EXPECTED_SRC (the relay's rewritten source) or not
    172 bytes long, M the sequence numbers below the highest seen that never arrived.
Both print "ready" once their socket is open.
"""
import os
import socket
import struct
import sys
import time

SIZE = 172


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def send(src, dst, rate, max_secs, stop_file, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(addr(src))
    dst = addr(dst)
    print("ready", flush=True)
    pad = bytes(SIZE - 8)
    start = time.monotonic()
    seq = 0
    slot = 0
    # Paced in 10 ms slots: each slot tops the count up to rate * elapsed.
    while True:
        elapsed = time.monotonic() - start
        if elapsed > max_secs or os.path.exists(stop_file):
            break
        due = int(elapsed * rate) + 1
        while seq < due:
            s.sendto(struct.pack("!Q", seq) + pad, dst)
            seq += 1
        slot += 1
        if slot % 10 == 0:
            with open(out + ".progress.tmp", "w") as f:
                f.write(f"{seq}\n")
            os.replace(out + ".progress.tmp", out + ".progress")
        time.sleep(0.01)
    with open(out, "w") as f:
        f.write(f"sent={seq}\n")


def sink(listen, expected, max_secs, stop_file, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind(addr(listen))
    print("ready", flush=True)
    seen = bytearray()
    received = dups = bad = 0
    deadline = time.monotonic() + max_secs
    s.settimeout(1)
    last = time.monotonic()
    while time.monotonic() < deadline:
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            if time.monotonic() - last > 2 and os.path.exists(stop_file):
                break
            continue
        last = time.monotonic()
        received += 1
        if f"{src[0]}:{src[1]}" != expected or len(data) != SIZE:
            bad += 1
            continue
        (seq,) = struct.unpack("!Q", data[:8])
        if seq >= 10_000_000:
            bad += 1
            continue
        if seq >= len(seen):
            seen.extend(bytes(seq + 1 - len(seen)))
        if seen[seq]:
            dups += 1
        seen[seq] = 1
    gaps = []
    i = 0
    while i < len(seen):
        if not seen[i]:
            j = i
            while j + 1 < len(seen) and not seen[j + 1]:
                j += 1
            gaps.append(f"{i}-{j}")
            i = j + 1
        else:
            i += 1
    missing = len(seen) - sum(seen)
    with open(out, "w") as f:
        f.write(
            f"received={received} unique={sum(seen)} dups={dups} bad={bad} "
            f"missing={missing} highest={len(seen) - 1} gaps={','.join(gaps[:10]) or '-'}\n"
        )


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7])
    elif sys.argv[1] == "sink":
        sink(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
