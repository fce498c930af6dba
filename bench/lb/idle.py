#!/usr/bin/env python3
"""Opens N idle TCP connections to ADDR:PORT (they send nothing), prints `open N` once
they are all established, then holds them until stdin closes. Used by bench/lb.sh to
measure a proxy's RSS with 10,000 idle proxied connections."""
import resource, socket, sys

host, port = sys.argv[1].rsplit(":", 1)
n = int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
conns = []
for i in range(n):
    s = socket.create_connection((host, int(port)), timeout=10)
    conns.append(s)
print(f"open {len(conns)}", flush=True)
sys.stdin.read()
