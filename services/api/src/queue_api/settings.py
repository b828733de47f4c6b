"""The API process's configuration, from environment variables. Every variable, with its
default and bounds: docs/reference/settings.md, generated from this class by `make docs`."""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveInt
from pydantic_settings import SettingsConfigDict

from queue_core.settings import CommaList, CommonSettings, Secret
from queue_core.states import DEFAULT_QUEUE

DEFAULT_AUTH_CACHE_S = 5.0
DEFAULT_IDEMPOTENCY_TTL_S = 24 * 3600.0

DEFAULT_MAX_BODY_BYTES = (
    1024 * 1024
)  # 1 MiB: generous for a job payload, small enough to refuse abuse


# A host name or an IP literal as a Host header names it, without scheme or port; or "*".
_HOST_NAME = re.compile(r"\*|[a-z0-9_.-]+|\[[0-9a-f:.]+\]", re.IGNORECASE)


def _host_names(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not _HOST_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a bare host name: give names as the Host header has them, "
                "without scheme or port (queue.example.com), or * for any"
            )
    return tuple(name.lower() for name in names)


HostNames = Annotated[CommaList, AfterValidator(_host_names)]


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="API_", frozen=True, extra="ignore")

    host: str = "0.0.0.0"  # noqa: S104 - a container's server must listen on all interfaces
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: PositiveInt = DEFAULT_MAX_BODY_BYTES
    db_pool_size: PositiveInt = 10
    # A client that sends its body slower than this gets a 408 and its connection closed, so
    # that half-sent bodies cannot hold the API's connections and memory.
    body_timeout_s: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    # The job types and queues named in metric labels; any other value is counted as "other",
    # so that clients choosing names cannot grow /metrics.
    metrics_job_types: CommaList = ("noop", "sleep", "fail", "send_email")
    metrics_queues: CommaList = (DEFAULT_QUEUE,)
    # Origins whose pages may call the API from a browser (CORS). Empty: no CORS headers at all,
    # so browsers keep other sites' scripts out.
    cors_allow_origins: CommaList = ()
    # The host names (Host header, any port) the API answers to, so that a page on a foreign
    # domain cannot reach it by DNS rebinding; "*" for any. localhost and IP literals are always
    # answered. Empty: any host with API_AUTH=on, those only with API_AUTH=off
    # (queue_api.browser_requests).
    allowed_hosts: HostNames = ()
    # API keys on every route but /health and /ready. "off" only for a trusted network whose
    # clients predate keys: the API then logs a warning at start and queue_api_auth_enabled is 0.
    auth: Literal["on", "off"] = "on"
    # How long a replica trusts a key it has checked: a revocation reaches every replica within
    # this many seconds. 0 checks the database on every request.
    auth_cache_s: float = Field(default=DEFAULT_AUTH_CACHE_S, ge=0, le=300, allow_inf_nan=False)
    # How long an Idempotency-Key holds from its first request: a retry within it gets the same
    # job; after it the key may be used again (queue_api.enqueueing). At most 30 days.
    idempotency_ttl_s: float = Field(
        default=DEFAULT_IDEMPOTENCY_TTL_S, gt=0, le=30 * 24 * 3600, allow_inf_nan=False
    )
    # Refuse (422) a job whose type no live worker has a handler for on its queue, instead of
    # accepting it with a warning and queue_api_jobs_unserved_total (queue_api.served).
    reject_unknown_types: bool = False
    # The web console (/ui): the secret its session cookies are signed with, at least 32
    # characters (or API_UI_SECRET_FILE). Unset: a random one per process, so sessions end at a
    # restart and hold on one replica only (a warning at start says so).
    ui_secret: Secret[str | None] = Field(default=None, min_length=32, max_length=4096)
    # Mark the console's cookies Secure on every response, not only on requests that came over
    # https: set it behind an ingress or proxy that ends TLS but is not trusted for its
    # X-Forwarded-Proto (uvicorn trusts 127.0.0.1 only, unless FORWARDED_ALLOW_IPS says more).
    ui_cookies_always_secure: bool = False
    # How long a console session lasts from sign-in; the key is still checked on every request.
    ui_session_s: float = Field(default=8 * 3600.0, ge=60, le=30 * 24 * 3600, allow_inf_nan=False)
