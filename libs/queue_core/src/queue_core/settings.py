"""Configuration shared by every process, and the one way to load settings from the environment.

Each process builds one frozen settings object at start-up. A bad value ends the process with
exit status 2 and one line that names the environment variable, never a traceback.
"""

import sys
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from queue_core.db import normalize_database_url

DatabaseUrl = Annotated[str, AfterValidator(normalize_database_url)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "console", "auto"]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


# A comma-separated list in one variable ("a, b,c"); NoDecode stops pydantic-settings from
# reading it as JSON first.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]

S = TypeVar("S", bound=BaseSettings)


class CommonSettings(BaseSettings):
    """Variables every process reads. ``DATABASE_URL`` is unprefixed: it is the seed's contract."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    database_url: DatabaseUrl = Field(
        validation_alias="DATABASE_URL",
        description="PostgreSQL URL: postgresql://, postgres:// or postgresql+asyncpg://",
    )
    log_level: LogLevel = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_format: LogFormat = Field(
        default="auto",
        validation_alias="LOG_FORMAT",
        description="json, console, or auto (console on a terminal, JSON otherwise)",
    )


def env_name(settings_cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable that feeds ``field_name`` of ``settings_cls``."""
    info = settings_cls.model_fields.get(field_name)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    prefix = settings_cls.model_config.get("env_prefix") or ""
    return f"{prefix}{field_name}".upper()


def _alias_to_env(settings_cls: type[BaseSettings], loc_head: str) -> str:
    for name, info in settings_cls.model_fields.items():
        if loc_head in (name, info.validation_alias):
            return env_name(settings_cls, name)
    return loc_head.upper()


def load_settings(settings_cls: type[S]) -> S:
    """Build ``settings_cls`` from the environment or exit with one clear line."""
    try:
        return settings_cls()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["loc"]:  # a field's own error; cross-field messages name their variables
                message = f"{_alias_to_env(settings_cls, str(err['loc'][0]))}: {message}"
            problems.append(message)
        sys.stderr.write(f"invalid configuration: {'; '.join(problems)}\n")
        raise SystemExit(2) from None
