"""Who may enter a room besides a token: the room password (kept as a scrypt hash only) and the
single sign-on policy ``allow`` (which signed-in people may join, and which of them moderate).
Pure functions; docs/SECURITY.md explains the model."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

MAX_PASSWORD_CHARS: Final = 128
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
"""scrypt's interactive-login parameters (16 MiB, about 50 ms here): a wrong guess costs the
guesser as much as the server, and five wrong ones a minute lead to ``rate_limited``."""

ALLOW_KEYS: Final = ("identities", "domains", "groups")
MAX_ALLOW_ENTRIES: Final = 1000
MAX_ALLOW_ENTRY_CHARS: Final = 256


# --- the room password ---------------------------------------------------------------------------


def check_password(value: object) -> str:
    """1-128 printable characters (spaces allowed, not only spaces). Raises ``ValueError``."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_PASSWORD_CHARS:
        raise ValueError(f"password must be 1-{MAX_PASSWORD_CHARS} characters")
    if not value.isprintable() or not value.strip():
        raise ValueError("password must be printable characters, not only spaces")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("password must be valid Unicode text") from None
    return value


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$SALT$HASH`` (base64url), with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def password_matches(stored: str, attempt: str) -> bool:
    """Whether ``attempt`` is the password hashed in ``stored`` (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        got = _scrypt(attempt, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(expected, got)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the single sign-on policy -----------------------------------------------------------------


def check_allow(value: object) -> dict[str, Any]:
    """``{"identities": [...], "domains": [...], "groups": [...], "moderators": {same three}}``,
    every key optional; returned normalised (domains lower-case without ``@``, each entry once,
    sorted). Raises ``ValueError``."""
    if not isinstance(value, Mapping):
        raise ValueError("allow must be an object with identities, domains, groups and moderators")
    unknown = sorted(set(value) - {*ALLOW_KEYS, "moderators"})
    if unknown:
        raise ValueError(
            f"allow has an unknown key {unknown[0]!r}; known: {', '.join((*ALLOW_KEYS, 'moderators'))}"
        )
    out = _lists(value, "allow")
    if "moderators" in value:
        moderators = value["moderators"]
        if not isinstance(moderators, Mapping) or set(moderators) - set(ALLOW_KEYS):
            raise ValueError(f"allow.moderators must be an object with {', '.join(ALLOW_KEYS)}")
        out["moderators"] = _lists(moderators, "allow.moderators")
    return out


def _lists(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ALLOW_KEYS:
        if key not in value:
            continue
        entries = value[key]
        if not isinstance(entries, list) or len(entries) > MAX_ALLOW_ENTRIES:
            raise ValueError(f"{where}.{key} must be a list of at most {MAX_ALLOW_ENTRIES} strings")
        clean = set()
        for entry in entries:
            if (
                not isinstance(entry, str)
                or not 1 <= len(entry) <= MAX_ALLOW_ENTRY_CHARS
                or not entry.isprintable()
                or entry != entry.strip()
            ):
                raise ValueError(
                    f"{where}.{key} entries must be 1-{MAX_ALLOW_ENTRY_CHARS} printable characters"
                )
            clean.add(entry.lower().lstrip("@") if key == "domains" else entry)
        out[key] = sorted(clean)
    return out


Decision = Literal["moderator", "participant"]


def decide(
    allow: Mapping[str, Any], *, identity: str, email: str = "", groups: Iterable[str] = ()
) -> Decision | None:
    """What a signed-in person may be in a room: ``moderator``, ``participant``, or ``None`` (not
    allowed). A moderator entry admits by itself. A domain matches the part of a verified e-mail
    address after its last ``@``; identities and groups match exactly."""
    groups = set(groups)
    domain = email.rsplit("@", 1)[1].lower() if "@" in email else ""

    def matches(policy: Mapping[str, Any]) -> bool:
        return (
            identity in policy.get("identities", ())
            or bool(domain and domain in policy.get("domains", ()))
            or bool(groups & set(policy.get("groups", ())))
        )

    if matches(allow.get("moderators", {})):
        return "moderator"
    if matches(allow):
        return "participant"
    return None


# --- wrong passwords ---------------------------------------------------------------------------


class FailureLimiter:
    """Counts failures per key in a sliding window: after ``limit`` in ``window`` seconds the key
    is refused until the oldest falls out. Bounded: at most ``max_keys`` keys are remembered."""

    def __init__(self, *, limit: int = 5, window: float = 60.0, max_keys: int = 100_000, clock: Any) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._failures: dict[object, list[float]] = {}

    def blocked(self, key: object) -> bool:
        now = self._clock()
        recent = [t for t in self._failures.get(key, ()) if now - t < self._window]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return len(recent) >= self._limit

    def failed(self, key: object) -> None:
        now = self._clock()
        if key not in self._failures and len(self._failures) >= self._max_keys:
            self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < self._window}
            while len(self._failures) >= self._max_keys:
                del self._failures[next(iter(self._failures))]
        self._failures.setdefault(key, []).append(now)
