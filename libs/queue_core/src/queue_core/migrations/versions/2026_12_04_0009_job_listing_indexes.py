"""One index for listing jobs (GET /v1/jobs): failed and cancelled jobs, newest first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

``ix_jobs_failed_cancelled ON jobs (id) INCLUDE (status, type, queue, created_at, finished_at)
WHERE status IN ('failed', 'cancelled')``, built CONCURRENTLY (a big ``jobs`` keeps taking
writes meanwhile; an INVALID leftover of a failed build is dropped and built again).

Why this one and no other. A listing walks an index in id order (ids are UUIDv7: creation
order) and filters what it meets, reading at most ``queue_core.listing.SCAN_BUDGET`` (20,000)
entries a page, so no filter can make a page read the whole table; a page that runs out of
budget comes back short with a cursor. The primary key serves every filter that way. An index
only pays where the primary key's walk would mostly skip: the failed and cancelled jobs that
operators look for, a few percent of a history of completed jobs. Partial, it costs the queue
nothing on the path jobs take: a job that is enqueued, claimed and completed never enters it
(only a failure or a cancel adds an entry, a retry leaves it). Its INCLUDEd columns are what
the listing filters on, so walking it is an index-only scan, never a visit to the scattered
rows of the jobs it skips.

Measured (benchmarks/listing_bench.py and a WAL count per job, 2 shared cores, PostgreSQL 18):

- Write cost, WAL per job from enqueue to completion, durable commits: 1,094 bytes with no
  listing index, 1,090 with this one; 1,390 (+27 %) with the same index over every status
  but completed (pending and running entries are written by every enqueue and every claim:
  every status change is a non-HOT update, status being in ix_jobs_claimable's predicate).
  Timed throughput on this shared machine varied by more than 2x between identical runs, far
  above the 5 % looked for; the WAL volume, exact and repeatable, decided.
- (type, id) and (queue, id), suggested for type and queue filters, were not built: each would
  take three entries per job (pending, running, completed), the cost above or more. With the
  scan budget the primary key serves those filters: at 10 million jobs over 30 days (50 types,
  the rarest 0.5 %, 10 queues), first and deep pages p99 at most 22 ms.
- Failed and cancelled at 10 million jobs (500,000 of them): first and deep pages p99 at most
  24 ms, and 11 ms for failed + one type + one queue (353 matches): walks of 20,000 index
  entries, index-only (9 ms of execution in EXPLAIN ANALYZE). These figures were taken with
  the index over every status but completed; over failed and cancelled only, it is smaller.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name, columns, predicate (spelled out: a revision must not change with the code).
INDEXES = (
    (
        "ix_jobs_failed_cancelled",
        "id) INCLUDE (status, type, queue, created_at, finished_at",
        "status IN ('failed', 'cancelled')",
    ),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns, predicate in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # an INVALID leftover
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON jobs ({columns}) WHERE {predicate}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _, _ in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
