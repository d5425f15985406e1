"""confctl against a fake admin API served over TLS on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from confctl.main import main, parse_duration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "APIdevKey123"
SECRET = "dev-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ROOM = {
    "name": "standup", "max_participants": 10, "empty_timeout": 300, "metadata": {"team": "core"},
    "locked": False, "e2ee": False, "auto_created": False, "created_at": 1795442700, "updated_at": 1795442760,
    "num_participants": 2,
}
PARTICIPANT = {
    "sid": "PA_1", "identity": "alice", "name": "Alice A.", "role": "moderator", "permissions": ["publish"],
    "joined_at": 1795442700, "state": {"audio_muted": True, "video_muted": False, "hand_raised": False},
}


# ----------------------------------------------------------------------------- fake server


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _cert(subject: str, pub: Any, issuer: x509.Name | None, signer: Any, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    ski = x509.SubjectKeyIdentifier.from_public_key(pub)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(ski, critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
    else:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    return b.sign(signer, hashes.SHA256())


@dataclass
class PKI:
    ca_file: Path
    other_ca_file: Path
    cert_file: Path
    key_file: Path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, srv_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("confctl test CA", ca_key.public_key(), None, ca_key, ca=True)
    other = _cert("unrelated CA", other_key.public_key(), None, other_key, ca=True)
    srv = _cert("127.0.0.1", srv_key.public_key(), ca.subject, ca_key, ca=False)
    pki = PKI(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "server.key")
    pki.ca_file.write_bytes(_pem(ca))
    pki.other_ca_file.write_bytes(_pem(other))
    pki.cert_file.write_bytes(_pem(srv))
    pki.key_file.write_bytes(srv_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pki


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.requests.append(Recorded(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
            json.loads(raw) if raw else None))
        status, body, extra = self.server.routes.get(
            (self.command, self.path), (404, {"error": "not_found", "message": "no such route"}, {}))
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ctx: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ctx = ctx
        self.routes: dict[tuple[str, str], tuple[int, Any, dict[str, str]]] = {}
        self.requests: list[Recorded] = []
        self.errors: list[BaseException | None] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.ctx else 'http'}://127.0.0.1:{self.server_address[1]}"

    def route(self, method: str, path: str, status: int, body: Any = None, **headers: str) -> None:
        self.routes[(method, "/api/v1" + path)] = (status, body, headers)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ctx is None:
            return super().finish_request(request, client_address)
        with self.ctx.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(sys.exc_info()[1])


def _serve(ctx: ssl.SSLContext | None) -> Iterator[FakeServer]:
    srv = FakeServer(ctx)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.fixture
def server(pki: PKI) -> Iterator[FakeServer]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert_file, pki.key_file)
    yield from _serve(ctx)


@pytest.fixture
def plain_server() -> Iterator[FakeServer]:
    yield from _serve(None)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("CONF_URL", "CONF_API_KEY", "CONF_API_SECRET", "CONF_CACERT", "CONF_CREDENTIALS_FILE",
                "http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def conn(srv: FakeServer, pki: PKI) -> list[str]:
    return ["--url", srv.url, "--api-key", KEY, "--api-secret", SECRET, "--cacert", str(pki.ca_file)]


def check_admin_jwt(rec: Recorded, key: str = KEY, secret: str = SECRET) -> dict[str, Any]:
    auth = rec.headers["authorization"]
    assert auth.startswith("Bearer ")
    token = auth.removeprefix("Bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": key}
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="confserver-admin", issuer=key)
    assert set(claims) == {"iss", "sub", "aud", "admin", "iat", "nbf", "exp", "jti"}
    assert claims["sub"] == "confctl" and claims["aud"] == "confserver-admin" and claims["admin"] is True
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 300
    assert abs(claims["iat"] - time.time()) < 120
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) == 16
    return claims


def one_err_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and SECRET not in err
    return lines[0]


# ----------------------------------------------------------------------------- API calls


@pytest.mark.parametrize("json_first", [True, False])
def test_room_list_json_and_admin_jwt(server: FakeServer, pki: PKI, capsys: Any, json_first: bool) -> None:
    doc = {"rooms": [ROOM, {**ROOM, "name": "b", "locked": True}]}
    server.route("GET", "/rooms", 200, doc)
    args = ["--json", "room", "list"] if json_first else ["room", "list", "--json"]
    assert main([*conn(server, pki), *args]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == doc
    assert out == json.dumps(doc, indent=2, sort_keys=True) + "\n"
    (rec,) = server.requests
    assert (rec.method, rec.path) == ("GET", "/api/v1/rooms")
    check_admin_jwt(rec)


def test_each_request_has_fresh_jti(server: FakeServer, pki: PKI) -> None:
    server.route("GET", "/rooms/standup", 200, ROOM)
    assert main([*conn(server, pki), "room", "show", "standup"]) == 0
    assert main([*conn(server, pki), "room", "show", "standup"]) == 0
    assert len({check_admin_jwt(r)["jti"] for r in server.requests}) == 2


def test_room_list_table(server: FakeServer, pki: PKI, capsys: Any) -> None:
    server.route("GET", "/rooms", 200, {"rooms": [ROOM, {**ROOM, "name": "zz", "locked": True, "e2ee": True,
                                                           "empty_timeout": 0, "num_participants": 0}]})
    assert main([*conn(server, pki), "room", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "PARTICIPANTS", "MAX", "LOCKED", "E2EE", "EMPTY_TIMEOUT", "CREATED"]
    assert lines[1].split() == ["standup", "2", "10", "no", "no", "5m", "2026-11-23", "14:05:00Z"]
    assert lines[2].split() == ["zz", "0", "10", "yes", "yes", "never", "2026-11-23", "14:05:00Z"]
    assert lines[0].index("PARTICIPANTS") == lines[1].index("2")


def test_participant_list_table(server: FakeServer, pki: PKI, capsys: Any) -> None:
    bob = {**PARTICIPANT, "identity": "bob", "name": "", "role": "viewer",
           "state": {"audio_muted": False, "video_muted": True, "hand_raised": True}}
    server.route("GET", "/rooms/standup/participants", 200, {"participants": [bob, PARTICIPANT]})
    assert main([*conn(server, pki), "participant", "list", "standup"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["IDENTITY", "NAME", "ROLE", "AUDIO", "VIDEO", "JOINED"]
    assert lines[1].split() == ["alice", "Alice", "A.", "moderator", "muted", "on", "2026-11-23", "14:05:00Z"]
    assert lines[2].split() == ["bob", "-", "viewer", "on", "muted", "2026-11-23", "14:05:00Z"]


def test_path_segments_are_encoded(server: FakeServer, pki: PKI, capsys: Any) -> None:
    path = "/rooms/standup/participants/al%2Fice%20x%3F%23%25%C3%A9/mute"
    server.route("POST", path, 200, PARTICIPANT)
    argv = ["participant", "mute", "standup", "al/ice x?#%é", "--kind", "video"]
    assert main([*conn(server, pki), *argv]) == 0
    (rec,) = server.requests
    assert rec.path == "/api/v1" + path and rec.body == {"kind": "video", "muted": True}
    assert rec.headers["content-type"] == "application/json"
    server.route("DELETE", "/rooms/standup/participants/%2E%2E", 204)
    assert main([*conn(server, pki), "participant", "kick", "standup", ".."]) == 0
    assert server.requests[-1].path == "/api/v1/rooms/standup/participants/%2E%2E"
    server.route("POST", "/tokens/a%2Fb/revoke", 200, {"jti": "a/b", "revoked_until": 1795442700})
    assert main([*conn(server, pki), "token", "revoke", "a/b"]) == 0
    assert "Revoked token a/b" in capsys.readouterr().out


def test_room_create_lock_unlock_delete(server: FakeServer, pki: PKI, capsys: Any) -> None:
    server.route("POST", "/rooms", 201, ROOM)
    argv = [*conn(server, pki), "room", "create", "standup", "--max-participants", "10",
            "--empty-timeout", "5m", "--metadata", '{"team": "core"}']
    assert main(argv) == 0
    assert server.requests[0].body == {"name": "standup", "max_participants": 10, "empty_timeout": 300,
                                       "metadata": {"team": "core"}}
    out = capsys.readouterr().out
    assert "standup" in out and '{"team": "core"}' in out and "2026-11-23 14:05:00Z" in out
    server.route("PATCH", "/rooms/standup", 200, {**ROOM, "locked": True})
    assert main([*conn(server, pki), "room", "lock", "standup"]) == 0
    assert main([*conn(server, pki), "--json", "room", "unlock", "standup"]) == 0
    assert [r.body for r in server.requests[1:]] == [{"locked": True}, {"locked": False}]
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == {**ROOM, "locked": True}
    server.route("DELETE", "/rooms/standup", 204)
    assert main([*conn(server, pki), "room", "delete", "standup"]) == 0
    assert capsys.readouterr().out == "Deleted room standup\n"
    assert main([*conn(server, pki), "--json", "room", "delete", "standup"]) == 0
    assert capsys.readouterr().out == ""


def test_room_e2ee_flags_are_sent_and_shown(server: FakeServer, pki: PKI, capsys: Any) -> None:
    server.route("POST", "/rooms", 201, {**ROOM, "e2ee": True})
    assert main([*conn(server, pki), "room", "create", "standup", "--e2ee"]) == 0
    assert server.requests[0].body == {"name": "standup", "e2ee": True}
    assert re.search(r"^End-to-end encrypted:\s+yes$", capsys.readouterr().out, re.MULTILINE)
    server.route("PATCH", "/rooms/standup", 200, ROOM)
    assert main([*conn(server, pki), "room", "update", "standup", "--no-e2ee"]) == 0
    assert server.requests[1].body == {"e2ee": False}
    assert re.search(r"^End-to-end encrypted:\s+no$", capsys.readouterr().out, re.MULTILINE)


def test_token_create(server: FakeServer, pki: PKI, capsys: Any) -> None:
    tok = {"token": "eyJ.tok.en", "jti": "J1", "expires_at": 1795442700,
           "join_url": "https://127.0.0.1:8443/r/standup#token=eyJ.tok.en"}
    server.route("POST", "/tokens", 201, tok)
    server.route("GET", "/rooms/standup", 200, ROOM)
    base = [*conn(server, pki), "token", "create", "--room", "standup", "--identity", "alice"]
    assert main([*base, "--name", "Alice", "--role", "moderator", "--ttl", "2h"]) == 0
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/api/v1/rooms/standup"), ("POST", "/api/v1/tokens")]
    assert server.requests[1].body == {"room": "standup", "identity": "alice", "name": "Alice",
                                       "role": "moderator", "ttl": 7200}
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["Token:", "eyJ.tok.en"]
    assert out[1].split() == ["Join", "link:", tok["join_url"]]
    assert "J1" in out[2] and "2026-11-23 14:05:00Z" in out[3]
    assert main([*base, "--json"]) == 0
    assert server.requests[3].body == {"room": "standup", "identity": "alice"}
    captured = capsys.readouterr()
    assert json.loads(captured.out) == tok and captured.err == ""


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200),
                                               ("1d", 86400)])
def test_ttl_parsing(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("argv", [
    ["token", "create", "--room", "r", "--identity", "i", "--ttl", "bogus"],
    ["token", "create", "--room", "r", "--identity", "i", "--ttl", "0"],
    ["room", "show", "bad name"], ["room", "create", "x" * 65], ["room", "delete", ""],
    ["participant", "list", "a/b"], ["token", "create", "--room", "r.1", "--identity", "i"],
    ["room", "create", "r", "--metadata", "[1, 2]"], ["room", "create", "r", "--metadata", "{nope"],
    ["room", "create", "r", "--max-participants", "x"], ["participant", "mute", "r", "i", "--kind", "x"],
    [], ["room"], ["room", "create"], ["frobnicate"], ["token", "create", "--room", "r"],
])
def test_local_validation_exit_2_in_one_line_without_request(
    server: FakeServer, pki: PKI, capsys: Any, argv: list[str]
) -> None:
    assert main([*conn(server, pki), *argv]) == 2
    line = one_err_line(capsys.readouterr().err)
    assert line.startswith("confctl") and ": error: " in line and line.endswith(" --help)")
    assert server.requests == []


# ----------------------------------------------------------------------------- errors


def test_api_error_exit_1(server: FakeServer, pki: PKI, capsys: Any) -> None:
    server.route("GET", "/rooms/nope", 404, {"error": "room_not_found", "message": "room 'nope' not found"})
    assert main([*conn(server, pki), "room", "show", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_err_line(captured.err) == "confctl: error room_not_found: room 'nope' not found"


def test_error_messages_never_leak_secret_or_token(server: FakeServer, pki: PKI, capsys: Any) -> None:
    server.route("GET", "/rooms", 401, {"error": "unauthorized", "message": f"bad\nsecret {SECRET}"})
    assert main([*conn(server, pki), "room", "list"]) == 1
    line = one_err_line(capsys.readouterr().err)
    assert line.startswith("confctl: error unauthorized: bad secret") and "eyJ" not in line


def test_non_json_error_and_redirect(server: FakeServer, pki: PKI, capsys: Any) -> None:
    server.route("GET", "/rooms", 502, b"<html>bad gateway</html>")
    assert main([*conn(server, pki), "room", "list"]) == 1
    assert one_err_line(capsys.readouterr().err).startswith("confctl: error http_502")
    server.route("GET", "/rooms/r", 302, None, Location=server.url + "/elsewhere")
    assert main([*conn(server, pki), "room", "show", "r"]) == 1
    assert "redirect" in one_err_line(capsys.readouterr().err)
    assert [r.path for r in server.requests] == ["/api/v1/rooms", "/api/v1/rooms/r"]


def test_unreachable_exit_3(capsys: Any) -> None:
    with socket.socket() as sock:  # bound but not listening: connection refused
        sock.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        assert main(["--url", url, "--api-key", KEY, "--api-secret", SECRET, "room", "list"]) == 3
    assert one_err_line(capsys.readouterr().err).startswith(f"confctl: cannot reach {url}: ")


@pytest.mark.parametrize("other_ca", [False, True])
def test_tls_verification_is_never_off(server: FakeServer, pki: PKI, capsys: Any, other_ca: bool) -> None:
    server.route("GET", "/rooms", 200, {"rooms": []})
    argv = ["--url", server.url, "--api-key", KEY, "--api-secret", SECRET, "room", "list"]
    if other_ca:
        argv = ["--cacert", str(pki.other_ca_file), *argv]
    assert main(argv) == 3
    line = one_err_line(capsys.readouterr().err)
    assert line.startswith(f"confctl: cannot reach {server.url}: TLS certificate verification failed")
    assert server.requests == []


def test_http_refused_for_non_loopback(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("must not connect")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert main(["--url", "http://192.0.2.1:8080", "--api-key", KEY, "--api-secret", SECRET,
                 "room", "list"]) == 2
    assert "refusing plain http://" in one_err_line(capsys.readouterr().err)


def test_http_allowed_on_loopback(plain_server: FakeServer, capsys: Any) -> None:
    plain_server.route("GET", "/rooms", 200, {"rooms": []})
    assert main(["--url", plain_server.url, "--api-key", KEY, "--api-secret", SECRET, "room", "list"]) == 0
    assert capsys.readouterr().out == "No rooms.\n"


# ----------------------------------------------------------------------------- credentials


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{sock.getsockname()[1]}"


def _write_creds(path: Path, **fields: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return path


def test_credentials_from_default_file(server: FakeServer, pki: PKI, tmp_path: Path) -> None:
    _write_creds(tmp_path / "home/.local/state/confserver/credentials.json", url=server.url, api_key=KEY,
                 api_secret=SECRET, cacert=str(pki.ca_file))
    server.route("GET", "/rooms", 200, {"rooms": []})
    assert main(["room", "list"]) == 0
    check_admin_jwt(server.requests[0])


def test_env_overrides_file_and_flags_override_env(
    server: FakeServer, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _write_creds(tmp_path / "creds.json", url=_dead_url(), api_key="file-key",
                         api_secret="file-secret-" + "f" * 40, cacert=str(pki.ca_file))
    monkeypatch.setenv("CONF_CREDENTIALS_FILE", str(creds))
    server.route("GET", "/rooms", 200, {"rooms": []})
    assert main(["room", "list"]) == 3  # file URL is dead: proves the file is used
    env_secret = "env-secret-" + "e" * 40
    monkeypatch.setenv("CONF_URL", server.url)
    monkeypatch.setenv("CONF_API_KEY", "env-key")
    monkeypatch.setenv("CONF_API_SECRET", env_secret)
    assert main(["room", "list"]) == 0  # cacert still comes from the file
    check_admin_jwt(server.requests[-1], "env-key", env_secret)
    monkeypatch.setenv("CONF_URL", _dead_url())
    monkeypatch.setenv("CONF_CACERT", str(pki.other_ca_file))
    assert main([*conn(server, pki), "room", "list"]) == 0
    check_admin_jwt(server.requests[-1], KEY, SECRET)
    assert len(server.requests) == 2


def test_missing_credentials_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("CONF_API_SECRET", SECRET)
    monkeypatch.setenv("CONF_CREDENTIALS_FILE", str(tmp_path / "absent.json"))
    assert main(["room", "list"]) == 2
    line = one_err_line(capsys.readouterr().err)
    assert "server URL" in line and "API key" in line and "CONF_API_KEY" in line and "--url" in line
    assert "API secret" not in line and str(tmp_path / "absent.json") in line


# ----------------------------------------------------------------------------- keys, subprocess


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_keys_generate(tmp_path: Path, capsys: Any, alg: str) -> None:
    out_dir = tmp_path / "keys"
    assert main(["keys", "generate", "--alg", alg, "--kid", "k1", "--out", str(out_dir)]) == 0
    priv_path, pub_path = out_dir / "k1.key", out_dir / "k1.pub"
    assert stat.S_IMODE(priv_path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(priv_path.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pub_path.read_bytes())
    expected = ed25519.Ed25519PrivateKey if alg == "EdDSA" else ec.EllipticCurvePrivateKey
    assert isinstance(private, expected)
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert private.public_key().public_bytes(*raw) == public.public_bytes(*raw)
    out = capsys.readouterr().out
    assert f'[[auth.keys]]\nkid = "k1"\nalg = "{alg}"\npublic_key_file = "{pub_path.resolve()}"\n' in out
    before = priv_path.read_bytes()
    assert main(["keys", "generate", "--alg", alg, "--kid", "k1", "--out", str(out_dir)]) == 2
    assert "refusing to overwrite" in one_err_line(capsys.readouterr().err)
    assert priv_path.read_bytes() == before


def test_keys_generate_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--json", "keys", "generate"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["alg"] == "EdDSA" and len(doc["kid"]) == 10 and doc["kid"].startswith("k-")
    int(doc["kid"][2:], 16)
    assert doc["public_key_file"] == str(tmp_path.resolve() / f"{doc['kid']}.pub")
    assert main(["keys", "generate", "--kid", "../evil"]) == 2


def test_subprocess_entry_point(server: FakeServer, pki: PKI) -> None:
    server.route("GET", "/rooms/standup", 200, ROOM)
    env = {**os.environ, "CONF_URL": server.url, "CONF_API_KEY": KEY, "CONF_API_SECRET": SECRET,
           "CONF_CACERT": str(pki.ca_file), "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "confctl.main", "--json", "room", "show", "standup"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ROOM
    check_admin_jwt(server.requests[0])
