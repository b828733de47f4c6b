"""The site as `make docs` builds it (strict: a warning fails), and the Python reference's
docstrings with their Sphinx roles made Markdown by docs/_hooks/sphinx_roles.py."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import griffe
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "docs" / "_hooks"))

import sphinx_roles  # noqa: E402 - from the hooks directory, put on the path above

# Sphinx's role syntax, as it shows when nothing rewrote it: in the page's text (inside <code>
# once Markdown read its backticks) or in its source form.
RAW_ROLE = re.compile(r":(?:py:)?[a-z]+:(?:<code>|`)")
SOURCES = [
    REPO_ROOT / "libs/queue_core/src",
    REPO_ROOT / "libs/queue_client/src",
    REPO_ROOT / "services/api/src",
    REPO_ROOT / "services/worker/src",
]


@pytest.fixture(name="site", scope="module")
def fx_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, warnings
    return site


def test_the_python_reference_shows_no_sphinx_role(site: Path) -> None:
    page = (site / "reference" / "python.html").read_text()
    assert "queue_core.queue.Queue.enqueue_batch" in page, "the reference was not rendered"
    raw = sorted(set(RAW_ROLE.findall(page)))
    assert not raw, f"Sphinx roles left in reference/python.html: {raw}"


def test_a_role_whose_target_the_site_documents_becomes_a_link(site: Path) -> None:
    page = (site / "reference" / "python.html").read_text()
    # Queue.enqueue_many's docstring says :meth:`enqueue_batch`, a documented member.
    link = re.search(
        r'<a class="autorefs[^"]*"[^>]*href="#queue_core\.queue\.Queue\.'
        r'enqueue_batch"[^>]*><code>enqueue_batch\(\)</code></a>',
        page,
    )
    assert link is not None


def _documented_objects() -> Iterator[griffe.Object]:
    loader = griffe.GriffeLoader(search_paths=[str(path) for path in SOURCES])
    for package in ("queue_core", "queue_client", "queue_api", "queue_worker"):
        module = loader.load(package)
        assert isinstance(module, griffe.Object)
        yield from sphinx_roles.objects(module)
    loader.resolve_aliases(implicit=False, external=False)


def test_every_role_of_every_docstring_is_rewritten() -> None:
    site = sphinx_roles.documented_site(tuple(str(path) for path in SOURCES))
    rewritten = 0
    for obj in list(_documented_objects()):
        if obj.docstring is None or not sphinx_roles.ROLE.search(obj.docstring.value):
            continue
        text = sphinx_roles.rewrite(obj.docstring.value, obj, site)
        assert not RAW_ROLE.search(text), f"{obj.path}: {text}"
        rewritten += 1
    assert rewritten >= 40, "the docstrings' roles were not found"


@pytest.mark.parametrize(
    ("role", "scope", "expected"),
    [
        # A member of the class the docstring belongs to, documented: a link, called.
        (
            ":meth:`enqueue_batch`",
            "queue_core.queue.Queue.enqueue_many",
            "[`enqueue_batch()`][queue_core.queue.Queue.enqueue_batch]",
        ),
        # A full path, shortened by "~", documented.
        (
            ":class:`~queue_core.jobs.NewJob`",
            "queue_core.queue",
            "[`NewJob`][queue_core.jobs.NewJob]",
        ),
        # A name the docstring's module imports, documented under its own module.
        (
            ":class:`JobStateConflictError`",
            "queue_core.queue.Queue.cancel",
            "[`JobStateConflictError`][queue_core.errors.JobStateConflictError]",
        ),
        # Not on the site: code, as written.
        (":class:`~queue_core.listing.JobFilter`", "queue_core.queue", "`JobFilter`"),
        (":data:`MAX_WAITERS`", "queue_core.queue", "`MAX_WAITERS`"),
        # Outside our packages.
        (":func:`hmac.compare_digest`", "queue_core.queue", "`hmac.compare_digest()`"),
        # An explicit title.
        (
            ":class:`the job <queue_core.jobs.NewJob>`",
            "queue_core.queue",
            "[`the job`][queue_core.jobs.NewJob]",
        ),
        # A role that names no object.
        (":envvar:`DATABASE_URL`", "queue_core.queue", "`DATABASE_URL`"),
    ],
)
def test_a_role_becomes_a_link_or_code(role: str, scope: str, expected: str) -> None:
    site = sphinx_roles.documented_site(tuple(str(path) for path in SOURCES))
    obj = site.collection[scope]
    assert isinstance(obj, griffe.Object)
    assert sphinx_roles.rewrite(f"See {role}.", obj, site) == f"See {expected}."
