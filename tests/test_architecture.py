"""The import arrows architecture.md forbids stay forbidden (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"agent", "drivers", "sync", "routine", "central"}
IO_MODULES = {"sqlite3", "sqlite_utils", "httpx", "requests", "socket", "nfc", "bleak",
              "sqlalchemy", "psycopg", "urllib", "http", "os", "subprocess"}

# package -> what of ours it may import (None: anything of ours)
ALLOWED: dict[str, set[str]] = {
    "drivers": {"drivers"},
    "routine": {"routine"},
    "sync": {"sync", "routine"},
    "central": {"central", "sync", "routine"},
    "agent": {"agent", "drivers", "sync", "routine"},
}


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_directions(package):
    bad = []
    for path in sources(package):
        if package == "agent" and "demo" in path.name:
            continue  # the demo is the one place that composes both sides
        for name in imports(path):
            top = name.split(".")[0]
            if top in OURS and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_central_uses_only_the_protocol_of_sync():
    for path in sources("central"):
        for name in imports(path):
            if name.startswith("sync"):
                assert name == "sync.protocol", f"{path} imports {name}"


def test_routine_does_no_io():
    for path in sources("routine"):
        for name in imports(path):
            assert name.split(".")[0] not in IO_MODULES, f"{path} imports {name}"
