"""``confctl audit`` against a real confserver: the entries of what admins did are listed with
their actor; an export verifies with the audit key; editing a byte, deleting or reordering entries
or cutting the tail each fail with the place named; the chain survives a restart; the server's own
files verify too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_e2e_server import Server, start_server

STATE = Path(".local/state/confserver")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    srv = start_server(home, free_port(), free_port(), {"CONF_SFU_ENABLED": "false"})
    for args in (
        ("room", "create", "cabinet"),
        ("token", "create", "--room", "cabinet", "--identity", "minister"),
        ("api-key", "create", "auditor", "--scopes", "audit:read"),
        ("room", "lock", "cabinet"),
        ("room", "delete", "cabinet"),
    ):
        done = srv.confctl(*args)
        assert done.returncode == 0, (args, done.stderr)
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def _key(server: Server) -> str:
    return str(server.home / STATE / "audit-key.pem")


def _export(server: Server, name: str) -> Path:
    out = server.home / name
    done = server.confctl("audit", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_list_shows_each_admin_action_with_the_key_that_did_it(server: Server) -> None:
    entries = server.confctl_json("audit", "list", "--room", "cabinet")["entries"]
    actions = [(e["event"]["action"], e["event"]["outcome"], e["user"].get("name")) for e in entries]
    assert actions == [
        ("room.create", "success", "bootstrap"),
        ("token.create", "success", "bootstrap"),
        ("room.lock", "success", "bootstrap"),
        ("room.delete", "success", "bootstrap"),
    ]
    table = server.confctl("audit", "list", "--action", "api_key").stdout
    assert "api_key.create" in table and "auditor" in table
    assert server.confctl_json("audit", "list", "--actor", "nobody")["entries"] == []
    bad = server.confctl("audit", "list", "--since", "yesterday")
    assert bad.returncode in (1, 2) and "since" in bad.stderr


def test_an_export_verifies_with_the_audit_key(server: Server) -> None:
    copy = _export(server, "intact.jsonl")
    done = server.confctl("audit", "verify", str(copy), "--public-key", _key(server))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Intact:") and "Note:" not in done.stdout
    report = json.loads(
        server.confctl("--json", "audit", "verify", str(copy), "--public-key", _key(server)).stdout
    )
    assert report["intact"] and report["unsigned_tail"] == 0 and report["entries"] >= 7


@pytest.mark.parametrize("damage", ["edit", "delete", "reorder", "truncate"])
def test_a_damaged_export_fails_and_names_the_place(server: Server, damage: str) -> None:
    lines = _export(server, f"{damage}.jsonl").read_bytes().splitlines()
    if damage == "edit":
        lines[2] = lines[2].replace(b"bootstrap", b"bootstrak", 1)
        expected = "entry 3 (line 3) does not match its hash"
    elif damage == "delete":
        del lines[3]
        expected = "entry 4 is missing"
    elif damage == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
        expected = "line 3"
    else:
        lines = lines[:4]  # entries and the signed head at the end are gone
        expected = "no signed head"
    damaged = server.home / f"{damage}-damaged.jsonl"
    damaged.write_bytes(b"\n".join(lines) + b"\n")
    done = server.confctl("audit", "verify", str(damaged), "--public-key", _key(server))
    if damage == "truncate":  # a copy cut short cannot vouch for its end: said plainly, and the
        assert expected in done.stdout, done.stdout  # server's head shows what is missing
        live = server.confctl(
            "audit", "verify", str(server.home / STATE / "audit"), "--public-key", _key(server)
        )
        assert live.returncode == 0, live.stdout
        return
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("BROKEN:") and expected in done.stdout, done.stdout


def test_a_directory_cut_short_fails_beside_its_signed_head(server: Server, tmp_path: Path) -> None:
    source = server.home / STATE / "audit"
    server.confctl("audit", "export", "--out", str(tmp_path / "sign-now.jsonl"))  # signs the head
    files = sorted(source.glob("audit-*.jsonl"))
    lines = b"".join(f.read_bytes() for f in files).splitlines()
    copy = tmp_path / "audit"
    copy.mkdir()
    (copy / files[-1].name).write_bytes(b"\n".join(lines[:3]) + b"\n")
    (copy / "head.json").write_bytes((source / "head.json").read_bytes())
    done = server.confctl("audit", "verify", str(copy), "--public-key", _key(server))
    assert done.returncode == 1 and "the tail was cut" in done.stdout, done.stdout


def test_another_key_or_none_is_refused(server: Server, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    copy = _export(server, "for-other.jsonl")
    done = server.confctl("audit", "verify", str(copy), "--public-key", str(other))
    assert done.returncode == 1 and "unknown key" in done.stdout
    trusting = server.confctl("audit", "verify", str(copy))  # the export names the server's key
    assert trusting.returncode == 0 and "pin the key with --public-key" in trusting.stdout
    plain = server.home / "no-head.jsonl"
    plain.write_bytes(b"\n".join(copy.read_bytes().splitlines()[:-1]) + b"\n")
    assert server.confctl("audit", "verify", str(plain)).returncode == 2  # no key to check with


def test_the_chain_continues_after_a_restart(tmp_path: Path) -> None:
    srv = start_server(tmp_path, free_port(), free_port(), {"CONF_SFU_ENABLED": "false"})
    assert srv.confctl("room", "create", "before").returncode == 0
    srv.stop()
    again = start_server(tmp_path, free_port(), free_port(), {"CONF_SFU_ENABLED": "false"})
    try:
        assert again.confctl("room", "create", "after").returncode == 0
        done = again.confctl("audit", "verify", "--public-key", str(tmp_path / STATE / "audit-key.pem"))
        assert done.returncode == 0, done.stdout + done.stderr
        rooms = [
            e["conf"]["room"] for e in again.confctl_json("audit", "list", "--action", "room")["entries"]
        ]
        assert rooms == ["before", "after"]
        starts = again.confctl_json("audit", "list", "--action", "audit.start")["entries"]
        assert len(starts) == 2
    finally:
        again.stop()
