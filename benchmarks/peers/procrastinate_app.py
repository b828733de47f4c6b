"""The Procrastinate app that bench_procrastinate.py measures, with its two tasks.

A module of its own because Procrastinate wants its app importable by name: the worker
processes load it with ``procrastinate --app procrastinate_app.app worker``. Their DSN and
pool size come from the environment (``BENCH_PEER_DSN``, ``BENCH_PEER_POOL_SIZE``), set by
the benchmark; the benchmark's own client side swaps in connectors of its own.
"""

# mypy: allow-untyped-decorators

from __future__ import annotations

import os
import time

import peers_common as common  # type: ignore[import-not-found]
import procrastinate  # type: ignore[import-not-found]


def connector(dsn: str, pool_size: int) -> procrastinate.PsycopgConnector:
    """Procrastinate's psycopg 3 connector, its pool of ``pool_size`` connections opened at
    once (min = max)."""
    return procrastinate.PsycopgConnector(conninfo=dsn, min_size=pool_size, max_size=pool_size)


app = procrastinate.App(
    connector=connector(
        os.environ.get("BENCH_PEER_DSN", ""), int(os.environ.get("BENCH_PEER_POOL_SIZE", "10"))
    )
)


@app.task(name="noop")
async def noop(i: int = 0) -> None:  # noqa: ARG001 (Procrastinate passes it by name)
    """The no-op job of the throughput and enqueue measurements."""
    return


@app.task(name="stamp")
async def stamp(i: int, t: float) -> None:
    """The latency job: ``t`` is the time.time() at which its defer was issued."""
    common.record_latency(i, t, time.time())


# In a worker process the benchmark started: die with it, and exit at its deadline.
common.worker_safeguards()
