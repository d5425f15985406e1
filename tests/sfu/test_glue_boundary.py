"""aiortc's, aioice's and pylibsrtp's private internals are reached only from the glue: the
server's ``sfu/glue/`` package and the load generator's ``confctl/loadtest/glue.py``. Anywhere
else a private access (an attribute or module name with a leading underscore that belongs to
those libraries) fails here, so an upgrade of the pins has one place to re-check."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("aiortc", "aioice", "pylibsrtp")
CHECKED = ("sfu", "confserver", "confctl", "bench")
GLUE = (ROOT / "sfu" / "glue", ROOT / "confctl" / "loadtest" / "glue.py")
EXTRA = frozenset({"_sock"})
"""asyncio's transport socket, which aioice's transports are: the SFU binds its media sockets
itself (``sfu.ports.bind_udp``) and never needs it."""
REFLECTION = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@cache
def library_private_names() -> frozenset[str]:
    """Every private attribute name the libraries define on their objects: methods, class
    attributes, attributes set on ``self``, and the mangled form of ``self.__x``."""
    names: set[str] = set(EXTRA)
    for library in LIBRARIES:
        package = importlib.import_module(library)
        sources = [Path(package.__file__ or "")]
        if hasattr(package, "__path__"):
            sources += [
                Path(m.module_finder.path) / f"{m.name}.py"  # type: ignore[union-attr]
                for m in pkgutil.iter_modules(package.__path__)
            ]
        for source in sources:
            if source.suffix == ".py" and source.exists():
                names |= _defined_private_names(ast.parse(source.read_text()))
    return frozenset(names)


def _defined_private_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        mangle = f"_{cls.name.lstrip('_')}"
        for node in ast.walk(cls):
            found: str | None = None
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node in cls.body:
                found = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in ("self", "cls"):
                    found = node.attr
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                found = node.id
            if found is None or not _private(found):
                continue
            names.add(mangle + found if found.startswith("__") else found)
    return names


def violations(source: str) -> Iterator[str]:
    """What in ``source`` reaches a private internal of aiortc, aioice or pylibsrtp."""
    private = library_private_names()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                parts = module.split(".")
                if parts[0] in LIBRARIES and any(_private(p) for p in parts):
                    yield f"line {node.lineno}: imports the private module {module}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                for alias in node.names:
                    if _private(alias.name):
                        yield f"line {node.lineno}: imports the private name {alias.name} from {node.module}"
        elif isinstance(node, ast.Attribute) and node.attr in private:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                yield f"line {node.lineno}: reaches .{node.attr}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in REFLECTION:
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and name.value in private:
                yield f"line {node.lineno}: {node.func.id}(..., {name.value!r})"
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            if node.slice.value in private:
                yield f"line {node.lineno}: reaches [{node.slice.value!r}]"


def _in_glue(path: Path) -> bool:
    return any(path == g or g in path.parents for g in GLUE)


MODULES = sorted(p for top in CHECKED for p in (ROOT / top).rglob("*.py") if not _in_glue(p))


def test_the_libraries_private_names_are_known() -> None:
    names = library_private_names()
    assert {"_tx_srtp", "_handle_rtp_data", "_nominated", "_srtp", "_RTCIceTransport__monitor_task"} <= names


def test_the_rule_sees_each_kind_of_private_access() -> None:
    source = """
from pylibsrtp._binding import lib
from aiortc.rtcdtlstransport import _foo
import aioice._private
session = dtls._tx_srtp
sock = getattr(transport, "_sock", None)
fast = connection.__dict__["_nominated"]
self._state = 1
"""
    assert len(list(violations(source))) == 6


def test_the_glue_is_where_the_private_accesses_are() -> None:
    for module in ("aiortcseam", "srtp", "gathering", "negotiation"):
        assert list(violations((ROOT / "sfu" / "glue" / f"{module}.py").read_text())), module
    assert list(violations((ROOT / "confctl" / "loadtest" / "glue.py").read_text()))


def test_receive_send_and_icerestart_only_re_export_the_aiortc_seam() -> None:
    for module in ("receive", "send", "icerestart"):
        assert list(violations((ROOT / "sfu" / "glue" / f"{module}.py").read_text())) == [], module


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_no_private_access_to_aiortc_aioice_or_pylibsrtp_outside_the_glue(path: Path) -> None:
    found = list(violations(path.read_text()))
    assert found == [], (
        f"{path.relative_to(ROOT)} reaches library internals; move it into a glue module: {found}"
    )
