"""The application factory itself."""

import warnings

from queue_api.app import create_app
from queue_api.settings import ApiSettings

# Nothing listens here: building the app must not try to connect.
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:9/nowhere"


def test_create_app_emits_no_deprecation_warnings() -> None:
    """The suite runs with filterwarnings=error, and Litestar 3 will turn these deprecations into
    errors: the handlers must declare their dependencies and body the supported way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_app(ApiSettings(DATABASE_URL=UNREACHABLE_URL))

    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
