"""queue_core: the task queue's schema, migrations and semantics.

Everything that changes a job's state lives here, in SQL (``sql/queries.sql``) run by
:class:`queue_core.queue.Queue`. The API and the worker are thin shells around it.
"""
