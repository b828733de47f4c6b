"""Settling dependants: telling the jobs that wait for others (``depends_on``) of an outcome.

A job waits while ``waiting_for`` (its dependencies not completed yet) is above 0; the claim
only sees jobs at 0. When a job with dependants (``dependants_unsettled``) gets an outcome, the
caller that recorded it settles its dependants, in a transaction of its own after that
outcome committed (``sql/gated.sql``, steps in order):

1. lock the parents that have an outcome and dependants to settle (id order);
2. lock their dependants that may change (id order): no dependant can be added meanwhile, since
   enqueueing one locks its parents first;
3. completed parents: satisfy each edge once, and count the dependant's ``waiting_for`` down;
   one at 0 is due, and its queue is woken;
4. failed or cancelled parents: their pending dependants fail (or are cancelled) with a reason
   naming the parent; those dependants' own dependants are settled next, one level a round;
5. mark the parents settled.

Why a later transaction, not the outcome's own statement: a dependant enqueued while that
statement waited for the parent's row is invisible to it (its snapshot is older), but the
parent's row, re-read after the wait, says ``dependants_unsettled``. A process that dies between
the outcome and the settling leaves the flag set, and the sweep (``Queue.settle_stragglers``,
run by the workers' rescuer) settles those. Every step is idempotent (the edges' ``satisfied``
guards the counts), so settling twice, or concurrently, changes nothing more.
"""

from collections.abc import Sequence
from typing import Final
from uuid import UUID

from queue_core.keyed import Db
from queue_core.sql import GATED_QUERIES

Q_QUEUES_OF_JOBS: Final = GATED_QUERIES["queues_of_jobs"]
Q_LOCK_SETTLED_PARENTS: Final = GATED_QUERIES["lock_settled_parents"]
Q_LOCK_DEPENDANTS: Final = GATED_QUERIES["lock_dependants"]
Q_SATISFY_DEPENDENCIES: Final = GATED_QUERIES["satisfy_dependencies"]
Q_FAIL_DEPENDANTS: Final = GATED_QUERIES["fail_dependants"]
Q_MARK_SETTLED: Final = GATED_QUERIES["mark_settled"]
Q_UNSETTLED_PARENTS: Final = GATED_QUERIES["unsettled_parents"]
Q_JOB_DEPENDENCIES: Final = GATED_QUERIES["job_dependencies"]
Q_SETTLE_LOCK_TIMEOUT: Final = GATED_QUERIES["settle_lock_timeout"]
Q_FAIL_ORPHANED_DEPENDANTS: Final = GATED_QUERIES["fail_orphaned_dependants"]
Q_RELEASE_MISCOUNTED_DEPENDANTS: Final = GATED_QUERIES["release_miscounted_dependants"]


# Levels of dependants settled in one transaction: a chain of thousands failing with its first
# job is settled a bounded piece at a time, each piece's locks held for a fraction of a second.
MAX_LEVELS_PER_TRANSACTION: Final = 50
# The longest a settling transaction waits for a row lock. A caller's own transaction that
# enqueues a job depending on a waiting one (queue_core.transactional) locks that one until it
# commits, which may be minutes; settling waited as long, and with it the settler, the rescuer
# (its sweep, then its rescues) and a cancel over HTTP. Given up, the parent stays flagged and
# the sweep settles it once the lock is gone. Finishes and claims hold rows for milliseconds.
SETTLE_LOCK_TIMEOUT_S: Final = 2.0


async def settle(db: Db, parent_ids: Sequence[UUID]) -> list[UUID]:
    """Settle the dependants of ``parent_ids`` that have an outcome, transitively, at most
    :data:`MAX_LEVELS_PER_TRANSACTION` levels deep; ``db`` must be one connection inside a
    transaction. Returns the jobs whose dependants are still to settle (the next level,
    flagged ``dependants_unsettled``: the sweep finds them too)."""
    parents = sorted(set(parent_ids))
    for _ in range(MAX_LEVELS_PER_TRANSACTION):
        if not parents:
            break
        locked = await Q_LOCK_SETTLED_PARENTS.fetch(db, parent_ids=parents)
        if not locked:  # none has an outcome with dependants to settle: nothing left
            return []
        ids = [row["id"] for row in locked]
        await Q_LOCK_DEPENDANTS.fetch(db, parent_ids=ids)
        completed = [row["id"] for row in locked if row["status"] == "completed"]
        ended_parents = [row["id"] for row in locked if row["status"] != "completed"]
        if completed:
            await Q_SATISFY_DEPENDENCIES.fetch(db, parent_ids=completed)
        ended = await Q_FAIL_DEPENDANTS.fetch(db, parent_ids=ended_parents) if ended_parents else []
        await Q_MARK_SETTLED.execute(db, parent_ids=ids)
        parents = sorted(row["id"] for row in ended if row["dependants_unsettled"])
    return parents
