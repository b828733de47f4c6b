"""API keys: their format, scopes and storage. The API checks them; ``queue-keys`` and the API's
``/v1/keys`` manage them, both through :class:`KeyStore`.

A key may carry rate limits (:class:`RateLimits`): requests a second and jobs a second, each
with a burst. Their buckets live in ``api_key_rate_buckets``, shared by every API replica, and
:meth:`KeyStore.take_tokens` takes from one in a single statement (the API leases tokens from
it in small chunks: ``queue_api.rate_limit``).

A key reads ``tq_<prefix>_<secret>``: ``tq_`` makes a leaked key easy to grep for and to
recognise, the 8-character prefix (stored in clear, unique) finds its row and names it in
listings, and the secret is 32 random bytes (256 bits, URL-safe base64). Only the SHA-256 of the
whole key is stored: with 256 bits of entropy no dictionary or brute force applies, so a slow
password hash would cost every request time for nothing. The check compares digests in constant
time (:func:`hmac.compare_digest`).
"""

import hashlib
import hmac
import math
import re
import secrets
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import asyncpg

from queue_core.db import translate_connection_errors
from queue_core.errors import QueueError
from queue_core.limits import MIN_RATE_PER_S
from queue_core.sql import KEY_QUERIES, Statement

Q_CREATE_API_KEY: Final = KEY_QUERIES["create_api_key"]
Q_LIST_API_KEYS: Final = KEY_QUERIES["list_api_keys"]
Q_FIND_API_KEY: Final = KEY_QUERIES["find_api_key"]
Q_LOCK_API_KEY: Final = KEY_QUERIES["lock_api_key"]
Q_REVOKE_API_KEY: Final = KEY_QUERIES["revoke_api_key"]
Q_MARK_API_KEYS_USED: Final = KEY_QUERIES["mark_api_keys_used"]
Q_SET_API_KEY_LIMITS: Final = KEY_QUERIES["set_api_key_limits"]
Q_TAKE_RATE_TOKENS: Final = KEY_QUERIES["take_rate_tokens"]
Q_ENSURE_RATE_BUCKET: Final = KEY_QUERIES["ensure_rate_bucket"]
Q_SIGN_OUT_CONSOLE_SESSION: Final = KEY_QUERIES["sign_out_console_session"]
Q_CONSOLE_SESSION_SIGNED_OUT: Final = KEY_QUERIES["console_session_signed_out"]

KEY_MARKER: Final = "tq_"
PREFIX_LENGTH: Final = 8
SECRET_BYTES: Final = 32
_PREFIX_ALPHABET: Final = string.ascii_lowercase + string.digits
# tq_ + 8 lowercase letters or digits + _ + 43 URL-safe base64 characters (32 bytes, unpadded).
_KEY_PATTERN: Final = re.compile(r"tq_([a-z0-9]{8})_[A-Za-z0-9_-]{43}")
_PREFIX: Final = re.compile(r"tq_[a-z0-9]{8}")  # a key's first 11 characters: how it is found
# Names are identifiers people type: letters, digits and ._:@- . check_name() also refuses the
# look of a prefix (tq_...), so that `revoke NAME|PREFIX` is never ambiguous; the pattern itself
# has no lookahead, so that it means the same in every JSON Schema tool.
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"
_NAME: Final = re.compile(NAME_PATTERN)
MAX_NAME_LENGTH: Final = 100
_PREFIX_ATTEMPTS: Final = 5  # a clash among 36^8 prefixes is rare; five in a row, impossible
# Bounds of a rate limit, so that no value can overflow the bucket's arithmetic (the table's
# check constraint says the same).
MAX_RATE: Final = 1_000_000
MAX_BURST: Final = 1_000_000


class Scope(StrEnum):
    """What a key may do. A route names the scope it needs (``queue_api.auth``)."""

    JOBS_WRITE = "jobs:write"  # enqueue
    JOBS_READ = "jobs:read"  # read a job's status, list jobs
    JOBS_ADMIN = "jobs:admin"  # cancel, retry, delete jobs
    QUEUES_ADMIN = "queues:admin"  # pause, resume queues
    KEYS_ADMIN = "keys:admin"  # create, list and revoke keys over HTTP
    METRICS_READ = "metrics:read"  # the API's /metrics


