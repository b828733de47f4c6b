"""Links to the console's own static files (``ui.css``, ``ui.js``, ``swagger-init.js``), each
with a digest of what this release ships: ``/ui/static/ui.js?v=<digest>``. Browsers cache them
for ``STATIC_MAX_AGE_S``; without the digest, a page of a new release ran for up to that long
with the script and styles of the old one. The vendored files carry their version in their
path instead."""

import hashlib
from pathlib import Path
from typing import Final

STATIC_DIR: Final = Path(__file__).parent / "static"


def _digests() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in STATIC_DIR.iterdir()
        if path.is_file()
    }


_DIGESTS: Final = _digests()


def static_url(name: str) -> str:
    """The link to ``name``, one of the files directly in ``static/``; a KeyError for any
    other, at the first render of the page that names it."""
    return f"/ui/static/{name}?v={_DIGESTS[name]}"
