"""Browsers watching a board, for the board benchmark, run in their own process: each
client holds one server-sent event stream and notes, for every recipient, when its row first
arrived acknowledged (wall clock, the same machine's clock that stamps the rows).

Prints "ready" once every client has its first event, then on stdin's end (or after
--seconds) one JSON line: {"clients": [{recipient id: arrival time}, ...], "events": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx


async def client(url: str, token: str, seen: dict[str, float], counts: list[int],
                 ready: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    last = ""
    while True:  # a stream ends every few minutes: reconnect where it left off
        if last:
            headers["Last-Event-ID"] = last
        async with httpx.AsyncClient(timeout=None) as http, \
                http.stream("GET", url, headers=headers) as response:
            data, event_id = "", ""
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line == "" and data:
                    now = time.time()
                    event = json.loads(data)
                    counts[0] += 1
                    for row in event.get("recipients", []):
                        if row["state"] == "acknowledged" and str(row["id"]) not in seen:
                            seen[str(row["id"])] = now
                    last, data = event_id, ""
                    ready.set()


async def main_async(url: str, token: str, n: int, seconds: float) -> None:
    seen: list[dict[str, float]] = [{} for _ in range(n)]
    counts = [[0] for _ in range(n)]
    readies = [asyncio.Event() for _ in range(n)]
    tasks = [asyncio.create_task(client(url, token, seen[i], counts[i], readies[i]))
             for i in range(n)]
    await asyncio.gather(*(r.wait() for r in readies))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stop], timeout=seconds)
    for t in tasks:
        t.cancel()
    print(json.dumps({"clients": seen, "events": [c[0] for c in counts]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()
    asyncio.run(main_async(args.url, args.token, args.clients, args.seconds))


if __name__ == "__main__":
    main()
