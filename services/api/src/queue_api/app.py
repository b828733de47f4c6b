"""The Litestar application factory: routes, dependencies, error handling and lifespan."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Reference, SecurityScheme

from queue_api.auth import BEARER_SCHEME, PUBLIC, Authorizer, KeyChecker
from queue_api.body_timeout import BodyDeadlines
from queue_api.browser_requests import BrowserRequestGuard, host_allow_list
from queue_api.context import SERVICES_STATE, Services, provide_context, provide_services
from queue_api.enqueue_fast_path import check_nothing_bypassed
from queue_api.errors import EXCEPTION_HANDLERS
from queue_api.job_waiter import JobWaiter
from queue_api.metrics import (
    AUTH_ENABLED,
    MetricsController,
    PrometheusQueueEvents,
    configure_labels,
)
from queue_api.openapi_document import StrictStructSchemaPlugin
from queue_api.openapi_pages import render_plugins
from queue_api.rate_limit import RateLimiter
from queue_api.request_telemetry import request_telemetry_middleware
from queue_api.routes.health import HealthController
from queue_api.routes.job_actions import JobActionsController
from queue_api.routes.job_admin import JobAdminController
from queue_api.routes.job_batches import JobBatchesController
from queue_api.routes.job_list import JobListController
from queue_api.routes.jobs import JobsController
from queue_api.routes.jobs_v1 import create_job
from queue_api.routes.keys import KeysController
from queue_api.routes.queues import QueuesController
from queue_api.routes.schedules import SchedulesController
from queue_api.routes.workers import WorkersController
from queue_api.security_headers import add_security_headers
from queue_api.served import WorkerDirectory
from queue_api.settings import ApiSettings
from queue_api.ui import console_router, static_router
from queue_api.ui.rendering import SESSIONS_STATE, template_config
from queue_api.ui.sessions import Sessions, SessionSigner
from queue_core.db import create_pool
from queue_core.fleet import Fleet
from queue_core.keys import KeyStore
from queue_core.listing import JobListing
from queue_core.log import get_logger
from queue_core.queue import Queue
from queue_core.schedules import Schedules

log = get_logger("queue_api.app")

# The OpenAPI document's one security scheme: each operation lists the scopes it needs under it,
# and Swagger UI's Authorize button takes a key.
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    BEARER_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="tq_<prefix>_<secret>",
        description=(
            "An API key, made with `queue-keys create` or POST /v1/keys. Each operation names "
            "the scopes it needs."
        ),
    )
}


def _cors(settings: ApiSettings) -> CORSConfig | None:
    """CORS for the configured origins only; none at all by default. Keys travel in the
    Authorization header, never in cookies, so credentials are never allowed."""
    if not settings.cors_allow_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        expose_headers=[
            "Idempotent-Replayed",
            "Location",
            "Retry-After",
            "X-Job-Duplicate",
            "X-Request-ID",
        ],
        allow_credentials=False,
        max_age=600,
    )


def create_app(settings: ApiSettings) -> Litestar:
    """Build the application. Nothing connects until start-up; a database that is down at
    start-up is tolerated, and the pool connects once it is back."""
    configure_labels(job_types=settings.metrics_job_types, queues=settings.metrics_queues)
    auth_enabled = settings.auth == "on"
    AUTH_ENABLED.set(1 if auth_enabled else 0)
    key_checker = KeyChecker(cache_s=settings.auth_cache_s)
    rate_limiter = RateLimiter()
    sessions = Sessions(
        SessionSigner(settings.ui_secret),
        key_checker,
        auth_enabled=auth_enabled,
        session_s=settings.ui_session_s,
        always_secure=settings.ui_cookies_always_secure,
    )
    worker_directory = WorkerDirectory(
        reject_unknown=settings.reject_unknown_types,
        named_types=settings.metrics_job_types,
        named_queues=settings.metrics_queues,
    )

    body_deadlines = BodyDeadlines(settings.body_timeout_s)
    cors = _cors(settings)
    hosts = host_allow_list(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url, max_size=settings.db_pool_size, application_name="queue-api"
        )
        listing = JobListing(pool)
        key_store = KeyStore(pool)
        services = Services(
            queue=Queue(pool, events=PrometheusQueueEvents()),
            listing=listing,
            waiter=JobWaiter(listing),
            key_store=key_store,
            fleet=Fleet(pool),
            schedules=Schedules(pool),
            worker_directory=worker_directory,
            rate_limiter=rate_limiter,
            idempotency_ttl_s=settings.idempotency_ttl_s,
        )
        app.state[SERVICES_STATE] = services
        worker_directory.attach(services.fleet)
        app.state.key_checker = key_checker
        app.state[SESSIONS_STATE] = sessions
        key_checker.attach(key_store)
        sessions.attach(key_store)
        rate_limiter.attach(key_store)
        if not auth_enabled:
            log.warning(
                "api_auth_disabled",
                detail="API_AUTH=off: anyone who can reach the API may do anything",
            )
        if hosts is not None:
            log.info(
                "api_hosts_served",
                hosts=sorted(hosts.names | {"localhost", "*.localhost"}),
                detail="and any IP literal; a request naming another Host gets 403 "
                "(API_ALLOWED_HOSTS)",
            )
        flusher = asyncio.create_task(key_checker.run_flusher(), name="api-keys-last-used")
        body_timer = asyncio.create_task(body_deadlines.run(), name="api-body-deadlines")
        try:
            yield
        finally:
            await services.waiter.close()
            for task in (flusher, body_timer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await pool.close()

    app = Litestar(
        route_handlers=[
            HealthController,
            JobsController,
            JobBatchesController,
            JobActionsController,
            JobListController,
            JobAdminController,
            create_job,  # after JobListController: see routes/jobs_v1.py
            KeysController,
            QueuesController,
            SchedulesController,
            WorkersController,
            MetricsController,
            console_router(),
            static_router(),
        ],
        middleware=[
            request_telemetry_middleware,
            # Before anything reads the body or the key: another site's request is refused as
            # it arrives (queue_api.browser_requests says why for every route, the enqueue
            # fast path's included, whatever API_AUTH says).
            BrowserRequestGuard(hosts=hosts, cors=cors).middleware,
            body_deadlines.middleware,
            Authorizer(
                key_checker, rate_limiter, enabled=auth_enabled, session=sessions.caller
            ).middleware,
        ],
        # One dependency per handler (queue_api.context says why).
        dependencies={
            "ctx": Provide(provide_context, sync_to_thread=False),
            "services": Provide(provide_services, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_security_headers],
        cors_config=cors,
        lifespan=[lifespan],
        template_config=template_config(),
        plugins=[StrictStructSchemaPlugin()],
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # queue_core.log.configure owns logging
        openapi_config=OpenAPIConfig(
            title="Task queue API",
            version="0.1.0",
            description="Enqueue jobs for the workers and read their status.",
            components=Components(security_schemes=SECURITY_SCHEMES),
            render_plugins=render_plugins(),
            # The documentation pages and the document itself are open, like the probes.
            openapi_router=Router(
                "/schema", route_handlers=[], include_in_schema=False, opt=PUBLIC
            ),
        ),
    )
    check_nothing_bypassed(app)
    return app
