"""The asyncio client: ``Client``'s twin, line by line, with ``await``. Keep the two in step:
tests/client checks that they have the same methods."""

import asyncio
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack
from uuid import UUID

import httpx

from queue_client import calls
from queue_client.calls import DEFAULT_TIMEOUT_S, Call
from queue_client.errors import WaitTimeoutError
from queue_client.models import (
    ApiKey,
    BatchEnqueued,
    BulkResult,
    CreatedApiKey,
    Enqueued,
    EnqueueOptions,
    Job,
    JobFilter,
    JobPage,
    JobStatusRecord,
    JobSummary,
    KeyLimits,
    NewJob,
    QueueInfo,
    QueuePause,
    Schedule,
    WorkerInfo,
)
from queue_client.retrying import Pause, Retrying, RetryPolicy
from queue_client.waiting import Waiting

T = TypeVar("T")


class AsyncClient:
    """``AsyncClient("http://queue-api:8000", api_key)``; ``async with`` it, or ``aclose()``.

    ``http`` is an ``httpx.AsyncClient`` of your own (proxies, TLS, a transport); its base URL, and
    headers not set on it, come from the other arguments.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = calls.set_up(http or httpx.AsyncClient(timeout=timeout_s), base_url, api_key)
        self._retry = retry or RetryPolicy()

    @property
    def base_url(self) -> str:
        """The API's URL, as shown in errors: without a user and password in it."""
        return calls.shown_url(self._http.base_url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send ``call``, retrying as ``RetryPolicy`` says, and decode its answer."""
        retrying = Retrying(call, self._retry, self.base_url)
        while True:
            try:
                response = await self._send(call.build(self._http))
            except httpx.RequestError as exc:  # no answer, or one that would not decode
                settled = retrying.settle(exc)
            else:
                settled = retrying.settle(response)
            if not isinstance(settled, Pause):
                return settled
            await asyncio.sleep(settled.seconds)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """The answer to ``request``, its body read within ``calls.Answer``'s bounds."""
        streamed = await self._http.send(request, stream=True)
        try:
            answer = calls.Answer(streamed)
            async for chunk in streamed.aiter_raw():
                answer.feed(chunk)
        finally:
            await streamed.aclose()
        return answer.whole()

    # -- jobs ---------------------------------------------------------------------------------

    async def enqueue(
        self, job_type: str, payload: Mapping[str, Any], **options: Unpack[EnqueueOptions]
    ) -> Enqueued:
        """Enqueue a job (``POST /v1/jobs``) and get it back whole. Retried safely: the call
        carries an Idempotency-Key (a new UUID unless ``idempotency_key`` is given)."""
        return await self.call(calls.enqueue(job_type, payload, options))

    async def enqueue_batch(self, jobs: Iterable[NewJob]) -> BatchEnqueued:
        """Up to 1,000 jobs, stored all or none; each item gets its own idempotency key."""
        return await self.call(calls.enqueue_batch(jobs))

    async def get_job(self, job_id: UUID | str) -> Job:
        return await self.call(calls.get_job(job_id))

    async def wait(self, job_id: UUID | str, *, timeout_s: float | None = None) -> Job:
        """The job once finished (completed, failed or cancelled): long polls until then, or
        ``WaitTimeoutError`` (with the job as last seen) after ``timeout_s``."""
        waiting = Waiting(timeout_s)
        while True:
            poll = calls.get_job(job_id, wait_s=waiting.poll_s(), deadline=waiting.deadline)
            job = await self.call(poll)
            if job.status.is_final:
                return job
            if waiting.expired():
                raise WaitTimeoutError(job, timeout_s or 0.0)
            await asyncio.sleep(waiting.pause_s())

    async def list_jobs(
        self, *, cursor: str | None = None, limit: int | None = None, **where: Unpack[JobFilter]
    ) -> JobPage:
        """One page of jobs, newest first; pass its ``next_cursor`` for the next."""
        return await self.call(calls.list_jobs(where, cursor=cursor, limit=limit))

    async def iter_jobs(
        self, *, page_size: int | None = None, **where: Unpack[JobFilter]
    ) -> AsyncIterator[JobSummary]:
        """Every job matching the filters, newest first, a page at a time."""
        cursor, cursors = None, calls.Cursors("GET /v1/jobs")
        while True:
            page = await self.call(calls.list_jobs(where, cursor=cursor, limit=page_size))
            cursor = cursors.follow(page.next_cursor)  # before its jobs: none seen twice
            for job in page.jobs:
                yield job
            if cursor is None:
                return

    async def cancel_job(self, job_id: UUID | str) -> JobStatusRecord:
        return await self.call(calls.cancel_job(job_id))

    async def retry_job(self, job_id: UUID | str) -> JobStatusRecord:
        return await self.call(calls.retry_job(job_id))

    async def delete_job(self, job_id: UUID | str) -> None:
        await self.call(calls.delete_job(job_id))

    async def cancel_jobs(self, *, limit: int, **where: Unpack[JobFilter]) -> int:
        """Cancel up to ``limit`` pending or running jobs matching the filters: how many (in
        as many requests as the API's bound on the jobs one request reads takes)."""
        return await self._bulk(calls.bulk_steps(calls.cancel_jobs, where, limit))

    async def retry_jobs(self, *, limit: int, **where: Unpack[JobFilter]) -> int:
        """Run again up to ``limit`` failed or cancelled jobs matching the filters: how many
        (in as many requests as the API's bound on the jobs one request reads takes)."""
        return await self._bulk(calls.bulk_steps(calls.retry_jobs, where, limit))

    async def _bulk(self, steps: Generator[Call[BulkResult], BulkResult, int]) -> int:
        try:
            call = next(steps)
            while True:
                call = steps.send(await self.call(call))
        except StopIteration as done:
            affected: int = done.value
            return affected

    # -- the seed's endpoints -----------------------------------------------------------------

    async def health(self) -> str:
        return await self.call(calls.health())

    async def ready(self) -> bool:
        return await self.call(calls.ready())

    async def legacy_enqueue(
        self, job_type: str, payload: Mapping[str, Any], **options: Unpack[EnqueueOptions]
    ) -> UUID:
        """``POST /jobs``: the new job's id only. Prefer ``enqueue``."""
        return await self.call(calls.legacy_enqueue(job_type, payload, options))

    async def legacy_status(self, job_id: UUID | str) -> JobStatusRecord:
        """``GET /jobs/status``. Prefer ``get_job``."""
        return await self.call(calls.legacy_status(job_id))

    # -- queues, workers, schedules -----------------------------------------------------------

    async def list_queues(self) -> list[QueueInfo]:
        return await self.call(calls.list_queues())

    async def pause_queue(self, name: str) -> QueuePause:
        return await self.call(calls.set_queue_paused(name, paused=True))

    async def resume_queue(self, name: str) -> QueuePause:
        return await self.call(calls.set_queue_paused(name, paused=False))

    async def list_workers(self) -> list[WorkerInfo]:
        return await self.call(calls.list_workers())

    async def list_schedules(self) -> list[Schedule]:
        return await self.call(calls.list_schedules())

    async def pause_schedule(self, name: str) -> Schedule:
        return await self.call(calls.set_schedule_paused(name, paused=True))

    async def resume_schedule(self, name: str) -> Schedule:
        return await self.call(calls.set_schedule_paused(name, paused=False))

    # -- API keys -----------------------------------------------------------------------------

    async def create_key(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        queues: Iterable[str] | None = None,
        expires_in_days: int | None = None,
        **limits: Unpack[KeyLimits],
    ) -> CreatedApiKey:
        """A new key; its secret (``.key``) is in this answer only."""
        return await self.call(calls.create_key(name, scopes, queues, expires_in_days, limits))

    async def list_keys(self) -> list[ApiKey]:
        return await self.call(calls.list_keys())

    async def revoke_key(self, name_or_prefix: str) -> ApiKey:
        return await self.call(calls.revoke_key(name_or_prefix))

    async def set_key_limits(self, name_or_prefix: str, **limits: Unpack[KeyLimits]) -> ApiKey:
        """Replace the key's rate limits; one left out is removed."""
        return await self.call(calls.set_key_limits(name_or_prefix, limits))
