"""The benchmark's figures as a table side by side with the peers, and the issue's targets.

``bench.py`` prints both at the end of a run from the same results it writes as JSON. Figures
are reported, never asserted: a target line says whether this run's figure met it.
"""

from collections.abc import Callable
from typing import Any

PEERS = (("pgqueuer", "PgQueuer"), ("procrastinate", "Procrastinate"))
NA = "-"


def _rate(value: float | None) -> str:
    return NA if value is None else f"{value:,.0f}/s"


def _ms(*values: float) -> str:
    return " / ".join(f"{v:.1f}" for v in values) + " ms"


def _get(data: dict[str, Any], *path: str) -> Any:  # noqa: ANN401 - JSON-shaped figures
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _peer_process(results: dict[str, Any], peer: str, procs: str) -> dict[str, Any] | None:
    figures: dict[str, Any] | None = _get(results, "peers", peer, "process", procs)
    return figures


def _setting(run: dict[str, Any] | None, jobs: int | None) -> str:
    """The peer's best setting of the sweep, as its harness names it, and its job count where
    it ran fewer jobs than we did (Procrastinate, at about 1k jobs/s)."""
    if run is None:
        return ""
    notes = [f"{key} {run[key]}" for key in ("batch", "concurrency") if run.get(key)][:1]
    if run.get("jobs") != jobs:
        notes.append(f"{run['jobs']:,} jobs")
    return f" ({', '.join(notes)})" if notes else ""


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return NA
    return f"{ours / theirs:.2f}x"


def table(results: dict[str, Any]) -> str:
    """Markdown: a row per workload, ours then each peer, then ours/peer."""
    header = ["workload", "ours", *(name for _, name in PEERS), *(f"ours/{n}" for _, n in PEERS)]
    rows: list[list[str]] = []

    for procs, key, label in (
        ("1", "process_1_proc", "1 worker process"),
        ("2", "process_2_procs", "2 worker processes"),
    ):
        ours = _get(results, key, "jobs_per_s")
        concurrency = _get(results, key, "concurrency")
        jobs = _get(results, key, "jobs")
        peers = [_peer_process(results, peer, procs) for peer, _ in PEERS]
        peer_rates = [None if p is None else float(p["jobs_per_s"]) for p in peers]
        rows.append(
            [
                f"process {jobs or 0:,} no-op jobs, {label}",
                _rate(ours) + (f" (concurrency {concurrency})" if concurrency else ""),
                *(
                    _rate(rate) + _setting(p, jobs)
                    for rate, p in zip(peer_rates, peers, strict=True)
                ),
                *(_ratio(ours, rate) for rate in peer_rates),
            ]
        )

    db_cpu = _get(results, "process_2_procs", "db_cpu_us_per_job")
    peer_cpu = [_get(_peer_process(results, p, "2") or {}, "db_cpu_us_per_job") for p, _ in PEERS]
    rows.append(
        [
            "PostgreSQL CPU per processed job, 2 processes",
            NA if db_cpu is None else f"{db_cpu:.1f} µs",
            *(NA if c is None else f"{c:.1f} µs" for c in peer_cpu),
            *(NA for _ in PEERS),
        ]
    )

    def enqueue(figures: dict[str, Any] | None) -> str:
        if figures is None:
            return NA
        return (
            f"{_rate(figures['jobs_per_s'])}, p50/p99 {_ms(figures['p50_ms'], figures['p99_ms'])}"
        )

    single = _get(results, "http_single")
    peer_single = [_get(results, "peers", p, "enqueue_single") for p, _ in PEERS]
    api_cpu = _get(results, "http_single", "api_cpu_us_per_request")
    rows.append(
        [
            (
                "single enqueue, 64 concurrent (ours: HTTP POST /jobs with an API key; peers: "
                "Python API)"
            ),
            enqueue(single)
            + ("" if single is None else f", {single['generator']}")
            + ("" if api_cpu is None else f", API CPU {api_cpu:.0f} µs a request"),
            *(enqueue(s) for s in peer_single),
            *(_ratio(single and single["jobs_per_s"], s and s["jobs_per_s"]) for s in peer_single),
        ]
    )

    bulk = _get(results, "python_bulk", "jobs_per_s")
    http_batch = _get(results, "http_batch", "jobs_per_s")
    peer_bulk = [_get(results, "peers", p, "enqueue_bulk", "jobs_per_s") for p, _ in PEERS]
    rows.append(
        [
            "bulk enqueue, 1,000 a call (Python API)",
            _rate(bulk),
            *(_rate(b) for b in peer_bulk),
            *(_ratio(bulk, b) for b in peer_bulk),
        ]
    )
    rows.append(
        ["batch enqueue over HTTP, POST /v1/jobs/batch of 1,000", _rate(http_batch), NA, NA, NA, NA]
    )

    def latency(figures: dict[str, Any] | None) -> str:
        if figures is None:
            return NA
        return _ms(figures["p50_ms"], figures["p95_ms"], figures["p99_ms"])

    ours_latency = _get(results, "latency")
    peer_latency = [_get(results, "peers", p, "latency") for p, _ in PEERS]
    rows.append(
        [
            "enqueue-to-start, idle worker, p50 / p95 / p99",
            latency(ours_latency),
            *(latency(p) for p in peer_latency),
            *(
                _ratio(ours_latency and ours_latency["p50_ms"], p and p["p50_ms"]) + " (p50)"
                if ours_latency and p
                else NA
                for p in peer_latency
            ),
        ]
    )

    rows += _whole_path_rows(results)

    history = _get(results, "history")
    if history is not None:
        rows.append(
            [
                f"with {history['with_history']['finished_rows']:,} finished jobs in the table",
                (
                    f"{history['throughput_ratio']:.2f}x the throughput, "
                    f"{history['claim_latency_ratio']:.2f}x the claim latency "
                    f"({history['with_history']['claim_ms']:.2f} ms) of an empty table"
                ),
                *(NA for _ in PEERS),
                *(NA for _ in PEERS),
            ]
        )

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mixed(figures: dict[str, Any] | None, enqueue_p: str) -> str:
    if figures is None:
        return NA
    return (
        f"{_rate(figures['completed_jobs_per_s'])} completed; enqueue p50/p99 {enqueue_p}; "
        f"to start {_ms(figures['start_p50_ms'], figures['start_p99_ms'])}; "
        f"to completed {_ms(figures['done_p50_ms'], figures['done_p99_ms'])}"
    )


