#!/usr/bin/env python3
"""A node's own API clients, emulated for bench/node-local.sh.

Opens CLIENTS long-lived keep-alive connections to ADDR (a kubelet, kube-proxy, CNI
agents): four in five send a small GET every PERIOD seconds, one in five makes one
request and then waits on the open connection as a watch does. Then one more connection
sends SAMPLES small requests back to back and prints their latency percentiles:

    p50_us p90_us p99_us failed

and, with --hold SECONDS, keeps every connection open that long after printing (so the
caller can read the proxy's memory with all clients connected).
"""
import socket, sys, time, threading, argparse

p = argparse.ArgumentParser()
p.add_argument("addr")
p.add_argument("--clients", type=int, default=50)
p.add_argument("--period", type=float, default=0.2)
p.add_argument("--samples", type=int, default=3000)
p.add_argument("--hold", type=float, default=0)
a = p.parse_args()
host, port = a.addr.rsplit(":", 1)
host = host.strip("[]")
REQ = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def connect():
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(s, buf=bytearray()):
    s.sendall(REQ)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if len(body) >= n:
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(head[:40])
                return


stop = threading.Event()
failed = [0]
conns = []


def client(i, s):
    watch = i % 5 == 4
    try:
        request(s)
        while not stop.is_set():
            if watch:
                stop.wait(1)
            else:
                stop.wait(a.period)
                if not stop.is_set():
                    request(s)
    except Exception:
        failed[0] += 1


threads = []
for i in range(a.clients):
    s = connect()
    conns.append(s)
    t = threading.Thread(target=client, args=(i, s), daemon=True)
    t.start()
    threads.append(t)
time.sleep(0.5)

s = connect()
for _ in range(200):  # warm up
    request(s)
lat = []
for _ in range(a.samples):
    t0 = time.perf_counter_ns()
    try:
        request(s)
    except Exception:
        failed[0] += 1
        s = connect()
        continue
    lat.append((time.perf_counter_ns() - t0) / 1000)
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{pct(0.5):.1f} {pct(0.9):.1f} {pct(0.99):.1f} {failed[0]}", flush=True)
if a.hold:
    time.sleep(a.hold)
stop.set()
for t in threads:
    t.join(timeout=2)
