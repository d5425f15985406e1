"""``confctl keys generate``: create an asymmetric signing key pair locally."""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from confctl.client import UsageError

ALGORITHMS = ("EdDSA", "ES256")
KID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class GeneratedKey:
    kid: str
    alg: str
    private_key_file: Path
    public_key_file: Path

    def toml_snippet(self) -> str:
        # json.dumps yields a valid TOML basic string (same escapes).
        return (
            "[[auth.keys]]\n"
            f"kid = {json.dumps(self.kid)}\n"
            f"alg = {json.dumps(self.alg)}\n"
            f"public_key_file = {json.dumps(str(self.public_key_file))}\n"
        )


def default_kid() -> str:
    return "k-" + secrets.token_hex(4)


def validate_kid(kid: str) -> str:
    if not KID_RE.fullmatch(kid):
        raise UsageError(f"invalid key id {kid!r}: use 1-64 of A-Z a-z 0-9 . _ - (not starting with '.')")
    return kid


def _key_pems(alg: str) -> tuple[bytes, bytes]:
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise UsageError(f"unsupported algorithm {alg!r}: choose one of {', '.join(ALGORITHMS)}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create *path* exclusively with *mode*; never follows or replaces an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def generate(alg: str, kid: str | None, out_dir: str | None) -> GeneratedKey:
    key_id = validate_kid(kid if kid is not None else default_kid())
    directory = Path(out_dir or ".").expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create directory {directory}: {exc.strerror or exc}") from None
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    directory = directory.resolve()
    private_path = directory / f"{key_id}.key"
    public_path = directory / f"{key_id}.pub"
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise UsageError(f"refusing to overwrite existing file {path}")
    private_pem, public_pem = _key_pems(alg)
    try:
        _write_new(private_path, private_pem, 0o600)
    except FileExistsError:
        raise UsageError(f"refusing to overwrite existing file {private_path}") from None
    except OSError as exc:
        raise UsageError(f"cannot write {private_path}: {exc.strerror or exc}") from None
    try:
        _write_new(public_path, public_pem, 0o644)
    except OSError as exc:
        private_path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise UsageError(f"refusing to overwrite existing file {public_path}") from None
        raise UsageError(f"cannot write {public_path}: {exc.strerror or exc}") from None
    return GeneratedKey(key_id, alg, private_path, public_path)
