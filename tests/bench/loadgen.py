"""A small HTTP/1.1 load generator for the webhook benchmark, run in its own process.

httpx spends more CPU per request than the server we measure, so on a two-core
machine it would measure itself. This one writes pre-built requests on keep-alive
connections and reads each answer by its Content-Length: nothing more.

Two modes, both printing one JSON line:
- closed loop: `connections` requests in flight at all times (the most it can take);
- open loop: requests started at a fixed `rate` per second whatever the answers do,
  which is how webhooks arrive; latency counts from the scheduled start, so a server
  falling behind shows as latency rather than as a slower load.

Input on stdin: JSON {"host", "port", "requests": [[path, body, {header: value}], ...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


def build(host: str, port: int, path: str, body: str, headers: dict[str, str]) -> bytes:
    data = body.encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(host: str, port: int, requests: list[bytes], connections: int,
              rate: float | None) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
    start = time.perf_counter()
    for i, request in enumerate(requests):
        queue.put_nowait((request, start + i / rate if rate else 0.0))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                request, due = queue.get_nowait()
                if due:
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                began = due or time.perf_counter()
                status = await exchange(reader, writer, request)
                latencies.append(time.perf_counter() - began)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    wall = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {"n": n, "ok": statuses.get(200, 0), "seconds": wall, "per_second": n / wall,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": latencies[-1] * 1000, "statuses": statuses}


def percentile(ordered: list[float], q: int) -> float:
    """The nearest-rank percentile: the smallest value with q% of values at or below it."""
    return ordered[max(0, -(-len(ordered) * q // 100) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: requests started per second")
    args = parser.parse_args()
    spec = json.load(sys.stdin)
    host, port = spec["host"], spec["port"]
    requests = [build(host, port, path, body, headers)
                for path, body, headers in spec["requests"]]
    try:
        import uvloop
        result = uvloop.run(run(host, port, requests, args.connections, args.rate))
    except ImportError:
        result = asyncio.run(run(host, port, requests, args.connections, args.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
