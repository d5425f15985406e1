"""confctl against a real confserver (dev mode, no flags: it reads the credentials file the server
wrote): mistakes get the same exit status and the same line whether confctl or the server catches
them, a token for a room that does not exist comes with a warning, and a named API key works for
what its scopes allow until it is revoked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_e2e_server import Server, start_server

USAGE_LINE = re.compile(
    r"confctl room create: error: argument --max-participants: must be [^\n]*, got (?P<got>\d+) "
    r"\(see: confctl room create --help\)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    srv = start_server(home, free_port(), free_port(), {"CONF_SFU_ENABLED": "false"})
    yield srv
    srv.stop()


def test_the_banner_suggests_confctl_without_flags(server: Server) -> None:
    assert re.search(r"^\s*Try:\s+confctl room list$", server.banner, re.MULTILINE), server.banner
    assert server.confctl("room", "list").returncode == 0


@pytest.mark.parametrize("value", ["0", "101"])
def test_a_participant_cap_out_of_range_is_a_usage_error_wherever_it_is_caught(
    server: Server, value: str
) -> None:
    done = server.confctl("room", "create", f"cap{value}", "--max-participants", value)
    assert done.returncode == 2, done.stderr
    match = USAGE_LINE.fullmatch(done.stderr.strip())
    assert match is not None and match["got"] == value, done.stderr
    assert server.confctl("room", "show", f"cap{value}").returncode == 1  # nothing was created


def test_a_token_for_a_room_that_does_not_exist_comes_with_a_warning(server: Server) -> None:
    done = server.confctl("token", "create", "--room", "nowhere", "--identity", "ana")
    assert done.returncode == 0, done.stderr
    assert "/r/nowhere#token=" in done.stdout
    warning = done.stderr.strip()
    assert warning.startswith("confctl: warning: room nowhere does not exist"), done.stderr
    assert "confctl room create nowhere" in warning and len(warning.splitlines()) == 1


def test_a_token_for_an_existing_room_comes_without_a_warning(server: Server) -> None:
    assert server.confctl("room", "create", "board").returncode == 0
    done = server.confctl("--json", "token", "create", "--room", "board", "--identity", "ana")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_an_e2ee_room_is_created_listed_and_switched_off_while_empty(server: Server) -> None:
    assert server.confctl("room", "create", "secret", "--e2ee").returncode == 0
    shown = server.confctl("room", "show", "secret")
    assert re.search(r"^End-to-end encrypted:\s+yes$", shown.stdout, re.MULTILINE), shown.stdout
    listed = server.confctl("room", "list").stdout.splitlines()
    column = listed[0].split().index("E2EE")
    assert next(line.split() for line in listed if line.startswith("secret "))[column] == "yes"
    done = server.confctl("--json", "room", "update", "secret", "--no-e2ee")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["e2ee"] is False


def test_the_dev_ca_is_where_cli_md_says(server: Server) -> None:
    """docs/CLI.md: the dev CA is ``certs/ca.pem`` under the directory confserver started in."""
    assert Path(server.home, "certs", "ca.pem").is_file()
    assert str(Path(server.home, "certs", "ca.pem")) in server.banner


def test_a_token_for_a_missing_room_is_refused_where_the_server_would_not_create_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("home-no-autocreate")
    env = {"CONF_SFU_ENABLED": "false", "CONF_ROOMS_AUTO_CREATE": "false"}
    srv = start_server(home, free_port(), free_port(), env)
    try:
        done = srv.confctl("token", "create", "--room", "nowhere", "--identity", "ana")
        assert done.returncode == 1, done.stderr
        assert "room_not_found" in done.stderr
        assert "#token=" not in done.stdout
        assert srv.confctl("room", "create", "board").returncode == 0
        made = srv.confctl("token", "create", "--room", "board", "--identity", "ana")
        assert made.returncode == 0 and "/r/board#token=" in made.stdout, made.stderr
    finally:
        srv.stop()


def test_a_named_api_key_is_created_used_listed_and_revoked(server: Server) -> None:
    made = server.confctl_json("api-key", "create", "deploy bot", "--scopes", "rooms:read,rooms:write")
    assert made["name"] == "deploy bot" and made["scopes"] == ["rooms:read", "rooms:write"]
    bot = replace(server, env={**server.env, "CONF_API_KEY": made["id"], "CONF_API_SECRET": made["secret"]})

    assert bot.confctl("room", "create", "bot-room").returncode == 0
    refused = bot.confctl("token", "create", "--room", "bot-room", "--identity", "ana")
    assert refused.returncode == 1 and "insufficient_scope" in refused.stderr, refused.stderr

    listed = server.confctl("api-key", "list")
    assert listed.returncode == 0 and made["id"] in listed.stdout and "deploy bot" in listed.stdout
    assert made["secret"] not in listed.stdout
    as_json = server.confctl_json("api-key", "list")
    assert [k["id"] for k in as_json["keys"]] == [made["id"]]
    assert made["secret"] not in json.dumps(as_json)

    revoked = server.confctl("api-key", "revoke", made["id"])
    assert revoked.returncode == 0 and made["id"] in revoked.stdout, revoked.stderr
    after = bot.confctl("room", "list")
    assert after.returncode == 1 and "key_revoked" in after.stderr, after.stderr


def test_creating_an_api_key_prints_its_secret_once_in_text(server: Server) -> None:
    done = server.confctl("api-key", "create", "auditor", "--scopes", "rooms:read")
    assert done.returncode == 0, done.stderr
    secret = re.search(r"^API secret:\s+(\S+)$", done.stdout, re.MULTILINE)
    assert secret is not None and "shown this once" in done.stdout
    assert secret[1] not in server.confctl("api-key", "list").stdout


def test_an_unknown_scope_is_a_usage_error_naming_the_flag(server: Server) -> None:
    done = server.confctl("api-key", "create", "bot", "--scopes", "rooms:read,rooms:everything")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("confctl api-key create: error: argument --scopes: ")
    assert "rooms:everything" in done.stderr
