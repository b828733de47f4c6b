"""Bounds on what a stored job may hold, in one place: the schema's CHECK constraints (models.py,
migration 0004) hold these values, and the API refuses anything outside them with a 400 before
the database sees it.

Why bound at all: PostgreSQL accepts ``-infinity``, ``infinity`` and instants thousands of years
away, and asyncpg turns Python's ``datetime.min``/``max`` into the infinities. Such a value in
one row once failed every claim of its queue (on PostgreSQL before 17, ``now() - '-infinity'``
raises), and one at ``+infinity`` never runs. A range no real schedule leaves keeps every
timestamp finite and every subtraction defined.
"""

import re
from datetime import UTC, datetime
from typing import Any, Final

# A job may be scheduled from the Unix epoch (anything earlier is as good as "now") up to, not
# including, the year 2200 (a century and more ahead: no schedule needs longer). Every other
# timestamp of a job is written by the database's clock, so the same range holds them all;
# it also keeps them inside what Python's datetime can read (years 1 to 9999), so that no
# row can make reading a job fail.
SCHEDULED_AT_MIN: Final = datetime(1970, 1, 1, tzinfo=UTC)
SCHEDULED_AT_MAX: Final = datetime(2200, 1, 1, tzinfo=UTC)

# The longest per-job attempt timeout the table holds: one week. NaN and infinity are refused
# too (PostgreSQL orders NaN above every number, so "timeout_s > 0" alone lets it through).
MAX_TIMEOUT_S: Final = 7 * 24 * 3600.0

# The errors of past attempts a job keeps (jobs.errors, newest last): enough to see a pattern
# in a job's failures, bounded so that a job retried a thousand times stays a small row.
MAX_ERRORS_KEPT: Final = 20

# The longest error text stored for one attempt (jobs.error_message and each entry of
# jobs.errors): a handler's message may be anything, a traceback's worth or a whole payload.
MAX_ERROR_CHARS: Final = 2000

# How far ahead a handler may Snooze its job: a week, like the longest attempt timeout, so that
# now() + snooze always stays inside the range the table holds.
MAX_SNOOZE_S: Final = 7 * 24 * 3600.0

# Limits per key (concurrency_key): a key names a group of jobs across queues and workers. A
# key is stored in a row of its own (concurrency_keys) and in every job of its group, so it is
# bounded like a queue name; the limits are bounded so that the claim's arithmetic stays small.
MAX_CONCURRENCY_KEY_LENGTH: Final = 255
MAX_CONCURRENCY_LIMIT: Final = 10_000
MAX_KEY_RATE_PER_S: Final = 10_000.0
# The slowest rate limit, of a concurrency key and of an API key: one a day. Slower is a
# schedule, not a rate; and a rate near zero makes one start move the bucket's instant beyond
# the range of a timestamp, which failed every claim of the key's queues.
MIN_RATE_PER_S: Final = 1 / 86_400
MAX_KEY_RATE_BURST: Final = 10_000

# The most jobs one job may depend on (depends_on): each is an edge row and a lock at enqueue.
MAX_DEPENDENCIES: Final = 100

# The longest queue name and job type (jobs.queue, jobs.type, schedules.name, schedules.queue
# are varchar(255)); the API refuses longer ones with a 400.
MAX_NAME_CHARS: Final = 255

# What PostgreSQL's text and jsonb cannot store: a NUL character, and a UTF-16 surrogate, which
# in a Python string is always a lone one (a pair decodes to one character).
UNSTORABLE_CHARACTER: Final = re.compile("[\x00\ud800-\udfff]")

JsonPath = tuple[str | int, ...]


def unstorable_text_at(value: Any, path: JsonPath = ()) -> JsonPath | None:  # noqa: ANN401 - any JSON value
    """The path to the first string (member name or value) of the JSON value ``value``
    holding an :data:`UNSTORABLE_CHARACTER`; None if there is none."""
    if isinstance(value, str):
        return path if UNSTORABLE_CHARACTER.search(value) else None
    if isinstance(value, dict):
        for name, member in value.items():
            if isinstance(name, str) and UNSTORABLE_CHARACTER.search(name):
                return path
            if (found := unstorable_text_at(member, (*path, name))) is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (found := unstorable_text_at(item, (*path, index))) is not None:
                return found
    return None
