"""Managing API keys over HTTP (``/v1/keys``, scope ``keys:admin``): the same as ``queue-keys``.

A key can only make keys with no more power than its own: scopes it holds, queues it may use,
and rate limits no looser than its own. Otherwise ``keys:admin`` on one queue would be
``keys:admin`` on all of them, and a limited key could mint an unlimited one. The same holds
when it changes a key's limits.
"""

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
from queue_core.keys import RateLimits, Scope

_NO_KEY = {404: "No key has this name or prefix"}
_DUPLICATE = {409: "A key with this name exists"}

NameOrPrefix = Annotated[
    str, Parameter(description="The key's name, or its prefix (tq_ and 8 characters)")
]


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
        beyond = sorted(set(data.scopes) - caller.scopes)
        if beyond:
            raise PermissionDeniedException(
                detail=f"this API key cannot grant scopes it lacks: {', '.join(beyond)}"
            )
        if caller.queues is not None and (
            data.queues is None or not caller.queues >= set(data.queues)
        ):
            raise PermissionDeniedException(
                detail="this API key cannot grant queues it may not use itself"
            )
        limits = data.to_limits()
        _check_limits(caller, limits)
        expires_at = (
            None
            if data.expires_in_days is None
            else datetime.now(UTC) + timedelta(days=data.expires_in_days)
        )
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
        responses=error_responses(401, 403, 503),
        **requires(Scope.KEYS_ADMIN),
    )
    async def list_keys(
        self,
        ctx: NamedDependency[RequestContext],
    ) -> KeyList:
        key_store = ctx.services.key_store
        return KeyList(keys=[KeyView.of(key) for key in await key_store.list_all()])

    @post(
        "/{name_or_prefix:str}/revoke",
        operation_id="revokeKey",
        summary="Revoke an API key",
        description=(
            "Every replica refuses the key within API_AUTH_CACHE_S seconds (default 5). "
            "Revoking a revoked key changes nothing."
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
        return KeyView.of(await key_store.revoke(name_or_prefix))

    @put(
        "/{name_or_prefix:str}/limits",
        operation_id="setKeyLimits",
        summary="Replace an API key's rate limits",
        description=(
            "A limit left out is removed. Every replica applies the new limits within "
            "API_AUTH_CACHE_S seconds (default 5)."
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
        return KeyView.of(await key_store.set_limits(name_or_prefix, limits))