def _lone(figures: dict[str, Any] | None) -> str:
    if figures is None:
        return NA
    return f"{figures['p50_ms']:.2f} / {figures['p99_ms']:.2f} ms"


def _whole_path_rows(results: dict[str, Any]) -> list[list[str]]:
    """The mixed workload and the lone caller, ours beside the peers that ran them."""
    rows: list[list[str]] = []
    ours = _get(results, "mixed")
    peers = [_get(results, "peers", p, "mixed") for p, _ in PEERS]
    if ours is not None or any(peers):
        single = ours and ours["single"]
        rows.append(
            [
                (
                    "mixed: single enqueues from 64 connections + a batch of 100 every 50 ms,"
                    " 2 worker processes (ours: HTTP, API key and an Idempotency-Key on every job;"
                    " peers: Python API)"
                ),
                _mixed(ours, single and _ms(single["p50_ms"], single["p99_ms"])),
                *(_mixed(p, p and _ms(p["single_p50_ms"], p["single_p99_ms"])) for p in peers),
                *(
                    _ratio(ours and ours["completed_jobs_per_s"], p and p["completed_jobs_per_s"])
                    for p in peers
                ),
            ]
        )
    lone = _get(results, "lone_caller")
    peer_lone = [_get(results, "peers", p, "lone_caller") for p, _ in PEERS]
    if lone is not None or any(peer_lone):
        for label, key, beside_peers in (
            ("lone sequential caller, ms a call p50 / p99 (Python API)", "python_enqueue", True),
            ("lone sequential caller over HTTP, one keep-alive client, API key", "http", True),
            ("the same with an Idempotency-Key on every call", "http_idempotency_key", True),
            (
                "lone caller over HTTP, one wrk connection (no Python client), API key",
                "http_wrk_one_connection",
                True,
            ),
            # The floors under the lone caller: the insert without the group commit, and an
            # HTTP round trip without the database (no peer has a counterpart of the latter).
            (
                "its INSERT alone, on a held connection (asyncpg, nothing of the queue around it)",
                "python_statement_alone",
                True,
            ),
            (
                "GET /health over one wrk connection (HTTP alone, no database)",
                "http_health_wrk_one_connection",
                False,
            ),
        ):
            mine = lone and lone.get(key)
            theirs = peer_lone if beside_peers else [None for _ in peer_lone]
            rows.append(
                [
                    label,
                    _lone(mine),
                    *(_lone(p) for p in theirs),
                    *(
                        _ratio(mine and mine["p50_ms"], p and p["p50_ms"]) + " (p50)"
                        if mine and p
                        else NA
                        for p in theirs
                    ),
                ]
            )
    return rows


