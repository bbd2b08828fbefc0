"""Import boundaries, read from the source with `ast`: services meet on topics and tables.

A service package never imports another one, `services.common` imports none of them, and
`schemas` imports only the standard library, msgspec and itself. The modules beside the
packages (`services.cli`, `services.local`, ...) start the services and may import any.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("services.api", "services.alerts", "services.dispatcher", "services.logsink")
SCHEMAS_MAY_IMPORT = frozenset({"msgspec", "schemas"})


def within(name: str, package: str) -> bool:
    """Whether a dotted name is a package or inside it."""
    return name == package or name.startswith(package + ".")


def imported(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module that a source imports, relative imports resolved against `module`.

    `from a import b` counts as importing `a` and `a.b`, since `b` may be a module.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def service_of(name: str) -> str | None:
    """The service package a module belongs to, if any."""
    return next((package for package in SERVICES if within(name, package)), None)


def violations(module: str, imports: list[str]) -> list[str]:
    """What a module imports across a boundary, as `module -> imported` lines."""
    own = service_of(module)
    bad: list[str] = []
    for name in imports:
        other = service_of(name)
        if own is not None and other not in (None, own):
            bad.append(f"{module} -> {name} (services never import each other)")
        elif within(module, "services.common") and other is not None:
            bad.append(f"{module} -> {name} (common code serves every service)")
        elif within(module, "schemas") and not _schemas_may_import(name):
            bad.append(f"{module} -> {name} (schemas use the standard library and msgspec)")
    return bad


def _schemas_may_import(name: str) -> bool:
    top = name.partition(".")[0]
    return top in SCHEMAS_MAY_IMPORT or top in sys.stdlib_module_names


def modules() -> list[tuple[str, Path]]:
    """Every module of `services` and `schemas`, by dotted name."""
    found = []
    for top in ("services", "schemas"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def test_no_module_imports_across_a_boundary() -> None:
    found = modules()
    assert len(found) > 50 and any(name == "schemas" for name, _ in found)
    bad = [
        line
        for name, path in found
        for line in violations(name, imported(path.read_text(), name, path.stem == "__init__"))
    ]
    assert bad == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("services.alerts.payload", "from services.logsink.rows import log_id_for"),
        ("services.alerts.payload", "from ..logsink import rows"),
        ("services.alerts.payload", "from .. import logsink"),
        ("services.api.logs", "import services.dispatcher.retry as retry"),
        ("services.dispatcher.service", "from services import api"),
        ("services.logsink.sink", "def f():\n    import services.alerts.engine\n"),
        ("services.common.wiring", "from services.api.app import build_app"),
        ("schemas.events", "from services.common.clock import iso_ms"),
        ("schemas.events", "import aiohttp"),
        ("schemas", "from .. import services"),
    ],
)
def test_the_checker_finds_an_import_across_a_boundary(module: str, source: str) -> None:
    is_package = module == "schemas"
    assert len(violations(module, imported(source, module, is_package))) >= 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("services.alerts.payload", "from services.alerts.rules import arm\nfrom . import state"),
        ("services.alerts.payload", "from services.common.ids import log_id_for"),
        ("services.api.logs", "from schemas.logs import LogItem\nimport msgspec, aiohttp"),
        ("services.common.subscriptions", "from schemas.notifications import SubscriptionRecord"),
        ("services.cli", "from services.api.app import build_app\nimport services.logsink.sink"),
        ("schemas.payloads", "from typing import Any\nimport msgspec\nfrom .events import Cost"),
    ],
)
def test_the_checker_lets_imports_within_a_boundary_pass(module: str, source: str) -> None:
    assert violations(module, imported(source, module)) == []


def test_relative_imports_resolve_against_the_module_or_package() -> None:
    assert "services.logsink.rows" in imported("from ..logsink import rows", "services.alerts.x")
    assert "services.alerts.state" in imported("from .state import W", "services.alerts.x")
    assert "services.alerts.state" in imported("from .state import W", "services.alerts", True)
