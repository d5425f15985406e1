"""sfu/core must stay sans-I/O: no event loop, no network, no clock, no hidden randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "sfu" / "core"
FORBIDDEN_MODULES = {
    "asyncio",
    "aiortc",
    "aiohttp",
    "aioice",
    "socket",
    "time",
    "threading",
    "random",
    "secrets",
    "datetime",
    "selectors",
    "subprocess",
    "multiprocessing",
    "os",
}
MODULES = sorted(CORE.glob("*.py"))


def test_core_package_has_modules() -> None:
    assert len(MODULES) >= 10


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_core_module_imports_nothing_that_does_io_or_reads_clocks(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN_MODULES


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_core_module_is_short_and_has_no_module_level_mutable_state(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) < 400
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            assert not isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp), (
                ast.dump(node)
            )
