"""The API's /metrics reports the jobs table's size on disk, dead and live rows, and the time
since its last vacuum and analyze, read from PostgreSQL's catalogue with the queue state."""

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from api.support import ApiClient


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("queue_jobs_table_")
    }


async def test_metrics_report_the_jobs_table_size_rows_and_vacuum(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO jobs (id, type, payload) SELECT gen_random_uuid(), 'noop', '{}'"
        " FROM generate_series(1, 500)"
    )
    await db.execute("VACUUM ANALYZE jobs")
    sizes = await db.fetchrow(
        "SELECT pg_relation_size('jobs') AS heap, pg_indexes_size('jobs') AS indexes"
    )
    assert sizes is not None

    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    values = _values(response.text)

    assert values[("queue_jobs_table_bytes", (("part", "heap"),))] == sizes["heap"]
    assert values[("queue_jobs_table_bytes", (("part", "indexes"),))] == sizes["indexes"]
    assert values[("queue_jobs_table_bytes", (("part", "toast"),))] >= 0
    assert values[("queue_jobs_table_live_tuples", ())] == 500
    assert values[("queue_jobs_table_dead_tuples", ())] == 0
    assert 0 <= values[("queue_jobs_table_vacuum_age_seconds", ())] < 3600
    assert 0 <= values[("queue_jobs_table_analyze_age_seconds", ())] < 3600
