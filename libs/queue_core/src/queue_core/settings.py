"""Configuration shared by every process, and the one way to load settings from the environment.

Each process builds one frozen settings object at start-up. A bad value ends the process with
exit status 2 and one line that names the environment variable, never a traceback.

A secret (``Secret[...]``: the database URL, the SMTP password) may instead come from a file
named by ``<VARIABLE>_FILE``, the way Docker and Kubernetes mount secrets.
"""

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from queue_core.db import check_tls_options, normalize_database_url

T = TypeVar("T")

FILE_SUFFIX: Final = "_FILE"
# A secret file is a password or a URL; anything this large is the wrong file.
MAX_SECRET_FILE_BYTES: Final = 64 * 1024


class _FileSecret:
    """Marks a settings field as a secret: ``<VARIABLE>_FILE`` may name a file holding it."""

    __slots__ = ()


FILE_SECRET: Final = _FileSecret()

# A secret value: readable from ``<VARIABLE>_FILE``, and kept out of the settings' repr.
Secret = Annotated[T, FILE_SECRET, Field(repr=False)]

DatabaseUrl = Annotated[
    str, AfterValidator(normalize_database_url), AfterValidator(check_tls_options)
]
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


class SecretFileError(ValueError):
    """A ``<VARIABLE>_FILE`` that cannot be used. Its message names the variable and the path,
    never the file's content."""


def read_secret_file(variable: str, path: str) -> str:
    """The secret in the file at ``path`` (named by ``variable``), without its final newline.

    Only line endings are removed: ``echo secret > file`` and ``kubectl create secret`` both
    work, and a password that starts or ends with a space keeps it."""
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretFileError(f"{variable}: cannot read {path}: {reason}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(f"{variable}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        value = raw.decode().rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretFileError(f"{variable}: {path} is not UTF-8 text") from None
    if not value:
        raise SecretFileError(f"{variable}: {path} is empty")
    return value


def _is_secret(info: FieldInfo) -> bool:
    return any(isinstance(item, _FileSecret) for item in info.metadata)


def _environ(settings_cls: type[BaseSettings]) -> dict[str, str]:
    if settings_cls.model_config.get("case_sensitive"):
        return dict(os.environ)
    return {name.upper(): value for name, value in os.environ.items()}


class _SecretFilesSource(PydanticBaseSettingsSource):
    """Reads each secret field whose ``<VARIABLE>_FILE`` is set. An empty variable counts as
    unset, as compose's ``${VAR:-}`` passes it; setting both the variable and its ``_FILE`` is
    refused, since one of them would be silently ignored."""

    def get_field_value(self, _field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work: it sees every field at once

    def __call__(self) -> dict[str, Any]:
        environ = _environ(self.settings_cls)
        values: dict[str, Any] = {}
        problems = []
        for name, info in self.settings_cls.model_fields.items():
            if not _is_secret(info):
                continue
            variable = env_name(self.settings_cls, name)
            path = environ.get(variable + FILE_SUFFIX)
            if not path:
                continue
            if environ.get(variable):
                problems.append(
                    f"{variable} and {variable}{FILE_SUFFIX} are both set; set only one"
                )
                continue
            try:
                value = read_secret_file(variable + FILE_SUFFIX, path)
            except SecretFileError as exc:
                problems.append(str(exc))
                continue
            alias = info.validation_alias
            values[alias if isinstance(alias, str) else name] = value
        if problems:
            raise SecretFileError("; ".join(problems))
        return values


class EnvSettings(BaseSettings):
    """Settings read from the environment, where each ``Secret`` field may also come from the
    file that ``<VARIABLE>_FILE`` names."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Before the environment, so that a file wins over an empty variable (see the source).
        return (
            init_settings,
            _SecretFilesSource(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )


class CommonSettings(EnvSettings):
    """Variables every process reads. ``DATABASE_URL`` is unprefixed: it is the seed's contract."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    database_url: Secret[DatabaseUrl] = Field(
        validation_alias="DATABASE_URL",
        description=(
            "PostgreSQL URL: postgresql://, postgres:// or postgresql+asyncpg://; "
            "or DATABASE_URL_FILE, a file holding it"
        ),
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
            variable = env_name(settings_cls, name)
            environ = _environ(settings_cls)
            if _is_secret(info) and environ.get(variable + FILE_SUFFIX):
                return variable + FILE_SUFFIX  # the value came from the file it names
            return variable
    return loc_head.upper()


def load_settings(settings_cls: type[S]) -> S:
    """Build ``settings_cls`` from the environment or exit with one clear line.

    The line never holds a value: pydantic's messages do not quote the input, and a secret
    file's problems name the variable and the path only."""
    try:
        return settings_cls()
    except SecretFileError as exc:
        sys.stderr.write(f"invalid configuration: {exc}\n")
        raise SystemExit(2) from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["loc"]:  # a field's own error; cross-field messages name their variables
                message = f"{_alias_to_env(settings_cls, str(err['loc'][0]))}: {message}"
            problems.append(message)
        sys.stderr.write(f"invalid configuration: {'; '.join(problems)}\n")
        raise SystemExit(2) from None
