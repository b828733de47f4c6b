"""The application factory itself."""

import warnings

import pytest

from queue_api.app import create_app
from queue_api.settings import ApiSettings
from queue_core.settings import load_settings

# Nothing listens here: building the app must not try to connect.
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:9/nowhere"


def test_create_app_emits_no_deprecation_warnings() -> None:
    """The suite runs with filterwarnings=error, and Litestar 3 will turn these deprecations into
    errors: the handlers must declare their dependencies and body the supported way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_app(ApiSettings(DATABASE_URL=UNREACHABLE_URL))

    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_UI_COOKIES_ALWAYS_SECURE", "maybe"),
        ("API_UI_COOKIES_ALWAYS_SECURE", "2"),
        ("API_UI_COOKIES_ALWAYS_SECURE", ""),
        ("API_UI_SESSION_S", "59"),
        ("API_UI_SECRET", "short"),
    ],
)
def test_a_bad_console_setting_exits_2_with_one_line_naming_it(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_URL)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exited:
        load_settings(ApiSettings)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"invalid configuration: {variable}: "), err
    assert err.count("\n") == 1, err


def test_the_console_cookie_setting_reads_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_URL)
    assert load_settings(ApiSettings).ui_cookies_always_secure is False
    for value, expected in (("true", True), ("1", True), ("false", False), ("0", False)):
        monkeypatch.setenv("API_UI_COOKIES_ALWAYS_SECURE", value)
        assert load_settings(ApiSettings).ui_cookies_always_secure is expected
