"""confctl's command line itself: one-line usage errors, --help texts, and CLI.md covering it all."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from confctl.main import build_parser, main

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFCTL = Path(sys.executable).parent / "confctl"  # the installed console script
CLI_MD = PROJECT_ROOT / "docs" / "CLI.md"


def run_confctl(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONF_")}
    env["HOME"] = str(home)
    return subprocess.run([str(CONFCTL), *args], env=env, cwd=home, capture_output=True, text=True,
                          timeout=30, check=False)


def see(prog: str) -> str:
    return f" (see: {prog} --help)"


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(("argv", "line"), [
    (["--jsn", "room", "list"], "confctl: error: unrecognized arguments: --jsn" + see("confctl")),
    (["--bogus"], "confctl: error: unrecognized arguments: --bogus" + see("confctl")),
    (["room", "--bogus", "list"], "confctl room: error: unrecognized arguments: --bogus" + see("confctl room")),
    (["room", "list", "--jsn"],
     "confctl room list: error: unrecognized arguments: --jsn" + see("confctl room list")),
    (["room", "create", "standup", "--max-particpants", "10"],
     "confctl room create: error: unrecognized arguments: --max-particpants 10" + see("confctl room create")),
    (["token", "create", "--room", "r", "--idenity", "alice"],
     "confctl token create: error: unrecognized arguments: --idenity" + see("confctl token create")),
    (["participant", "mute", "r", "alice", "--knd", "video"],
     "confctl participant mute: error: unrecognized arguments: --knd video" + see("confctl participant mute")),
    (["keys", "generate", "--bogus"],
     "confctl keys generate: error: unrecognized arguments: --bogus" + see("confctl keys generate")),
    (["load-test", "--room", "r", "-S", "1", "--bogus"],
     "confctl load-test: error: unrecognized arguments: --bogus" + see("confctl load-test")),
    (["load-test", "--subscriber", "1", "--rooom", "r"],
     "confctl load-test: error: unrecognized arguments: --rooom" + see("confctl load-test")),
])
def test_unknown_flag_is_one_line_naming_the_flag_and_its_command(
    tmp_path: Path, argv: list[str], line: str
) -> None:
    done = run_confctl(*argv, home=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n")


@pytest.mark.parametrize(("argv", "line"), [
    ([], "confctl: error: the following arguments are required: COMMAND" + see("confctl")),
    (["room"], "confctl room: error: the following arguments are required: ACTION" + see("confctl room")),
    (["room", "create"],
     "confctl room create: error: the following arguments are required: NAME" + see("confctl room create")),
    (["load-test", "-S", "1"],
     "confctl load-test: error: the following arguments are required: --room" + see("confctl load-test")),
    (["--url"], "confctl: error: argument --url: expected one argument" + see("confctl")),
    (["keys", "generate", "--alg", "RSA"],
     "confctl keys generate: error: argument --alg: invalid choice: 'RSA' (choose from 'EdDSA', 'ES256')"
     + see("confctl keys generate")),
    (["load-test", "--room", "r", "--duration", "soon"],
     "confctl load-test: error: argument --duration: invalid duration 'soon': use seconds or a number "
     "with ms/s/m/h, e.g. 60s, 2m" + see("confctl load-test")),
])
def test_missing_or_invalid_argument_is_one_line_in_the_same_form(
    tmp_path: Path, argv: list[str], line: str
) -> None:
    done = run_confctl(*argv, home=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n")


def test_control_characters_in_a_bad_flag_cannot_break_the_line(capsys: Any) -> None:
    assert main(["--x\n\x1b[2Jy"]) == 2
    assert capsys.readouterr().err == (
        "confctl: error: unrecognized arguments: --x\\n\\x1b[2Jy" + see("confctl") + "\n"
    )


@pytest.mark.parametrize("argv", [
    ["--js", "room", "list"],  # an unambiguous abbreviation is still accepted
    ["room", "list", "--json"],
    ["room", "create", "--", "-dash-first"],  # after --, a dash starts a value, not a flag
])
def test_valid_arguments_get_past_parsing(tmp_path: Path, argv: list[str]) -> None:
    done = run_confctl(*argv, home=tmp_path)
    assert done.returncode == 2  # no credentials in this HOME: the next check fails, not parsing
    assert done.stderr.startswith("confctl: missing server URL"), done.stderr


# ----------------------------------------------------------------------------- --help


def help_text(capsys: Any, *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal width


@pytest.mark.parametrize(("argv", "json_help"), [
    ([], "print JSON instead of text: the API's response, or the result of keys generate and load-test"),
    (["room", "list"], "print the API's JSON response instead of text"),
    (["room", "create"], "print the API's JSON response instead of text"),
    (["token", "create"], "print the API's JSON response instead of text"),
    (["participant", "mute"], "print the API's JSON response instead of text"),
    (["room", "delete"], "print nothing on success (the API's response has no body); check the exit status"),
    (["participant", "kick"],
     "print nothing on success (the API's response has no body); check the exit status"),
    (["keys", "generate"], "print the key's kid, alg and file paths as JSON instead of text"),
    (["load-test"], "print the report as one JSON object instead of text"),
])
def test_json_help_says_what_each_command_prints(capsys: Any, argv: list[str], json_help: str) -> None:
    assert f"--json {json_help}" in help_text(capsys, *argv)


def test_load_test_help_lists_its_flags_and_exit_codes(capsys: Any) -> None:
    text = help_text(capsys, "load-test")
    assert "API's JSON" not in text
    assert "--video-publishers P, -P P" in text and "--quiet, -q" in text
    assert "Exit codes: 0 ok, 1 some participants failed or an API error, 2 usage error" in text


def test_help_lists_every_command(capsys: Any) -> None:
    text = help_text(capsys)
    for name in ("room", "token", "participant", "keys", "load-test"):
        assert f" {name} " in text


# ----------------------------------------------------------------------------- docs/CLI.md


def _commands(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}".strip())


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for a in parser._actions for opt in a.option_strings if opt not in ("-h", "--help")]


def _section(doc: str, command: str) -> str:
    """The text under the ``### ...`` heading naming *command*, up to the next heading."""
    match = re.search(rf"^### [^\n]*\b{re.escape(command)}\b[^\n]*\n(.*?)(?=^##)", doc, re.M | re.S)
    assert match, f"docs/CLI.md has no section for confctl {command}"
    return match.group(1)


def _mentions(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def test_cli_md_documents_every_command_and_flag() -> None:
    doc = CLI_MD.read_text(encoding="utf-8")
    leaves = [(path, p) for path, p in _commands(build_parser()) if p.get_default("handler")]
    assert "load-test" in [path for path, _ in leaves]
    for path, parser in leaves:
        section = _section(doc, path)
        for flag in _flags(parser):
            if flag != "--json":  # shared by every command: documented under Output
                assert _mentions(section, flag), f"docs/CLI.md: confctl {path} {flag} is not documented"
    for flag in _flags(build_parser()):
        assert _mentions(doc, flag), f"docs/CLI.md: confctl {flag} is not documented"
