"""UDP sink for the relay scenarios: sink.py ADDR PORT EXPECTED_SRC OUT_FILE.

Counts datagrams on ADDR:PORT until 1 s of silence (at most 30 s in all) and checks that every
one came from EXPECTED_SRC ("ip:port", the relay's rewritten source) and carries 172 bytes.
Writes "count=N bad=M first_bad=..." to OUT_FILE. Starts listening before it prints "ready".
"""
import socket
import sys
import time

addr, port, expected, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# Bursts arrive faster than Python reads; the buffer must hold a whole burst.
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
s.bind((addr, port))
print("ready", flush=True)
count = bad = 0
first_bad = "-"
deadline = time.monotonic() + 30
s.settimeout(10)  # the first datagram may take a while: the scenario starts pktgen after us
while time.monotonic() < deadline:
    try:
        data, src = s.recvfrom(2048)
    except socket.timeout:
        break
    s.settimeout(1)
    count += 1
    if f"{src[0]}:{src[1]}" != expected or len(data) != 172:
        bad += 1
        if first_bad == "-":
            first_bad = f"{src[0]}:{src[1]}/{len(data)}B"
with open(out, "w") as f:
    f.write(f"count={count} bad={bad} first_bad={first_bad}\n")
