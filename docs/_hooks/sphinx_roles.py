"""A Griffe extension (mkdocstrings' ``extensions:`` option) that turns the Sphinx inline roles
of our docstrings (``:class:`~queue_core.errors.Foo```, ``:meth:`run```, ``:data:`X``` …) into
Markdown before mkdocstrings renders them: an autorefs cross-reference when the site documents
the target, inline code otherwise. The source docstrings stay Sphinx, as the code's readers and
IDEs expect; only the site's copy is rewritten.

"Documented" means rendered by a ``::: identifier`` directive of a page under docs/, read the
way mkdocstrings renders it here: the object itself and, below it, its public members that carry
a docstring (or only those its ``members`` option names). Linking to anything else would fail
the strict build with an unresolved reference; leaving it as code does not.
"""

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import griffe
import yaml

DOCS = Path(__file__).resolve().parent.parent
# :role:`target`, :role:`~target`, :role:`title <target>`, and the :py:role: spelling.
ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<text>[^`]+)`")
# The roles that name a Python object; any other role is left to show as written.
OBJECT_ROLES = {"class", "func", "meth", "attr", "exc", "data", "obj", "const", "mod"}
CALLABLE_ROLES = {"func", "meth"}
DIRECTIVE = re.compile(r"^::: (?P<identifier>[\w.]+)\n(?P<options>(?:[ ]{4}.*\n)*)", re.MULTILINE)


def _directives() -> Iterator[tuple[str, list[str] | None]]:
    """Every ``::: identifier`` of the pages, with its ``members`` option if it has one."""
    for page in sorted(DOCS.rglob("*.md")):
        for found in DIRECTIVE.finditer(page.read_text()):
            options = yaml.safe_load(found["options"]) if found["options"].strip() else None
            members = (options or {}).get("options", {}).get("members")
            yield found["identifier"], (list(members) if members is not None else None)


def _target(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    if isinstance(obj, griffe.Alias):
        try:
            final = obj.final_target
        except griffe.AliasResolutionError:
            return None
        return final if isinstance(final, griffe.Object) else None
    return obj


def _rendered(obj: griffe.Object, members: list[str] | None) -> Iterator[griffe.Object]:
    yield obj
    if members is None:  # what the default filters keep: public, own members, documented
        members = [name for name in obj.members if not name.startswith("_")]
    for name in members:
        member = obj.members.get(name)
        if member is None or member.is_alias:
            continue
        target = _target(member)
        if target is not None and target.has_docstrings:
            yield from _rendered(target, None)


class _Site:
    """The objects the site documents, by canonical path, from a loader of its own (the
    handler's loads one package at a time, in the order the pages ask for them)."""

    def __init__(self, search_paths: list[str | Path]) -> None:
        directives = list(_directives())
        self.packages = {identifier.split(".", 1)[0] for identifier, _ in directives}
        loader = griffe.GriffeLoader(search_paths=search_paths)
        for package in sorted(self.packages):
            loader.load(package, try_relative_path=False)
        loader.resolve_aliases(implicit=False, external=False)
        self.collection = loader.modules_collection
        self.documented: set[str] = set()
        for identifier, members in directives:
            root = self.canonical(identifier)
            if root is None:
                raise SystemExit(f"a page documents {identifier}, which does not exist")
            self.documented |= {each.path for each in _rendered(self.collection[root], members)}

    def canonical(self, path: str) -> str | None:
        if path.split(".", 1)[0] not in self.packages:
            return None
        try:
            found = self.collection[path]
        except (KeyError, griffe.AliasResolutionError):
            return None
        target = _target(found)
        return target.path if target is not None else None


@cache
def documented_site(search_paths: tuple[str | Path, ...]) -> _Site:
    return _Site(list(search_paths))


def _resolve(scope: griffe.Object, name: str) -> str:
    """``name`` as a dotted path: Sphinx looks it up from the docstring's object outwards."""
    head, _, rest = name.partition(".")
    try:
        resolved = scope.resolve(head)
    except griffe.NameResolutionError:
        return name  # already a full path, or something outside our packages
    return f"{resolved}.{rest}" if rest else resolved


def rewrite(text: str, scope: griffe.Object, site: _Site) -> str:
    """``text`` with each Sphinx role replaced by a cross-reference or inline code."""

    def replace(match: re.Match[str]) -> str:
        role, body = match["role"], match["text"].strip()
        if role not in OBJECT_ROLES:
            return f"`{body}`"
        if explicit := re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^<>]+)>", body):
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.removeprefix("~")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
            if role in CALLABLE_ROLES:
                title += "()"
        canonical = site.canonical(_resolve(scope, target.removeprefix(".")))
        if canonical is not None and canonical in site.documented:
            return f"[`{title}`][{canonical}]"
        return f"`{title}`"

    return ROLE.sub(replace, text)


def objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Object):  # an alias's docstring is its target's
            yield from objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **_: Any) -> None:  # noqa: ANN401
        site = documented_site(tuple(loader.finder.search_paths))
        for obj in objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj, site)
