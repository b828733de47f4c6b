"""Managing API keys over HTTP (``/v1/keys``, scope ``keys:admin``): the same as ``queue-keys``.

A key can only make, list, revoke and change keys with no more power than its own: scopes it
holds, queues it may use, rate limits no looser than its own, and an expiry no later than its
own. Otherwise ``keys:admin`` on one queue would be ``keys:admin`` on all of them (revoking the
other tenants' keys, or throttling the admin's), a limited key could mint an unlimited one, and
a key about to expire could mint one that never does.
"""

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from queue_api.auth import Caller, requires
from queue_api.context import RequestContext
from queue_api.json_body import strict_json_body
from queue_api.schemas import (
    KeyCreate,
    KeyCreated,
    KeyLimits,
    KeyList,
    KeyView,
    error_responses,
)
from queue_core.keys import ApiKeyNotFoundError, KeyInfo, RateLimits, Scope

_NO_KEY = {404: "No key has this name or prefix"}
_DUPLICATE = {409: "A key with this name exists"}

NameOrPrefix = Annotated[
    str, Parameter(description="The key's name, or its prefix (tq_ and 8 characters)")
]


def _beyond(
    own: KeyInfo,
    *,
    scopes: Iterable[Scope],
    queues: Iterable[str] | None,
    limits: RateLimits,
    expires_at: datetime | None,
) -> str | None:
    """What of these powers the key ``own`` lacks, in words; None: nothing."""
    if lacking := sorted(set(scopes) - own.scopes):
        return f"scopes it lacks: {', '.join(lacking)}"
    if own.queues is not None and (queues is None or not own.queues >= set(queues)):
        return "queues it may not use itself"
    if not limits.within(own.limits):
        return "rate limits looser than its own"
    if own.expires_at is not None and (expires_at is None or expires_at > own.expires_at):
        return f"an expiry later than its own ({own.expires_at.isoformat()})"
    return None


def _beyond_caller(caller: Caller, key: KeyInfo) -> str | None:
    """What of ``key``'s powers the caller lacks (None: nothing, or API_AUTH=off)."""
    if caller.key is None:
        return None
    return _beyond(
        caller.key,
        scopes=key.scopes,
        queues=key.queues,
        limits=key.limits,
        expires_at=key.expires_at,
    )


def _may_manage(caller: Caller, name_or_prefix: str) -> Callable[[KeyInfo], None]:
    """The check KeyStore runs on the key to revoke or change, locked: unless the caller has
    every power that key has, 404 as for no key at all. The listing leaves such keys out; a
    403 saying what the key has would tell a tenant that another's key exists, and its powers."""

    def check(key: KeyInfo) -> None:
        if _beyond_caller(caller, key) is not None:
            raise ApiKeyNotFoundError(name_or_prefix)

    return check


def _check_limits(caller: Caller, limits: RateLimits) -> None:
    if caller.key is not None and not limits.within(caller.key.limits):
        raise PermissionDeniedException(
            detail="this API key cannot grant rate limits looser than its own"
        )


class KeysController(Controller):
    path = "/v1/keys"
    tags = ["keys"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/",
        operation_id="createKey",
        summary="Create an API key; its secret is in this answer only",
        status_code=HTTP_201_CREATED,
        before_request=strict_json_body(KeyCreate),
        responses=error_responses(400, 401, 403, 408, 409, 413, 415, 503, meanings=_DUPLICATE),
        **requires(Scope.KEYS_ADMIN),
    )
    async def create(
        self,
        data: JSONBody[KeyCreate],
        ctx: NamedDependency[RequestContext],
    ) -> KeyCreated:
        caller, key_store = ctx.caller, ctx.services.key_store
        limits = data.to_limits()
        expires_at = (
            None
            if data.expires_in_days is None
            else datetime.now(UTC) + timedelta(days=data.expires_in_days)
        )
        if caller.key is not None and (
            reason := _beyond(
                caller.key,
                scopes=data.scopes,
                queues=data.queues,
                limits=limits,
                expires_at=expires_at,
            )
        ):
            raise PermissionDeniedException(detail=f"this API key cannot grant {reason}")
        new = await key_store.create(
            name=data.name,
            scopes=data.scopes,
            queues=data.queues,
            expires_at=expires_at,
            limits=limits,
        )
        view = KeyView.of(new.info)
        return KeyCreated(**{f: getattr(view, f) for f in view.__struct_fields__}, key=new.secret)

    @get(
        "/",
        operation_id="listKeys",
        summary="List the API keys (never their secrets)",
        description=(
            "Only the keys with no more power than the caller's own: scopes it holds, queues "
            "it may use, rate limits no looser and an expiry no later than its own."
        ),
        responses=error_responses(401, 403, 503),
        **requires(Scope.KEYS_ADMIN),
    )
    async def list_keys(
        self,
        ctx: NamedDependency[RequestContext],
    ) -> KeyList:
        caller, key_store = ctx.caller, ctx.services.key_store
        return KeyList(
            keys=[
                KeyView.of(key)
                for key in await key_store.list_all()
                if _beyond_caller(caller, key) is None
            ]
        )

    @post(
        "/{name_or_prefix:str}/revoke",
        operation_id="revokeKey",
        summary="Revoke an API key",
        description=(
            "Every replica refuses the key within API_AUTH_CACHE_S seconds (default 5). "
            "Revoking a revoked key changes nothing. A key with more power than the caller's "
            "(scopes, queues, rate limits, expiry) is answered as no key: 404."
        ),
        status_code=HTTP_200_OK,
        responses=error_responses(401, 403, 404, 503, meanings=_NO_KEY),
        **requires(Scope.KEYS_ADMIN),
    )
    async def revoke(
        self,
        name_or_prefix: NameOrPrefix,
        ctx: NamedDependency[RequestContext],
    ) -> KeyView:
        key_store = ctx.services.key_store
        return KeyView.of(
            await key_store.revoke(name_or_prefix, check=_may_manage(ctx.caller, name_or_prefix))
        )

    @put(
        "/{name_or_prefix:str}/limits",
        operation_id="setKeyLimits",
        summary="Replace an API key's rate limits",
        description=(
            "A limit left out is removed. Every replica applies the new limits within "
            "API_AUTH_CACHE_S seconds (default 5). A key with more power than the caller's "
            "(scopes, queues, rate limits, expiry) is answered as no key (404); limits looser "
            "than the caller's: 403."
        ),
        status_code=HTTP_200_OK,
        before_request=strict_json_body(KeyLimits),
        responses=error_responses(400, 401, 403, 404, 408, 413, 415, 503, meanings=_NO_KEY),
        **requires(Scope.KEYS_ADMIN),
    )
    async def set_limits(
        self,
        name_or_prefix: NameOrPrefix,
        data: JSONBody[KeyLimits],
        ctx: NamedDependency[RequestContext],
    ) -> KeyView:
        caller, key_store = ctx.caller, ctx.services.key_store
        limits = data.to_limits()
        _check_limits(caller, limits)
        return KeyView.of(
            await key_store.set_limits(
                name_or_prefix, limits, check=_may_manage(caller, name_or_prefix)
            )
        )
