"""The OpenAPI documentation pages at ``/schema``: Redoc (also at ``/schema`` itself) and
Swagger UI, each loading its script and styles from the API (``/ui/static/vendor``, pinned
copies from npm), never from a CDN, and no web fonts or icons from elsewhere. The other
renderers Litestar offers (Elements, RapiDoc, Scalar) are not served: their bundles are not
vendored.

Litestar's pages start their renderer with an inline script holding the whole document, so
their policy had to allow inline script ('unsafe-inline') on an origin the console shares: one
injected script there could read a console page and its CSRF token. These pages run no inline
script: Redoc starts itself from a ``<redoc spec-url>`` element, Swagger UI from
``static/swagger-init.js``, both fetching ``/schema/openapi.json``. ``queue_api.security_headers``
keeps them to this origin (``default-src 'self'``, ``script-src 'self'``)."""

from html import escape
from typing import Any, Final

from litestar import Request
from litestar.openapi.plugins import (
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
)

from queue_api.ui.assets import static_url

VENDOR: Final = "/ui/static/vendor"
SWAGGER_INIT: Final = static_url("swagger-init.js")
REDOC_VERSION: Final = "2.5.2"
SWAGGER_UI_VERSION: Final = "5.32.0"


def _page(title: str, head: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        '</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>body {{ margin: 0; padding: 0 }}</style>{head}</head><body>{body}</body></html>"
    ).encode()


class _Redoc(RedocRenderPlugin):
    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:  # type: ignore[type-arg]
        spec_url = escape(self.get_openapi_json_route(request))
        return _page(
            openapi_schema["info"]["title"],
            "",
            f'<redoc spec-url="{spec_url}"></redoc><script src="{escape(self.js_url)}"></script>',
        )


class _Swagger(SwaggerRenderPlugin):
    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:  # type: ignore[type-arg]
        spec_url = escape(self.get_openapi_json_route(request))
        return _page(
            openapi_schema["info"]["title"],
            f'<link href="{escape(self.css_url)}" rel="stylesheet">',
            f'<div id="swagger-container" data-spec-url="{spec_url}"></div>'
            f'<script src="{escape(self.js_url)}"></script><script src="{SWAGGER_INIT}"></script>',
        )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    redoc = f"{VENDOR}/redoc-{REDOC_VERSION}"
    swagger = f"{VENDOR}/swagger-ui-{SWAGGER_UI_VERSION}"
    return [
        _Redoc(
            path=["/", "/redoc"],
            js_url=f"{redoc}/redoc.standalone.js",
            google_fonts=False,
            favicon="",
        ),
        _Swagger(
            path="/swagger",
            js_url=f"{swagger}/swagger-ui-bundle.js",
            css_url=f"{swagger}/swagger-ui.css",
            # Not loaded (the page uses Swagger UI's base layout), but never the CDN's either.
            standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
            favicon="",
        ),
    ]