def _target(label: str, measured: Callable[[], tuple[str, bool] | None]) -> str:
    try:
        outcome = measured()
    except (KeyError, TypeError, ZeroDivisionError):
        outcome = None
    if outcome is None:
        return f"- {label}: not measured in this run"
    text, met = outcome
    return f"- {label}: {text} -> {'met' if met else 'NOT met'}"


def targets(results: dict[str, Any]) -> str:
    """The issue's targets, each with this run's figure and whether it met it."""
    r = results  # short: every check below reads it

    def processing() -> tuple[str, bool] | None:
        if "peers" not in r:
            return None
        ones = r["ratios"]["pgqueuer"]
        low = min(ones["process_1_proc"], ones["process_2_procs"])
        text = f"{ones['process_1_proc']:.2f}x (1 process), {ones['process_2_procs']:.2f}x (2)"
        return text, low >= 2.0

    def http() -> tuple[str, bool]:
        s = r["http_single"]
        cpu = s["api_cpu_us_per_request"]
        text = (
            f"{s['jobs_per_s']:,.0f}/s, p99 {s['p99_ms']:.1f} ms, API CPU {cpu:.0f} µs a "
            f"request, {s['errors']} errors"
        )
        met = s["jobs_per_s"] >= 8000 and s["p99_ms"] < 20 and cpu <= 120 and not s["errors"]
        return text, met

    def mixed() -> tuple[str, bool]:
        m = r["mixed"]
        text = (
            f"{m['completed_jobs_per_s']:,.0f} jobs/s completed, enqueue-to-start p99 "
            f"{m['start_p99_ms']:.1f} ms"
        )
        return text, m["completed_jobs_per_s"] >= 5000 and m["start_p99_ms"] < 50

    def lone() -> tuple[str, bool]:
        theirs = r["peers"]["pgqueuer"]["lone_caller"]["p50_ms"]
        python = r["lone_caller"]["python_enqueue"]["p50_ms"]
        http = r["lone_caller"]["http"]["p50_ms"]
        wrk = (r["lone_caller"].get("http_wrk_one_connection") or {}).get("p50_ms", float("nan"))
        insert = (r["lone_caller"].get("python_statement_alone") or {}).get("p50_ms", float("nan"))
        health = (r["lone_caller"].get("http_health_wrk_one_connection") or {}).get(
            "p50_ms", float("nan")
        )
        text = (
            f"Python API {python:.2f} ms, HTTP {http:.2f} ms (httpx), {wrk:.2f} ms (one wrk "
            f"connection), PgQueuer {theirs:.2f} ms (p50); the floors: our INSERT alone "
            f"{insert:.2f} ms, GET /health {health:.2f} ms"
        )
        return text, max(python, http) <= theirs

    def batch() -> tuple[str, bool]:
        http_rate, bulk = r["http_batch"]["jobs_per_s"], r["python_bulk"]["jobs_per_s"]
        text = f"{http_rate:,.0f}/s over HTTP, {bulk:,.0f}/s enqueue_many"
        return text, min(http_rate, bulk) >= 50_000

    def latency() -> tuple[str, bool]:
        lat = r["latency"]
        text = f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms"
        return text, lat["p50_ms"] <= 5 and lat["p99_ms"] <= 20

    def history() -> tuple[str, bool]:
        h = r["history"]
        text = (
            f"throughput {h['throughput_ratio']:.2f}x, "
            f"claim latency {h['claim_latency_ratio']:.2f}x"
        )
        return text, h["throughput_ratio"] >= 0.9 and h["claim_latency_ratio"] <= 1.1

    return "\n".join(
        [
            _target("processing >= 2x PgQueuer's best configuration", processing),
            _target(
                "single HTTP enqueue with an API key, 64 connections: >= 8,000/s, p99 < 20 ms,"
                " API CPU <= 120 µs a request",
                http,
            ),
            _target(
                "mixed: >= 5,000 HTTP-enqueued jobs/s completed, enqueue-to-start p99 < 50 ms",
                mixed,
            ),
            _target("lone sequential caller no slower than PgQueuer's (p50)", lone),
            _target("batch enqueue >= 50,000/s", batch),
            _target("idle latency p50 <= 5 ms and p99 <= 20 ms", latency),
            _target("1M finished rows within 10 % of an empty table", history),
        ]
    )
