"""The dependency rules of docs/architecture.md, checked on the source (parsed, never imported).

* Only ``store/`` talks to the database: no other module imports SQLAlchemy, in any form (``import``,
  ``from … import``, inside a function, under ``TYPE_CHECKING``, ``importlib.import_module``).
* Services do not depend on their edges: nothing under ``services/`` imports ``lakehouse.web``,
  ``lakehouse.api`` or ``lakehouse.cli``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "lakehouse"

# pyiceberg's SQL catalog is built from a SQLAlchemy engine: these two modules stay allowed.
ALWAYS_ALLOWED = frozenset({
    "lakehouse/lake/catalog.py",
})

# Modules that still import SQLAlchemy until their statements move into a store/ module (issue 12,
# item 1). This list only shrinks: a module on it that no longer imports SQLAlchemy fails
# test_not_yet_migrated_only_shrinks until it is taken off; never add a module to it.
NOT_YET_MIGRATED: frozenset[str] = frozenset()

EDGES = ("lakehouse.web", "lakehouse.api", "lakehouse.cli")


def _modules(under: Path) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(under.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _package_of(rel: str) -> list[str]:
    parts = rel.removesuffix(".py").split("/")
    return parts if parts[-1] == "__init__" else parts[:-1]


def imported_names(rel: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, dotted module name) of every import anywhere in the module, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(rel)
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # from lakehouse import web: the name may be a module
                yield node.lineno, f"{module}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def sqlalchemy_importers() -> dict[str, int]:
    """Modules outside store/ that import SQLAlchemy, with the line of the first such import."""
    found: dict[str, int] = {}
    for rel, tree in _modules(PACKAGE):
        if rel.startswith("lakehouse/store/"):
            continue
        lines = [line for line, name in imported_names(rel, tree) if _is(name, "sqlalchemy")]
        if lines:
            found[rel] = min(lines)
    return found


def test_the_allow_lists_name_real_modules() -> None:
    for rel in ALWAYS_ALLOWED | NOT_YET_MIGRATED:
        assert (SRC / rel).is_file(), f"{rel} does not exist: take it off the list"
    assert not ALWAYS_ALLOWED & NOT_YET_MIGRATED


def test_only_store_imports_sqlalchemy() -> None:
    offenders = {rel: line for rel, line in sqlalchemy_importers().items()
                 if rel not in ALWAYS_ALLOWED | NOT_YET_MIGRATED}
    assert not offenders, (
        "SQLAlchemy is imported outside src/lakehouse/store/: "
        + ", ".join(f"src/{rel}:{line}" for rel, line in sorted(offenders.items()))
        + ". Put the statements in a store/ module (named functions returning plain rows) and take the "
          "Connection type from lakehouse.store.types_public.")


def test_not_yet_migrated_only_shrinks() -> None:
    done = sorted(NOT_YET_MIGRATED - set(sqlalchemy_importers()))
    assert not done, f"no longer import SQLAlchemy, take them off NOT_YET_MIGRATED: {', '.join(done)}"


def test_services_do_not_import_their_edges() -> None:
    offenders = [f"src/{rel}:{line} imports {name}"
                 for rel, tree in _modules(PACKAGE / "services")
                 for line, name in imported_names(rel, tree)
                 if any(_is(name, edge) for edge in EDGES)]
    assert not offenders, "services depend on web/api/cli: " + "; ".join(sorted(set(offenders)))


def test_the_checks_see_every_import_form() -> None:
    source = '''
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from sqlalchemy import Connection
def f():
    import sqlalchemy.orm
    importlib.import_module("sqlalchemy.dialects")
    from ..web import render
    from .. import api
    from lakehouse import cli
'''
    found = list(imported_names("lakehouse/services/x.py", ast.parse(source)))
    assert {line for line, name in found if _is(name, "sqlalchemy")} == {2, 3, 6, 8, 9}
    names = {name for _, name in found}
    assert {"lakehouse.web", "lakehouse.web.render", "lakehouse.api", "lakehouse.cli"} <= names
