"""``confctl audit``: search the audit log, export it, and verify a copy (or the server's files)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from confctl import output
from confctl.client import AdminClient, UsageError
from confserver.audit import Report, load_public_key, verify
from confserver.audit.chain import fingerprint

Command = Callable[..., argparse.ArgumentParser]
ClientFactory = Callable[[argparse.Namespace], AdminClient]

EXIT_BROKEN = 1
HEAD_KEY = "audit_head"


def cmd_list(args: argparse.Namespace, client: AdminClient) -> int:
    query = {
        name: str(value)
        for name in ("room", "actor", "action", "since", "limit")
        if (value := getattr(args, name)) is not None
    }
    doc = client.request("GET", ["audit"], query=query)
    if args.json:
        print(output.to_json(doc))
    else:
        print(render_entries(doc["entries"]))
    return 0


def render_entries(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "No entries."
    rows = [("SEQ", "TIME (UTC)", "ACTION", "OUTCOME", "ACTOR", "ROOM", "TARGET")]
    for e in entries:
        event, user = e.get("event", {}), e.get("user", {})
        outcome = str(event.get("outcome", ""))
        if event.get("reason"):
            outcome += f" ({event['reason']})"
        rows.append(
            (
                str(event.get("sequence", "")),
                str(e.get("@timestamp", ""))[:19].replace("T", " "),
                str(event.get("action", "")),
                outcome,
                str(user.get("name") or user.get("id") or "-"),
                str(e.get("conf", {}).get("room", "-")),
                str(user.get("target", {}).get("name") or user.get("target", {}).get("id") or "-"),
            )
        )
    widths = [max(len(output.clean(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(output.clean(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cmd_export(args: argparse.Namespace, client: AdminClient) -> int:
    lines = client.stream_lines(["audit", "export"])
    if args.out is None:
        for line in lines:
            sys.stdout.buffer.write(line + b"\n")
        sys.stdout.flush()
        return 0
    out = Path(args.out)
    fd, tmp = tempfile.mkstemp(dir=out.parent or Path("."), prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            count = 0
            for line in lines:
                f.write(line + b"\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not args.json:
        print(f"Exported {count - 1} entries to {output.clean(str(out))}")
    return 0


# --- verify ------------------------------------------------------------------------------------


def _read_source(path: Path) -> tuple[list[bytes], dict[str, Any] | None, dict[str, str]]:
    """The entries, the signed head and the public keys a copy names. An export ends with its
    head; the server's own directory holds a file a day and ``head.json``."""
    if path.is_dir():
        files = sorted(path.glob("audit-????-??-??.jsonl"))
        if not files:
            raise UsageError(f"{path} holds no audit-YYYY-MM-DD.jsonl files")
        lines = [line for f in files for line in f.read_bytes().splitlines()]
        head_file = path / "head.json"
        head = json.loads(head_file.read_bytes()) if head_file.exists() else None
        return lines, head, {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    return _split_head(lines)


def _split_head(lines: list[bytes]) -> tuple[list[bytes], dict[str, Any] | None, dict[str, str]]:
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        try:
            last = json.loads(lines[-1])
        except ValueError:
            last = None
        if isinstance(last, dict) and HEAD_KEY in last:
            named = last.get("public_keys")
            keys: dict[Any, Any] = named if isinstance(named, dict) else {}
            return lines[:-1], last[HEAD_KEY], {str(k): str(v) for k, v in keys.items()}
    return lines, None, {}


def _pinned_keys(files: Iterable[str]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name in files:
        try:
            key = load_public_key(Path(name).expanduser().read_bytes())
        except (OSError, ValueError) as e:
            raise UsageError(f"--public-key {name}: {getattr(e, 'strerror', None) or e}") from None
        keys[fingerprint(key)] = key
    return keys


def cmd_verify(args: argparse.Namespace, client_of: ClientFactory) -> int:
    if args.file is not None:
        lines, head, named = _read_source(Path(args.file))
        where = args.file
    else:
        lines, head, named = _split_head(list(client_of(args).stream_lines(["audit", "export"])))
        where = "the server's export"
    keys = _pinned_keys(args.public_key or [])
    notice = ""
    if not keys:
        if not named:
            raise UsageError("no public key: pass --public-key FILE (the audit key's public or private PEM)")
        try:
            keys = {fp: load_public_key(pem.encode()) for fp, pem in named.items()}
        except ValueError as e:
            raise UsageError(f"the copy names a bad public key: {e}") from None
        notice = (
            f"checked with the key(s) the copy itself names ({', '.join(sorted(keys))}); "
            "pin the key with --public-key for a check that does not trust the server"
        )
    if head is None:
        notice = (notice + "; " if notice else "") + "no signed head: a cut-off tail cannot be detected"
    report = verify(lines, keys, head=head)
    if args.json:
        print(output.to_json(_report_doc(report, where, notice)))
    else:
        print(_render_report(report, where, notice))
    return 0 if report.ok else EXIT_BROKEN


def _report_doc(report: Report, where: str, notice: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "source": where,
        "intact": report.ok,
        "entries": report.entries,
        "first_sequence": report.first_seq,
        "last_sequence": report.last_seq,
        "signed_through": report.signed_through,
        "unsigned_tail": report.unsigned_tail,
        "keys": sorted(report.keys_seen),
    }
    if not report.ok:
        doc["error"] = report.error
        doc["line"] = report.line
    if notice:
        doc["notice"] = notice
    return doc


def _render_report(report: Report, where: str, notice: str) -> str:
    if not report.ok:
        out = [f"BROKEN: {report.error}"]
    else:
        out = [
            f"Intact: {report.entries} entries ({report.first_seq}-{report.last_seq}), "
            f"signed through {report.signed_through}"
            + (f"; {report.unsigned_tail} newer entries not signed yet" if report.unsigned_tail else "")
        ]
    out.append(f"Source: {where}")
    if notice:
        out.append(f"Note: {notice}")
    return "\n".join(output.clean(x) for x in out)


def register(sub: Any, command: Command, client_of: ClientFactory) -> None:
    """The ``audit`` commands, under the group ``sub``."""
    p = command(sub, "list", lambda a: cmd_list(a, client_of(a)), "search the audit log (newest last)")
    p.add_argument("--room", metavar="ROOM")
    p.add_argument("--actor", metavar="WHO", help="an API key's name or id, or a participant's identity")
    p.add_argument("--action", metavar="ACTION", help="e.g. room.delete, or room for every room action")
    p.add_argument("--since", metavar="TIME", help="RFC 3339, e.g. 2026-12-04T09:00:00Z; then oldest first")
    p.add_argument("--limit", metavar="N", type=int, help="at most N entries (1-1000, default 100)")
    p = command(
        sub,
        "export",
        lambda a: cmd_export(a, client_of(a)),
        "write every entry as JSON lines, ending with the signed head",
        "with --out, print nothing",
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p = command(
        sub,
        "verify",
        lambda a: cmd_verify(a, client_of),
        "check a copy of the audit log: exit 0 if intact, 1 with the first broken place",
        "print the report as JSON",
    )
    p.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        help="an export, or the server's audit directory (default: export from the server now)",
    )
    p.add_argument(
        "--public-key",
        metavar="PEM",
        action="append",
        help="the audit key (public or private PEM) to trust; repeat for several nodes' keys",
    )


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream into lines (without their newlines)."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from (p for p in parts if p)
    if rest:
        yield rest
