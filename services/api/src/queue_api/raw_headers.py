"""One request header, read from the ASGI scope's raw list. On the hot path this is cheaper than
Litestar's parsed ``Headers`` (built once per request, then a lookup), and the raw names are
lower-case already (ASGI requires it)."""

from litestar.types import Scope


def raw_header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes) decoded as latin-1, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
