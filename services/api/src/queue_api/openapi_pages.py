"""The OpenAPI documentation pages at ``/schema``: Redoc (also at ``/schema`` itself) and
Swagger UI, each loading its script and styles from the API (``/ui/static/vendor``, pinned
copies from npm), never from a CDN, and no web fonts or icons from elsewhere. The other
renderers Litestar offers (Elements, RapiDoc, Scalar) are not served: their bundles are not
vendored. ``queue_api.security_headers`` gives these pages a policy that keeps them to this
origin (``default-src 'self'``)."""

from typing import Final

from litestar.openapi.plugins import (
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
)

VENDOR: Final = "/ui/static/vendor"
REDOC_VERSION: Final = "2.5.2"
SWAGGER_UI_VERSION: Final = "5.32.0"


def render_plugins() -> list[OpenAPIRenderPlugin]:
    redoc = f"{VENDOR}/redoc-{REDOC_VERSION}"
    swagger = f"{VENDOR}/swagger-ui-{SWAGGER_UI_VERSION}"
    return [
        RedocRenderPlugin(
            path=["/", "/redoc"],
            js_url=f"{redoc}/redoc.standalone.js",
            google_fonts=False,
            favicon="",
        ),
        SwaggerRenderPlugin(
            path="/swagger",
            js_url=f"{swagger}/swagger-ui-bundle.js",
            css_url=f"{swagger}/swagger-ui.css",
            standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
            favicon="",
        ),
    ]
