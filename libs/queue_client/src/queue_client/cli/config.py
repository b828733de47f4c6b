"""queuectl's settings: flags, then environment variables, then a TOML config file, then the
defaults. The file is ``--config``, or ``$QUEUECTL_CONFIG``, or else
``$XDG_CONFIG_HOME/queuectl/config.toml`` (``~/.config/queuectl/config.toml``), which may be
absent::

    url = "https://queue.example.com"
    api_key = "tq_…"
    output = "table"      # or "json"
    timeout_s = 10
"""

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import httpx

DEFAULT_URL: Final = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S: Final = 10.0
OUTPUTS: Final = ("table", "json")
URL_ENV: Final = "QUEUE_URL"
KEY_ENV: Final = "QUEUE_API_KEY"
CONFIG_ENV: Final = "QUEUECTL_CONFIG"
_FILE_KEYS: Final = frozenset({"url", "api_key", "output", "timeout_s"})
_MAX_TIMEOUT_S: Final = 3600.0

Output = Literal["table", "json"]


class ConfigError(Exception):
    """A config file or setting queuectl cannot use: a usage error (exit code 2)."""


@dataclass(frozen=True)
class Settings:
    url: str = DEFAULT_URL
    api_key: str | None = None
    output: Output = "table"
    timeout_s: float = DEFAULT_TIMEOUT_S


def default_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "queuectl" / "config.toml"


def read_config(path: Path, *, required: bool) -> dict[str, object]:
    """The file's settings; {} for an absent default file. Unknown keys are refused, so a typo
    (``apikey``) is not silently ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(values) - _FILE_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_FILE_KEYS))
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)} ({allowed})")
    return values


def _api_key(value: object | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError("api_key must be a string")
    if value is not None and not (value.isascii() and value.isprintable()):
        # Never the key itself in the message: it is a secret, even when mistyped.
        raise ConfigError(
            "the API key holds a character no HTTP header can carry (a non-ASCII one, a line"
            " break: pasted with it?)"
        )
    return value


def resolve(
    *,
    flags: Mapping[str, object | None],
    config: str | None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``flags`` (None: not given), the environment and the config file."""
    env = os.environ if env is None else env
    explicit = config or env.get(CONFIG_ENV)
    path = Path(explicit).expanduser() if explicit else default_config_path(env)
    from_file = read_config(path, required=explicit is not None)
    from_env = {"url": env.get(URL_ENV), "api_key": env.get(KEY_ENV)}

    def pick(name: str) -> object | None:
        for source in (flags, from_env, from_file):
            value = source.get(name)
            if value is not None and value != "":
                return value
        return None

    url = pick("url") or DEFAULT_URL
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"the API URL must start with http:// or https://, not {url!r}")
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL as exc:
        raise ConfigError(f"the API URL {url!r} is malformed: {exc}") from None
    if not host:
        raise ConfigError(f"the API URL {url!r} names no host")
    api_key = _api_key(pick("api_key"))
    output = pick("output") or "table"
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    timeout_s = pick("timeout_s") or DEFAULT_TIMEOUT_S
    if not isinstance(timeout_s, int | float) or not 0 < timeout_s <= _MAX_TIMEOUT_S:
        raise ConfigError(f"timeout_s must be a number of seconds in (0, {_MAX_TIMEOUT_S:g}]")
    return Settings(
        url=url.rstrip("/"),
        api_key=api_key,
        output=output,
        timeout_s=float(timeout_s),
    )
