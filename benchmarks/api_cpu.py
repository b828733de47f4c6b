"""The API's own CPU per ``POST /jobs``, measured in one process with no server and no network:
the app is called as ASGI, ``concurrency`` requests at a time, the way uvicorn would call it.
What it leaves out (the HTTP parser, the socket) is what `make bench`'s http_single adds.

    python benchmarks/api_cpu.py postgresql://postgres@127.0.0.1:5432/scratch [--profile]

The database must be empty or migrated; the script migrates it and makes an API key. Requests
are the wrk script's (post_job.lua): API key on (or ``--auth off``: no key, and the Host
allow-list checked instead), optionally an Idempotency-Key each."""

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import time
from collections.abc import AsyncIterator
from typing import Any

import uvloop

from queue_api.app import create_app
from queue_api.settings import ApiSettings
from queue_core import migrate
from queue_core.db import create_pool
from queue_core.gc_tuning import tune_gc
from queue_core.keys import KeyStore, Scope
from queue_core.log import configure

BODY = b'{"type":"noop","payload":{"source":"wrk"}}'


async def _key(url: str) -> str:
    pool = await create_pool(url, max_size=1)
    try:
        return (
            await KeyStore(pool).create(
                name=f"cpu-bench-{time.time_ns()}", scopes=[Scope.JOBS_WRITE]
            )
        ).secret
    finally:
        await pool.close()


def _scope(key: str, idempotency: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    if idempotency is not None:
        headers.append((b"idempotency-key", idempotency.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/jobs",
        "raw_path": b"/jobs",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:  # noqa: ANN401
    """The ASGI lifespan, as a server runs it: start-up before requests, shutdown after."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"start-up failed: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def _request(app: Any, scope: dict[str, Any], statuses: list[int]) -> None:  # noqa: ANN401
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the client stays connected
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)


async def _run(args: argparse.Namespace) -> None:
    key = await _key(args.url)
    app = create_app(ApiSettings(database_url=args.url, auth=args.auth))
    async with _lifespan(app):  # the lifespan makes the pool and the services
        statuses: list[int] = []
        counter = 0

        async def burst(requests: int) -> None:
            nonlocal counter
            remaining = requests
            while remaining:
                batch = min(remaining, args.concurrency)
                scopes = []
                for _ in range(batch):
                    counter += 1
                    idem = f"cpu-{counter}" if args.idempotency else None
                    scopes.append(_scope(key, idem))
                await asyncio.gather(*(_request(app, s, statuses) for s in scopes))
                remaining -= batch

        await burst(500)  # warm-up: caches, the pool, the key checker
        statuses.clear()
        profile = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        await burst(args.requests)
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    bad = [s for s in statuses if s != 201]
    print(
        f"{args.requests} requests, concurrency {args.concurrency}: "
        f"{cpu / args.requests * 1e6:.1f} µs CPU per request (whole process, database "
        f"driver included), {args.requests / wall:,.0f} requests/s in-process; "
        f"{len(bad)} not 201"
    )
    if profile:
        stats = pstats.Stats(profile).sort_stats(args.sort)
        stats.print_stats(args.top)
        if args.callers:
            stats.print_callers(args.callers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--idempotency", action="store_true")
    parser.add_argument(
        "--auth", choices=["on", "off"], default="on", help="API_AUTH (off: the Host check runs)"
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--callers", help="also print who calls functions matching this")
    args = parser.parse_args()
    migrate.upgrade(args.url)
    configure(level="WARNING", fmt="json")  # as `make bench` runs the API
    tune_gc()
    uvloop.run(_run(args))


if __name__ == "__main__":
    main()