ALL_SCOPES: Final = tuple(Scope)


class ApiKeyError(QueueError):
    """Base class of the errors about API keys."""


class InvalidKeySpecError(ApiKeyError):
    """A key cannot be made as asked: an unknown scope, a bad name, an empty queue list."""


class DuplicateKeyNameError(ApiKeyError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a key named {name!r} already exists")
        self.name = name


class ApiKeyNotFoundError(ApiKeyError):
    def __init__(self, name_or_prefix: str) -> None:
        super().__init__(f"no key is named {name_or_prefix!r} or has that prefix")
        self.name_or_prefix = name_or_prefix


class RateKind(StrEnum):
    """What a rate limit counts: every request the key makes, or the jobs it enqueues."""

    REQUESTS = "requests"
    JOBS = "jobs"


@dataclass(frozen=True)
class RateLimit:
    """``per_s`` tokens a second, at most ``burst`` at once (by default one second's worth)."""

    per_s: float
    burst: int

    @classmethod
    def of(cls, per_s: float | None, burst: int | None) -> "RateLimit | None":
        """The limit stored as ``per_s`` and ``burst``; None if there is no rate. A bad value
        raises :class:`InvalidKeySpecError` naming it."""
        if per_s is None:
            if burst is not None:
                raise InvalidKeySpecError("a burst needs a rate to go with it")
            return None
        if not (math.isfinite(per_s) and MIN_RATE_PER_S <= per_s <= MAX_RATE):
            raise InvalidKeySpecError(
                f"a rate must be at least one a day ({MIN_RATE_PER_S:.6g}/s) "
                f"and at most {MAX_RATE}/s"
            )
        if burst is None:
            burst = max(1, math.ceil(per_s))
        if not 1 <= burst <= MAX_BURST:
            raise InvalidKeySpecError(f"a burst must be from 1 to {MAX_BURST}")
        return cls(per_s, burst)


@dataclass(frozen=True, kw_only=True)
class RateLimits:
    """A key's limits; None: none of that kind."""

    requests: RateLimit | None = None
    jobs: RateLimit | None = None

    def __getitem__(self, kind: RateKind) -> RateLimit | None:
        return self.requests if kind is RateKind.REQUESTS else self.jobs

    def columns(self) -> dict[str, float | int | None]:
        """The key's columns of these limits, by the name of their parameter in keys.sql:
        requests_per_s, requests_burst, jobs_per_s, jobs_burst (None: no such limit)."""
        r, j = self.requests, self.jobs
        return {
            "requests_per_s": None if r is None else r.per_s,
            "requests_burst": None if r is None else r.burst,
            "jobs_per_s": None if j is None else j.per_s,
            "jobs_burst": None if j is None else j.burst,
        }

    def within(self, other: "RateLimits") -> bool:
        """True if these limits allow no more than ``other``: a key may grant only that."""

        def inside(mine: RateLimit | None, theirs: RateLimit | None) -> bool:
            return theirs is None or (
                mine is not None and mine.per_s <= theirs.per_s and mine.burst <= theirs.burst
            )

        return inside(self.requests, other.requests) and inside(self.jobs, other.jobs)


NO_LIMITS: Final = RateLimits()


@dataclass(frozen=True)
class Grant:
    """What :meth:`KeyStore.take_tokens` gave: ``granted`` tokens, and if that was fewer than
    needed, ``wait_s`` until the rest will have refilled."""

    granted: int
    wait_s: float


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """A key as listed: everything but its hash. ``queues`` None means every queue."""

    name: str
    prefix: str
    scopes: frozenset[Scope]
    queues: frozenset[str] | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    limits: RateLimits = NO_LIMITS

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def allows_queue(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues


@dataclass(frozen=True)
class StoredKey:
    """A key with the hash a presented key is checked against."""

    info: KeyInfo
    key_hash: bytes

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(hash_key(key), self.key_hash)


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``secret`` is the whole key, shown once and stored nowhere."""

    info: KeyInfo
    secret: str


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def generate_key() -> tuple[str, str]:
    """A new ``(prefix, key)``."""
    prefix = KEY_MARKER + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return prefix, f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def prefix_of(key: str) -> str | None:
    """The prefix (``tq_xxxxxxxx``) of a well-formed key, or None for anything else."""
    match = _KEY_PATTERN.fullmatch(key)
    return None if match is None else KEY_MARKER + match.group(1)


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes by name; an unknown one raises :class:`InvalidKeySpecError` naming it."""
    scopes: set[Scope] = set()
    for name in names:
        try:
            scopes.add(Scope(name))
        except ValueError:
            known = ", ".join(ALL_SCOPES)
            raise InvalidKeySpecError(f"unknown scope {name!r} (known: {known})") from None
    if not scopes:
        raise InvalidKeySpecError("a key needs at least one scope")
    return frozenset(scopes)


def _check_names_a_key(name_or_prefix: str) -> None:
    """ApiKeyNotFoundError for what is neither a name nor a prefix: no key has it, and it may
    hold what PostgreSQL refuses even to compare (a NUL, from a path's %00)."""
    if not (_NAME.fullmatch(name_or_prefix) or _PREFIX.fullmatch(name_or_prefix)):
        raise ApiKeyNotFoundError(name_or_prefix)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.startswith(KEY_MARKER):
        raise InvalidKeySpecError(
            f"invalid key name {name!r}: 1 to {MAX_NAME_LENGTH} letters, digits and ._:@-, "
            "starting with a letter or digit, and not starting with tq_"
        )
    return name


def check_queues(queues: Iterable[str] | None) -> frozenset[str] | None:
    if queues is None:
        return None
    allowed = frozenset(queues)
    if not allowed or any(not q.strip() or len(q) > 255 for q in allowed):
        raise InvalidKeySpecError("queues must be a non-empty list of queue names")
    return allowed


def _info(row: asyncpg.Record) -> KeyInfo:
    queues = row["queues"]
    return KeyInfo(
        name=row["name"],
        prefix=row["prefix"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        queues=None if queues is None else frozenset(queues),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        limits=RateLimits(
            requests=RateLimit.of(row["requests_per_s"], row["requests_burst"]),
            jobs=RateLimit.of(row["jobs_per_s"], row["jobs_burst"]),
        ),
    )


class KeyStore:
    """The ``api_keys`` table. Transient database errors surface as
    :class:`~queue_core.errors.TransientDatabaseError`, as in :class:`queue_core.queue.Queue`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        *,
        name: str,
        scopes: Iterable[str],
        queues: Iterable[str] | None = None,
        expires_at: datetime | None = None,
        limits: RateLimits = NO_LIMITS,
    ) -> NewKey:
        checked_name = check_name(name)
        checked_scopes = sorted(parse_scopes(scopes))
        checked_queues = check_queues(queues)
        for _ in range(_PREFIX_ATTEMPTS):
            prefix, key = generate_key()
            try:
                async with translate_connection_errors():
                    row = await Q_CREATE_API_KEY.fetchrow(
                        self._pool,
                        name=checked_name,
                        prefix=prefix,
                        key_hash=hash_key(key),
                        scopes=checked_scopes,
                        queues=None if checked_queues is None else sorted(checked_queues),
                        expires_at=expires_at,
                        **limits.columns(),
                    )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "uq_api_keys_name":
                    raise DuplicateKeyNameError(checked_name) from None
                continue  # the prefix clashed with another key's: draw again
            assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
            return NewKey(_info(row), key)
        raise RuntimeError("could not draw an unused key prefix")  # pragma: no cover

    async def list_all(self) -> list[KeyInfo]:
        async with translate_connection_errors():
            rows = await Q_LIST_API_KEYS.fetch(self._pool)
        return [_info(row) for row in rows]

    async def find(self, prefix: str) -> StoredKey | None:
        async with translate_connection_errors():
            row = await Q_FIND_API_KEY.fetchrow(self._pool, prefix=prefix)
        return None if row is None else StoredKey(_info(row), bytes(row["key_hash"]))

    async def revoke(
        self, name_or_prefix: str, *, check: Callable[[KeyInfo], None] | None = None
    ) -> KeyInfo:
        """Revoke a key by name or prefix; revoking it again changes nothing. ``check`` sees
        the key first, locked, and may raise to leave it as it is (see :meth:`_change`)."""
        return await self._change(Q_REVOKE_API_KEY, name_or_prefix, check)

    async def _change(
        self,
        statement: Statement,
        name_or_prefix: str,
        check: Callable[[KeyInfo], None] | None,
        **values: object,
    ) -> KeyInfo:
        """Run ``statement`` on the key ``name_or_prefix``; with ``check``, in a transaction
        that first locks the key and shows it to ``check`` (the API's test of whether its
        caller may act on that key), so what was checked is what is changed."""
        _check_names_a_key(name_or_prefix)
        async with (
            translate_connection_errors(),
            self._pool.acquire() as conn,
            conn.transaction(),
        ):
            if check is not None:
                locked = await Q_LOCK_API_KEY.fetchrow(conn, name_or_prefix=name_or_prefix)
                if locked is None:
                    raise ApiKeyNotFoundError(name_or_prefix)
                check(_info(locked))
            row = await statement.fetchrow(conn, name_or_prefix=name_or_prefix, **values)
        if row is None:
            raise ApiKeyNotFoundError(name_or_prefix)
        return _info(row)

    async def sign_out_console_session(self, nonce: str, expires_at: datetime) -> None:
        """Refuse the web console session ``nonce`` from now until ``expires_at``, when it
        would have expired anyway (``queue_api.ui.sessions``)."""
        async with translate_connection_errors():
            await Q_SIGN_OUT_CONSOLE_SESSION.execute(self._pool, nonce=nonce, expires_at=expires_at)

    async def console_session_signed_out(self, nonce: str) -> bool:
        async with translate_connection_errors():
            return bool(await Q_CONSOLE_SESSION_SIGNED_OUT.fetchval(self._pool, nonce=nonce))

    async def set_limits(
        self,
        name_or_prefix: str,
        limits: RateLimits,
        *,
        check: Callable[[KeyInfo], None] | None = None,
    ) -> KeyInfo:
        """Replace a key's rate limits (by name or prefix); ``check`` as for :meth:`revoke`."""
        return await self._change(Q_SET_API_KEY_LIMITS, name_or_prefix, check, **limits.columns())

    async def take_tokens(
        self, prefix: str, kind: RateKind, limit: RateLimit, *, want: int, need: int
    ) -> Grant:
        """Take up to ``want`` tokens from the key's shared bucket for ``kind``: see the
        ``take_rate_tokens`` statement. ``need`` (at most ``want``) sets ``wait_s``."""
        bucket = {"prefix": prefix, "kind": kind.value}
        values = bucket | {"per_s": limit.per_s, "burst": limit.burst, "want": want, "need": need}
        async with translate_connection_errors():
            row = await Q_TAKE_RATE_TOKENS.fetchrow(self._pool, **values)
            if row is None:  # the bucket's first use: make it full, then take
                await Q_ENSURE_RATE_BUCKET.execute(self._pool, **bucket)
                row = await Q_TAKE_RATE_TOKENS.fetchrow(self._pool, **values)
        if row is None:  # pragma: no cover - only if the key was deleted in between
            return Grant(0, 1.0)
        return Grant(row["granted"], row["wait_s"])

    async def mark_used(self, used: Sequence[tuple[str, datetime]]) -> None:
        """Record when keys (by prefix) were last used."""
        if not used:
            return
        async with translate_connection_errors():
            await Q_MARK_API_KEYS_USED.execute(
                self._pool, prefixes=[p for p, _ in used], used_at=[at for _, at in used]
            )
