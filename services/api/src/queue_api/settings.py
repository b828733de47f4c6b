"""The API process's configuration, from environment variables (see the README's table)."""

from pydantic import Field, PositiveInt
from pydantic_settings import SettingsConfigDict

from queue_core.settings import CommonSettings

DEFAULT_MAX_BODY_BYTES = (
    1024 * 1024
)  # 1 MiB: generous for a job payload, small enough to refuse abuse


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="API_", frozen=True, extra="ignore")

    host: str = "0.0.0.0"  # noqa: S104 - a container's server must listen on all interfaces
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: PositiveInt = DEFAULT_MAX_BODY_BYTES
    db_pool_size: PositiveInt = 10
