"""Every reason a packet is dropped for is one ``DropReason`` member, and the operators' list of
them (docs/OPERATIONS.md, the ``reason`` label of ``conf_sfu_dropped_packets_total``) names each
member once and nothing else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sfu.core.actions import DropReason

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
LIST_START = "Drop reasons of `conf_sfu_dropped_packets_total`:"
METRIC_LABEL = re.compile(r'conf_sfu_dropped_packets_total\{reason="([a-z_]+)"\}')
MEMBERS = {reason.value for reason in DropReason}


def documented_list() -> list[str]:
    """The reasons named in OPERATIONS.md's list (the paragraph after ``LIST_START``)."""
    text = OPERATIONS.read_text()
    assert LIST_START in text, "docs/OPERATIONS.md lost its list of drop reasons"
    paragraph = text.split(LIST_START, 1)[1].split("\n\n", 1)[0]
    return [name for name in re.findall(r"`([a-z_]+)`", paragraph) if "_total" not in name]


def test_the_operators_list_names_every_drop_reason_once_and_nothing_else() -> None:
    named = documented_list()
    assert len(named) == len(set(named)), f"named twice: {sorted(n for n in named if named.count(n) > 1)}"
    assert sorted(MEMBERS - set(named)) == [], "drop reasons missing from docs/OPERATIONS.md"
    assert sorted(set(named) - MEMBERS) == [], (
        "docs/OPERATIONS.md lists reasons that are not DropReason members"
    )


def test_every_drop_reason_the_docs_and_alerts_query_exists() -> None:
    for path in (OPERATIONS, ROOT / "docs" / "SFU.md", ROOT / "deploy" / "prometheus" / "alerts.yml"):
        for name in METRIC_LABEL.findall(path.read_text()):
            assert name in MEMBERS, f"{path.name} queries reason={name!r}, which no packet is dropped for"


def test_packets_are_counted_under_the_reasons_label() -> None:
    assert all(isinstance(reason, str) and str(reason) == reason.value for reason in DropReason)


def test_the_sfu_counts_drops_only_under_members_never_free_strings() -> None:
    for path in sorted((ROOT / "sfu").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "drop"
            ):
                first = node.args[0] if node.args else None
                assert not (isinstance(first, ast.Constant) and isinstance(first.value, str)), (
                    f"{path.relative_to(ROOT)}:{node.lineno} counts a drop under a string; use DropReason"
                )
