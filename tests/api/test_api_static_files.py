"""The console's static files (``/ui/static``) against a real ``queue-api`` process: the files
shipped with the API are served, and any other path, however odd, is a plain 404 that names
no place on the server's disk."""

import hashlib
import re

import httpx
import pytest

from e2e.stack import Api
from queue_api.ui.rendering import UI_DIR


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/ui.css%00",  # a NUL: os.stat raised ValueError, a 500 and a traceback
        "/ui/static/" + "a" * 300,  # a name too long for the file system: a 500
        "/ui/static/ui.css/x",  # a file taken for a directory: a 500
        "/ui/static/vendor",  # a directory: a 404 naming its absolute path
        "/ui/static/vendor/htmx-2.0.11/",
        "/ui/static/%2e%2e/templates/base.html",  # out of the directory
        "/ui/static/nowhere.js",
    ],
)
def test_a_path_that_is_no_shipped_file_gets_a_404_naming_no_place_on_disk(
    api_process: Api, path: str
) -> None:
    response = httpx.get(api_process.base_url + path, timeout=10)

    assert response.status_code == 404, response.text
    assert response.json()["status_code"] == 404
    assert str(UI_DIR) not in response.text
    assert "/work/" not in response.text


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/ui/static/ui.js", "text/javascript"),
        ("/ui/static/./ui.css", "text/css"),
        ("/ui/static/vendor/htmx-2.0.11/htmx.min.js", "text/javascript"),
    ],
)
def test_the_shipped_files_are_served_and_cached_for_an_hour(
    api_process: Api, path: str, media_type: str
) -> None:
    with httpx.Client(base_url=api_process.base_url, timeout=10) as client:
        got = client.get(path)
        head = client.head(path)

    assert got.status_code == 200
    assert got.headers["content-type"].startswith(media_type)
    assert got.headers["cache-control"] == "max-age=3600"
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(got.content))


def test_pages_link_the_consoles_own_files_with_a_digest_of_what_is_shipped(
    api_process: Api,
) -> None:
    """Cached for an hour, ui.js and ui.css were used with the pages of a newer release for up
    to that long. A page now names each with a digest of its content: a new file, a new URL."""
    with httpx.Client(base_url=api_process.base_url, timeout=10) as client:
        pages = client.get("/ui/login").text + client.get("/schema/swagger").text
        linked = dict(re.findall(r'"/ui/static/([\w.-]+\.(?:js|css))\?v=([0-9a-f]+)"', pages))
        assert set(linked) == {"ui.js", "ui.css", "swagger-init.js"}
        for name, digest in linked.items():
            content = (UI_DIR / "static" / name).read_bytes()
            assert digest == hashlib.sha256(content).hexdigest()[:16]
            served = client.get(f"/ui/static/{name}?v={digest}")
            assert served.status_code == 200
            assert served.content == content
