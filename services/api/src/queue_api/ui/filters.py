"""The jobs page's filter form: what it sends (query parameters or form fields, all text) read
into the same :class:`~queue_core.listing.JobFilter` the JSON listing and bulk actions use,
through their own checks (``queue_api.routes.job_list.job_filter``)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlencode

from litestar.exceptions import ValidationException

from queue_api.auth import Caller
from queue_api.routes.job_list import job_filter, source_of
from queue_core.listing import JobFilter
from queue_core.states import STATUS_BY_VALUE, JobStatus

_SOURCE: Final = source_of("Validation failed for the jobs filter", "query")
MAX_FIELD_CHARS: Final = 255
_TIME_FIELDS: Final = ("created_after", "created_before")


@dataclass(frozen=True, slots=True)
class FilterForm:
    """The filter as the form shows it: text fields, as sent (bounded), for re-filling it."""

    statuses: tuple[str, ...] = ()
    type: str = ""
    queue: str = ""
    created_after: str = ""  # datetime-local text, read as UTC
    created_before: str = ""

    @classmethod
    def read(cls, fields: Mapping[str, list[str]]) -> "FilterForm":
        def one(name: str) -> str:
            values = fields.get(name) or [""]
            value = values[0].strip()
            if len(value) > MAX_FIELD_CHARS:
                raise _SOURCE.bad(name, f"at most {MAX_FIELD_CHARS} characters")
            return value

        statuses = fields.get("status") or []
        if len(statuses) > len(JobStatus):
            raise _SOURCE.bad("status", "too many values")
        for status in statuses:
            if status not in STATUS_BY_VALUE:
                raise _SOURCE.bad("status", f"unknown status {status[:40]!r}")
        return cls(
            statuses=tuple(dict.fromkeys(statuses)),
            type=one("type"),
            queue=one("queue"),
            created_after=one("created_after"),
            created_before=one("created_before"),
        )

    def query(self) -> str:
        """The filter as a query string (for links: the next page, the bulk action)."""
        pairs = [("status", s) for s in self.statuses]
        pairs += [
            (name, value)
            for name, value in (
                ("type", self.type),
                ("queue", self.queue),
                ("created_after", self.created_after),
                ("created_before", self.created_before),
            )
            if value
        ]
        return urlencode(pairs)

    @property
    def is_empty(self) -> bool:
        return not self.query()

    def job_filter(self, caller: Caller) -> JobFilter:
        """The checked filter: 400 naming a bad field, 403 for a queue the key may not use."""
        return job_filter(
            caller,
            _SOURCE,
            status=[STATUS_BY_VALUE[s] for s in self.statuses] or None,
            types=[self.type] if self.type else None,
            queues=[self.queue] if self.queue else None,
            created_after=_instant("created_after", self.created_after),
            created_before=_instant("created_before", self.created_before),
            finished_after=None,
            finished_before=None,
        )


def _instant(name: str, text: str) -> datetime | None:
    """A datetime-local field's text (2026-12-04T10:00, no offset) as UTC; one with an offset
    keeps it."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationException(
            detail=_SOURCE.detail,
            extra=[{"message": "must be a date and time, e.g. 2026-12-04T10:00", "key": name}],
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
