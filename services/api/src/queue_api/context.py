"""What a route handler works with: the app's services, and who is calling.

Each handler takes exactly one dependency: ``ctx`` (:class:`RequestContext`) on the routes that
need a key, ``services`` (:class:`Services`) on the open ones. Not one dependency per service:
once a handler has two or more, Litestar resolves them concurrently, with an anyio task group
and a task for each, on every request. On ``POST /jobs`` that cost more of the API's CPU than
storing the job did (a profile: about a third of the request, with four dependencies each
copying the app's state). One provider per handler: no task group, no copies.
"""

from dataclasses import dataclass
from typing import Any, Final

from litestar import Litestar, Request
from litestar.types import Scope

from queue_api.auth import CALLER_STATE, Caller
from queue_api.job_waiter import JobWaiter
from queue_api.rate_limit import RateLimiter
from queue_api.served import WorkerDirectory
from queue_core.fleet import Fleet
from queue_core.keys import KeyStore
from queue_core.listing import JobListing
from queue_core.queue import Queue
from queue_core.schedules import Schedules

SERVICES_STATE: Final = "services"


@dataclass(frozen=True, slots=True)
class Services:
    """One per app, made at start-up on the app's pool (``create_app``'s lifespan)."""

    queue: Queue
    listing: JobListing
    waiter: JobWaiter
    key_store: KeyStore
    fleet: Fleet
    schedules: Schedules
    worker_directory: WorkerDirectory
    rate_limiter: RateLimiter
    idempotency_ttl_s: float  # API_IDEMPOTENCY_TTL_S

    @classmethod
    def of(cls, app: Litestar) -> "Services":
        services: Services = app.state[SERVICES_STATE]
        return services


@dataclass(frozen=True, slots=True)
class RequestContext:
    """A checked request's: who auth.Authorizer let in, and the app's services."""

    caller: Caller
    services: Services


def provide_services(request: Request[Any, Any, Any]) -> Services:
    """The ``services`` dependency, for the routes open to anyone."""
    return Services.of(request.app)


def provide_context(request: Request[Any, Any, Any]) -> RequestContext:
    """The ``ctx`` dependency: the caller auth.Authorizer stored, and the services."""
    return context_of(request.scope)


def context_of(scope: Scope) -> RequestContext:
    """A checked request's context, from its ASGI scope (what a route middleware has)."""
    caller: Caller = scope["state"][CALLER_STATE]
    return RequestContext(caller=caller, services=Services.of(scope["litestar_app"]))
