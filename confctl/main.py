"""confctl entry point: argument parsing and command dispatch."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from confctl import __version__, audit, keys, nodes, output
from confctl.client import AdminClient, ApiError, ConfctlError, UsageError, resolve_settings
from confctl.loadtest import cli as loadtest_cli

ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
DURATION_RE = re.compile(r"(\d{1,12})([smhd]?)")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ROLES = ("moderator", "participant", "viewer")

Handler = Callable[[argparse.Namespace], int]

API_JSON_HELP = "print the API's JSON response instead of text"
NO_BODY_JSON_HELP = "print nothing on success (the API's response has no body); check the exit status"
MISSING_PREFIX = "the following arguments are required"  # argparse's message, untranslated
NEGATIVE_NUMBER_RE = re.compile(r"-\d+|-\d*\.\d+")  # argparse reads these as values, not options


# ----------------------------------------------------------------------------- parser class


class _MissingArguments(Exception):
    """argparse found required arguments of *parser* missing; that parser decides what to report."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class CommandLineParser(argparse.ArgumentParser):
    """argparse with confctl's usage errors: one line on stderr, exit status 2, no usage block.

    The line reads ``PROG: error: MESSAGE (see: PROG --help)``. argparse makes every subcommand
    parser of this class too, and each rejects the flags it does not know itself, so PROG names
    the (sub)command whose ``--help`` lists the right ones. A mistyped flag is reported even when
    it also leaves a required argument missing (``confctl --bogus``).
    """

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        arg_list = sys.argv[1:] if args is None else list(args)
        try:
            parsed, extras = super().parse_known_args(arg_list, namespace)
        except _MissingArguments as missing:
            if missing.parser is not self:
                raise
            unknown = self._unknown_options(arg_list)
            self._fail(f"unrecognized arguments: {' '.join(unknown)}" if unknown else str(missing))
        if extras:
            self._fail(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        if message.startswith(MISSING_PREFIX):
            raise _MissingArguments(self, message)
        self._fail(message)

    def _fail(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {output.clean(message)} (see: {self.prog} --help)\n")

    def _unknown_options(self, args: list[str]) -> list[str]:
        """The arguments argparse takes for flags that this parser neither has nor abbreviates."""
        # argparse offers no public list of a parser's option strings.
        known = list(self._option_string_actions)
        unknown = []
        for arg in args:
            if arg == "--":  # what follows is values only
                break
            if not arg.startswith("-") or arg == "-" or NEGATIVE_NUMBER_RE.fullmatch(arg):
                continue
            if arg.startswith("--"):
                name = arg.split("=", 1)[0]
                if not any(option.startswith(name) for option in known):
                    unknown.append(arg)
            elif arg[:2] not in known:  # -S1, -qS 1: a short flag with its value or others attached
                unknown.append(arg)
        return unknown


# ----------------------------------------------------------------------------- argument types


def room_name(text: str) -> str:
    if not ROOM_NAME_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid room name {text!r}: use 1-64 characters from A-Z a-z 0-9 _ -"
        )
    return text


def non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def parse_duration(text: str, allow_zero: bool = False) -> int:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` -> seconds."""
    match = DURATION_RE.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use seconds or a number with s/m/h/d, e.g. 90, 15m, 2h, 1d"
        )
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds == 0 and not allow_zero:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


def ttl(text: str) -> int:
    return parse_duration(text)


def empty_timeout(text: str) -> int:
    return parse_duration(text, allow_zero=True)


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def scope_list(text: str) -> list[str]:
    """``rooms:read,tokens:create`` -> a list; the server checks the names."""
    scopes = [part.strip() for part in text.split(",") if part.strip()]
    if not scopes:
        raise argparse.ArgumentTypeError("give at least one scope, e.g. rooms:read,tokens:create")
    return scopes


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"topic": "standup"}\'')
    return value


# ----------------------------------------------------------------------------- helpers


def _client(args: argparse.Namespace) -> AdminClient:
    flags = {
        "url": args.url,
        "api_key": args.api_key,
        "api_secret": args.api_secret,
        "cacert": args.cacert,
    }
    return AdminClient(resolve_settings(flags, os.environ))


def _emit(args: argparse.Namespace, doc: Any, render: Callable[[Any], str]) -> int:
    if args.json:
        print(output.to_json(doc))
    else:
        print(render(doc))
    return 0


def _done(args: argparse.Namespace, message: str) -> int:
    """For 204 responses: a confirmation line in human mode, nothing with --json."""
    if not args.json:
        print(message)
    return 0


# ----------------------------------------------------------------------------- commands


def _room_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The room settings given on the command line, as the API names them."""
    body: dict[str, Any] = {}
    for flag in ("max_participants", "empty_timeout", "metadata", "lobby", "allow", "e2ee"):
        if getattr(args, flag, None) is not None:
            body[flag] = getattr(args, flag)
    if getattr(args, "password", None) is not None:
        from_stdin = args.password == "-"  # noqa: S105 - the flag's value that means "read it"
        body["password"] = sys.stdin.readline().rstrip("\r\n") if from_stdin else args.password
    if getattr(args, "no_password", False):
        body["password"] = ""
    return body


def cmd_room_create(args: argparse.Namespace) -> int:
    doc = _client(args).request("POST", ["rooms"], {"name": args.name, **_room_fields(args)})
    return _emit(args, doc, output.room_details)


def cmd_room_update(args: argparse.Namespace) -> int:
    body = _room_fields(args)
    if not body:
        raise UsageError("room update: give at least one setting to change (see: confctl room update --help)")
    doc = _client(args).request("PATCH", ["rooms", args.name], body)
    return _emit(args, doc, output.room_details)


def cmd_room_list(args: argparse.Namespace) -> int:
    return _emit(args, _client(args).request("GET", ["rooms"]), output.room_table)


def cmd_room_show(args: argparse.Namespace) -> int:
    return _emit(args, _client(args).request("GET", ["rooms", args.name]), output.room_details)


def cmd_room_delete(args: argparse.Namespace) -> int:
    _client(args).request("DELETE", ["rooms", args.name])
    return _done(args, f"Deleted room {args.name}")


def _set_lock(args: argparse.Namespace, locked: bool) -> int:
    doc = _client(args).request("PATCH", ["rooms", args.name], {"locked": locked})
    word = "Locked" if locked else "Unlocked"
    return _emit(args, doc, lambda _doc: f"{word} room {args.name}")


def cmd_room_lock(args: argparse.Namespace) -> int:
    return _set_lock(args, True)


def cmd_room_unlock(args: argparse.Namespace) -> int:
    return _set_lock(args, False)


def _room_exists(client: AdminClient, room: str) -> bool:
    try:
        client.request("GET", ["rooms", room])
    except ApiError as exc:
        if exc.status == 404 and exc.code == "room_not_found":
            return False
        raise
    return True


def cmd_token_create(args: argparse.Namespace) -> int:
    client = _client(args)
    exists = _room_exists(client, args.room)
    body: dict[str, Any] = {"room": args.room, "identity": args.identity}
    if args.name is not None:
        body["name"] = args.name
    if args.role is not None:
        body["role"] = args.role
    if args.ttl is not None:
        body["ttl"] = args.ttl
    if args.permissions:
        body["permissions"] = args.permissions
    doc = client.request("POST", ["tokens"], body)
    if not exists:
        print(
            f"confctl: warning: room {args.room} does not exist: the link works only if the server "
            "creates rooms at their first join (rooms.auto_create, on in dev mode); "
            f"create it first with: confctl room create {args.room}",
            file=sys.stderr,
        )
    return _emit(args, doc, output.token_details)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    doc = _client(args).request("POST", ["tokens", args.jti, "revoke"])
    return _emit(args, doc, output.revoke_details)


def cmd_participant_list(args: argparse.Namespace) -> int:
    doc = _client(args).request("GET", ["rooms", args.room, "participants"])
    return _emit(args, doc, output.participant_table)


def cmd_participant_show(args: argparse.Namespace) -> int:
    doc = _client(args).request("GET", ["rooms", args.room, "participants", args.identity])
    return _emit(args, doc, output.participant_details)


def cmd_participant_kick(args: argparse.Namespace) -> int:
    _client(args).request("DELETE", ["rooms", args.room, "participants", args.identity])
    return _done(args, f"Removed {output.clean(args.identity)} from room {args.room}")


def cmd_participant_admit(args: argparse.Namespace) -> int:
    _client(args).request("POST", ["rooms", args.room, "lobby", args.identity, "admit"])
    return _done(args, f"Admitted {output.clean(args.identity)} into {args.room}")


def cmd_participant_deny(args: argparse.Namespace) -> int:
    _client(args).request("POST", ["rooms", args.room, "lobby", args.identity, "deny"])
    return _done(args, f"Turned away {output.clean(args.identity)} from {args.room}")


def cmd_participant_mute(args: argparse.Namespace) -> int:
    segments = ["rooms", args.room, "participants", args.identity, "mute"]
    doc = _client(args).request("POST", segments, {"kind": args.kind, "muted": True})
    who = output.clean(args.identity)
    return _emit(args, doc, lambda _doc: f"Muted {args.kind} of {who} in room {args.room}")


def cmd_api_key_create(args: argparse.Namespace) -> int:
    doc = _client(args).request("POST", ["keys"], {"name": args.name, "scopes": args.scopes})
    return _emit(args, doc, output.api_key_created)


def cmd_api_key_list(args: argparse.Namespace) -> int:
    return _emit(args, _client(args).request("GET", ["keys"]), output.api_key_table)


def cmd_api_key_revoke(args: argparse.Namespace) -> int:
    doc = _client(args).request("DELETE", ["keys", args.key_id])
    return _emit(args, doc, lambda _doc: f"Revoked API key {output.clean(args.key_id)}")


def cmd_keys_generate(args: argparse.Namespace) -> int:
    key = keys.generate(args.alg, args.kid, args.out)
    if args.json:
        doc = {
            "kid": key.kid,
            "alg": key.alg,
            "private_key_file": str(key.private_key_file),
            "public_key_file": str(key.public_key_file),
        }
        print(output.to_json(doc))
        return 0
    print(f"Private key: {output.clean(key.private_key_file)}  (keep secret, mode 0600)")
    print(f"Public key:  {output.clean(key.public_key_file)}")
    print()
    print("Add to the confserver configuration to trust this key:")
    print()
    print(key.toml_snippet(), end="")
    return 0


REFUSED_VALUE_CODES = frozenset({"invalid_field", "invalid_room_name"})
"""API error codes that mean "this argument's value is wrong": reported as a usage error (exit 2,
the same line as argparse's), whether confctl or the server caught the mistake."""


def refused_value(parser: argparse.ArgumentParser, args: argparse.Namespace, message: str) -> str:
    """The server's message about a body field, told in terms of the command's argument:
    ``max_participants must be ...`` becomes ``argument --max-participants: must be ..., got 101``."""
    for action in parser._actions:  # argparse offers no public list of a parser's arguments
        field = action.dest
        for sep in (" ", ": "):
            if not message.startswith(field + sep):
                continue
            name = "/".join(action.option_strings) or action.metavar or field
            value = getattr(args, field, None)
            got = f", got {value}" if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
            return f"argument {name}: {message[len(field) + len(sep) :]}{got}"
    return message


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="confctl",
        description="Admin client for the confserver admin API (/api/v1).",
        epilog="Exit codes: 0 ok, 1 API error, 2 usage or local error, 3 server unreachable.",
    )
    parser.add_argument("--url", help="server base URL, e.g. https://conf.example.com (env CONF_URL)")
    parser.add_argument("--api-key", metavar="KEY", help="admin API key (env CONF_API_KEY)")
    parser.add_argument("--api-secret", metavar="SECRET", help="admin API secret (env CONF_API_SECRET)")
    parser.add_argument("--cacert", metavar="FILE", help="extra trusted CA certificate (env CONF_CACERT)")
    parser.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="print JSON instead of text: the API's response, or the result of keys generate and load-test",
    )
    parser.add_argument("--version", action="version", version=f"confctl {__version__}")
    groups = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def json_flag(p: argparse.ArgumentParser, help_text: str) -> None:
        # SUPPRESS: a subcommand's --json must not reset a --json given before the command.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help_text)

    def group(name: str, help_text: str, json_help: str) -> Any:
        p: argparse.ArgumentParser = groups.add_parser(name, help=help_text, description=help_text)
        json_flag(p, json_help)
        return p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(
        sub: Any, name: str, handler: Handler, help_text: str, json_help: str = API_JSON_HELP
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        json_flag(p, json_help)
        p.set_defaults(handler=handler, command_parser=p)
        return p

    rooms = group("room", "manage rooms", f"{API_JSON_HELP} (room delete: nothing)")
    for name, handler, help_text in (
        ("create", cmd_room_create, "create a room"),
        ("update", cmd_room_update, "change a room's settings"),
    ):
        p = command(rooms, name, handler, help_text)
        p.add_argument("name", metavar="NAME", type=room_name)
        p.add_argument("--max-participants", metavar="N", type=positive_int)
        p.add_argument("--empty-timeout", metavar="S", type=empty_timeout,
                       help="close the room after it is empty this long (0 = never; 300, 5m, 1h)")
        p.add_argument("--metadata", metavar="JSON", type=json_object, help="JSON object")
        p.add_argument("--lobby", action=argparse.BooleanOptionalAction, default=None,
                       help="newcomers wait until a moderator admits them (--no-lobby: off)")
        p.add_argument("--password", metavar="TEXT", type=non_empty,
                       help="the room password (kept as a hash); - reads it from standard input")
        if name == "update":
            p.add_argument("--no-password", action="store_true", help="remove the room password")
        p.add_argument("--allow", metavar="JSON", type=json_object,
                       help='who may join by single sign-on, e.g. {"domains": ["kominfo.go.id"]}')
        p.add_argument("--e2ee", action=argparse.BooleanOptionalAction, default=None,
                       help="media encrypted end to end in the browsers (update: only while empty)")
    command(rooms, "list", cmd_room_list, "list rooms")
    for name, handler, help_text, json_help in (
        ("show", cmd_room_show, "show one room", API_JSON_HELP),
        ("delete", cmd_room_delete, "delete a room (participants are disconnected)", NO_BODY_JSON_HELP),
        ("lock", cmd_room_lock, "lock a room: no new participants may join", API_JSON_HELP),
        ("unlock", cmd_room_unlock, "unlock a room", API_JSON_HELP),
    ):
        p = command(rooms, name, handler, help_text, json_help)
        p.add_argument("name", metavar="NAME", type=room_name)

    tokens = group("token", "mint and revoke join tokens", API_JSON_HELP)
    p = command(tokens, "create", cmd_token_create, "mint a join token and link")
    p.add_argument("--room", required=True, type=room_name)
    p.add_argument("--identity", required=True, type=non_empty)
    p.add_argument("--name", help="display name")
    p.add_argument("--role", choices=ROLES, help="default: participant")
    p.add_argument("--ttl", type=ttl, help="lifetime: 90, 90s, 15m, 2h, 1d (default: 2h)")
    p.add_argument(
        "--permission",
        dest="permissions",
        action="append",
        metavar="PERM",
        help="grant a permission (repeatable)",
    )
    p = command(tokens, "revoke", cmd_token_revoke, "revoke a token by its jti")
    p.add_argument("jti", metavar="JTI", type=non_empty)

    parts = group(
        "participant", "inspect and moderate participants", f"{API_JSON_HELP} (participant kick: nothing)"
    )
    command(parts, "list", cmd_participant_list, "list participants of a room").add_argument(
        "room", metavar="ROOM", type=room_name
    )
    for name, handler, help_text, json_help in (
        ("show", cmd_participant_show, "show one participant", API_JSON_HELP),
        ("kick", cmd_participant_kick, "remove a participant from a room", NO_BODY_JSON_HELP),
        ("mute", cmd_participant_mute, "mute a participant's audio or video", API_JSON_HELP),
        ("admit", cmd_participant_admit, "let someone in from the room's lobby", NO_BODY_JSON_HELP),
        ("deny", cmd_participant_deny, "turn away someone waiting in the lobby", NO_BODY_JSON_HELP),
    ):
        p = command(parts, name, handler, help_text, json_help)
        p.add_argument("room", metavar="ROOM", type=room_name)
        p.add_argument("identity", metavar="IDENTITY", type=non_empty)
        if name == "mute":
            p.add_argument("--kind", choices=("audio", "video"), default="audio")

    api_keys = group("api-key", "manage named admin API keys and their scopes", API_JSON_HELP)
    p = command(api_keys, "create", cmd_api_key_create, "create a named API key (its secret is shown once)")
    p.add_argument("name", metavar="NAME", type=non_empty, help="who holds the key: a person or a system")
    p.add_argument(
        "--scopes",
        required=True,
        metavar="SCOPES",
        type=scope_list,
        help="comma-separated, e.g. rooms:read,rooms:write,tokens:create",
    )
    command(api_keys, "list", cmd_api_key_list, "list API keys (never their secrets)")
    p = command(api_keys, "revoke", cmd_api_key_revoke, "revoke an API key: its tokens stop working at once")
    p.add_argument("key_id", metavar="KEY_ID", type=non_empty)

    audit.register(
        group("audit", "search, export and verify the tamper-evident audit log", API_JSON_HELP),
        command,
        _client,
    )

    nodes.register(
        group("node", "list the nodes of a deployment and drain one", API_JSON_HELP), command, _client
    )

    keys_json_help = "print the key's kid, alg and file paths as JSON instead of text"
    key_cmds = group("keys", "local key management (no server needed)", keys_json_help)
    p = command(key_cmds, "generate", cmd_keys_generate, "generate a signing key pair", keys_json_help)
    p.add_argument("--alg", choices=keys.ALGORITHMS, default="EdDSA")
    p.add_argument("--kid", help="key id (default: k- plus 8 random hex digits)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: current directory)")

    loadtest_cli.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help/--version (0) or a one-line usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except ApiError as exc:
        command_parser: argparse.ArgumentParser | None = getattr(args, "command_parser", None)
        if command_parser is None or exc.status != 400 or exc.code not in REFUSED_VALUE_CODES:
            print(f"confctl: {exc}", file=sys.stderr)
            return exc.exit_code
        detail = output.clean(refused_value(command_parser, args, exc.message))
        print(f"{command_parser.prog}: error: {detail} (see: {command_parser.prog} --help)", file=sys.stderr)
        return UsageError.exit_code
    except ConfctlError as exc:
        print(f"confctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except output.ResponseShapeError as exc:
        print(f"confctl: {ApiError('invalid_response', f'unexpected response: {exc}')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("confctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output consumer went away (e.g. `| head`); exit quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
