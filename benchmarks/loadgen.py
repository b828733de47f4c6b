"""A fallback HTTP load generator for when wrk is not installed: N connections, each a loop of
POST /jobs, for a fixed time, in a process of its own. Prints one JSON object:
{"requests": ..., "errors": ..., "seconds": ..., "latencies_ms": [sampled]}.

As post_job.lua for wrk: BENCH_API_KEY set, each request carries it; ``--idempotency``, each
request carries an Idempotency-Key of its own."""

import argparse
import asyncio
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field

import httpx

BODY = b'{"type":"noop","payload":{"source":"loadgen"}}'


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


_SENT = itertools.count()


async def client_loop(
    client: httpx.AsyncClient, url: str, until: float, tally: Tally, *, idempotency: bool
) -> None:
    headers = {"content-type": "application/json"}
    if key := os.environ.get("BENCH_API_KEY"):
        headers["authorization"] = f"Bearer {key}"
    while time.perf_counter() < until:
        if idempotency:
            headers["idempotency-key"] = f"loadgen-{next(_SENT)}"
        started = time.perf_counter()
        try:
            response = await client.post(url, content=BODY, headers=headers)
            ok = response.status_code == 201
        except httpx.HTTPError:
            ok = False
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        tally.requests += 1
        tally.errors += 0 if ok else 1


async def run(
    url: str, connections: int, seconds: float, *, idempotency: bool
) -> dict[str, object]:
    tally = Tally()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(
            *(
                client_loop(client, url, until, tally, idempotency=idempotency)
                for _ in range(connections)
            )
        )
        elapsed = time.perf_counter() - started
    return {**asdict(tally), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--idempotency", action="store_true", help="an Idempotency-Key each")
    args = parser.parse_args()
    result = asyncio.run(
        run(args.url, args.connections, args.seconds, idempotency=args.idempotency)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
