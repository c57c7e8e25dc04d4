"""A small closed-loop HTTP load generator (no wrk on these machines): N keep-alive connections in
threads of a separate process, each sending the next request as soon as the last answer arrived.

    python benchmarks/loadgen.py URL BODY_JSON --header 'Authorization: Bearer ...' --seconds 10 --connections 8

A ``__N__`` in the body is replaced by a per-request counter (distinct unit ids, so an A/B run
exercises both arms in their real proportions).

Prints one JSON line: requests, errors, req/s, p50/p90/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from urllib.parse import urlparse


def run(url: str, body: bytes, headers: dict[str, str], seconds: float, connections: int, warmup: float = 1.0,
        rate: float | None = None) -> dict:
    """Closed loop by default (each connection sends as soon as it has its answer: the throughput).
    With ``rate`` (requests/s over all connections) it is an open loop: request k of connection i is
    due at ``start + (k * connections + i) / rate`` and its latency counts from when it was due, so a
    server that falls behind is charged for the wait (no coordinated omission)."""
    parsed = urlparse(url)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        hdrs = {"Content-Type": "application/json", **headers}
        template = body.split(b"__N__") if b"__N__" in body else None
        n = 0
        k = 0
        while True:
            t0 = time.perf_counter()
            if rate:
                due = start_at - warmup + (k * connections + i) / rate
                k += 1
                if due > t0:
                    time.sleep(due - t0)
                t0 = due
            if t0 >= stop_at:
                break
            try:
                payload = body if template is None else f"{i}-{n}".encode().join(template)
                n += 1
                conn.request("POST", parsed.path, body=payload, headers=hdrs)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
            t1 = time.perf_counter()
            if t0 >= start_at:
                latencies[i].append(t1 - t0)
                errors[i] += 0 if ok else 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ms = sorted(x * 1000 for lat in latencies for x in lat)
    n = len(all_ms)

    def q(p: float) -> float:
        return all_ms[min(n - 1, int(p * n))] if n else float("nan")

    return {"requests": n, "errors": sum(errors), "rps": n / seconds, "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("body")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=None, help="open loop at this many requests/s in all")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(run(args.url, args.body.encode(), headers, args.seconds, args.connections, rate=args.rate)))


if __name__ == "__main__":
    main()
