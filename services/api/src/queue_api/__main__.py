"""``queue-api``: serve the API with uvicorn (uvloop + httptools; a connection's writes of one
event-loop turn sent together, ``queue_api.http_protocol``)."""

import uvicorn

from queue_api.app import create_app
from queue_api.head_requests import answer_head_as_get
from queue_api.http_protocol import OneSendPerTurnProtocol
from queue_api.settings import ApiSettings
from queue_core.gc_tuning import tune_gc
from queue_core.log import configure
from queue_core.settings import load_settings


def main() -> None:
    settings = load_settings(ApiSettings)
    configure(level=settings.log_level, fmt=settings.log_format)
    app = create_app(settings)
    tune_gc()
    uvicorn.run(
        answer_head_as_get(app),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=OneSendPerTurnProtocol.with_head_timeout(settings.body_timeout_s),
        log_config=None,  # our structlog configuration renders uvicorn's records too
        access_log=False,  # one canonical line per request comes from the app instead
        proxy_headers=True,
        server_header=False,  # no "server: uvicorn" banner telling a scanner what to try
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
