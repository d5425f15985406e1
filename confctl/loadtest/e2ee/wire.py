"""The wire formats of the browser client's web/e2ee/ modules (docs/E2EE.md), byte for byte.

* SFrame (RFC 9605) with AES_128_GCM_SHA256_128: :func:`encode_header`, :func:`parse_header`,
  :class:`SFrameKey` (``encrypt`` / ``decrypt``).
* Encoded frames: :func:`clear_prefix` per codec, :func:`encrypt_frame`, :func:`decrypt_frame`.
* Identity keys (ECDH P-256), sealed key blobs (:func:`seal_key_blob`, :func:`open_key_blob`), the
  KID scheme (:func:`make_kid`, :func:`split_kid`), the ratchet (:func:`ratchet_secret`) and the
  safety code's digest (:func:`safety_digest`, :func:`safety_digits`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SUITE_AES_128_GCM_SHA256_128 = 0x0004
KEY_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
SECRET_LENGTH = 16
BLOB_VERSION = 1
BLOB_LENGTH = 1 + 12 + 8 + SECRET_LENGTH + 16
PUBLIC_KEY_LENGTH = 65
MAX_STEP = 255
MAX_EPOCH = 2**40
UINT64_MAX = 2**64 - 1

VP8_KEYFRAME_PREFIX = 10
VP8_DELTA_PREFIX = 3
OPUS_PREFIX = 1
H264_SLICE_HEADER_BYTES = 4

BLOB_LABEL = b"conf-e2ee key blob v1"
RATCHET_LABEL = b"conf-e2ee ratchet v1"
SAFETY_LABEL = b"conf-e2ee safety code v1"
START_CODE = b"\x00\x00\x00\x01"


class E2eeError(ValueError):
    """A value outside what the formats allow (bad length, out-of-range integer)."""


# ---- bytes -------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes | None:
    if not isinstance(text, str) or len(text) % 4 == 1:
        return None
    if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        return None
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hkdf_sha256(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


# ---- SFrame -------------------------------------------------------------------------------------


def _compact(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """The SFrame header for this KID and CTR, each in its shortest form."""
    if not (0 <= kid <= UINT64_MAX and 0 <= ctr <= UINT64_MAX):
        raise E2eeError("KID and CTR are 64-bit unsigned integers")
    config = 0
    tail = b""
    if kid < 8:
        config |= kid << 4
    else:
        kid_bytes = _compact(kid)
        config |= 0x80 | ((len(kid_bytes) - 1) << 4)
        tail += kid_bytes
    if ctr < 8:
        config |= ctr
    else:
        ctr_bytes = _compact(ctr)
        config |= 0x08 | (len(ctr_bytes) - 1)
        tail += ctr_bytes
    return bytes([config]) + tail


def parse_header(data: bytes) -> tuple[int, int, int] | None:
    """``(kid, ctr, header length)``, or None when short or not in the shortest form."""
    if not data:
        return None
    config = data[0]
    at = 1
    values: list[int] = []
    for extended, small in ((config & 0x80, (config >> 4) & 0x07), (config & 0x08, config & 0x07)):
        if not extended:
            values.append(small)
            continue
        length = small + 1
        if at + length > len(data):
            return None
        value = int.from_bytes(data[at : at + length], "big")
        if value < 8 or len(_compact(value)) != length:
            return None
        values.append(value)
        at += length
    return values[0], values[1], at


def derivation_labels(kid: int) -> tuple[bytes, bytes]:
    suffix = struct.pack(">QH", kid, SUITE_AES_128_GCM_SHA256_128)
    return b"SFrame 1.0 Secret key " + suffix, b"SFrame 1.0 Secret salt " + suffix


def derive_key_salt(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """``derive_key_salt`` of RFC 9605 section 4.4.2: ``(sframe_key, sframe_salt)``."""
    key_label, salt_label = derivation_labels(kid)
    return hkdf_sha256(base_key, key_label, KEY_LENGTH), hkdf_sha256(base_key, salt_label, NONCE_LENGTH)


@dataclass(frozen=True)
class SFrameKey:
    """The SFrame key context of one KID."""

    kid: int
    aead: AESGCM
    salt: bytes

    @classmethod
    def derive(cls, base_key: bytes, kid: int) -> SFrameKey:
        key, salt = derive_key_salt(base_key, kid)
        return cls(kid, AESGCM(key), salt)

    def nonce(self, ctr: int) -> bytes:
        return bytes(a ^ b for a, b in zip(self.salt, ctr.to_bytes(NONCE_LENGTH, "big"), strict=True))

    def encrypt(self, ctr: int, metadata: bytes, plaintext: bytes) -> bytes:
        header = encode_header(self.kid, ctr)
        return header + self.aead.encrypt(self.nonce(ctr), plaintext, header + metadata)

    def decrypt(self, metadata: bytes, sframe: bytes) -> bytes | None:
        parsed = parse_header(sframe)
        if parsed is None or parsed[0] != self.kid or len(sframe) - parsed[2] < TAG_LENGTH:
            return None
        header = sframe[: parsed[2]]
        try:
            return self.aead.decrypt(self.nonce(parsed[1]), sframe[parsed[2] :], header + metadata)
        except InvalidTag:
            return None


# ---- frames -------------------------------------------------------------------------------------


def _h264_prefix(data: bytes) -> tuple[int, bytes] | None:
    units: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        if start >= len(data):
            return None
        if 1 <= data[start] & 0x1F <= 5:
            end = start + 1 + H264_SLICE_HEADER_BYTES
            if end > len(data):
                return None
            units.append(data[start:end])
            return end, b"".join(START_CODE + unit for unit in units)
        following = data.find(b"\x00\x00\x01", start)
        if following < 0:
            return None
        units.append(data[start:following].rstrip(b"\x00"))
        i = following
    return None


def clear_prefix(codec: str, data: bytes) -> tuple[int, bytes] | str:
    """``(length, metadata)`` of the clear prefix, or "unsupported_codec" / "bad_frame"."""
    if codec == "vp8":
        if not data:
            return "bad_frame"
        length = VP8_KEYFRAME_PREFIX if data[0] & 0x01 == 0 else VP8_DELTA_PREFIX
        return (length, data[:length]) if len(data) >= length else "bad_frame"
    if codec == "opus":
        return (OPUS_PREFIX, data[:OPUS_PREFIX]) if data else "bad_frame"
    if codec == "h264":
        return _h264_prefix(data) or "bad_frame"
    return "unsupported_codec"


def _trailing_zeros(data: bytes) -> int:
    return min(2, len(data) - len(data.rstrip(b"\x00")))


def escape_emulation(data: bytes, zeros_before: int = 0) -> bytes:
    out = bytearray()
    zeros = zeros_before
    for byte in data:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    if zeros >= 2:
        out.append(3)
    return bytes(out)


def unescape_emulation(data: bytes, zeros_before: int = 0) -> bytes:
    out = bytearray()
    zeros = zeros_before
    for i, byte in enumerate(data):
        if byte == 3 and zeros >= 2 and (i + 1 == len(data) or data[i + 1] <= 3):
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def encrypt_frame(codec: str, data: bytes, key: SFrameKey, ctr: int) -> bytes | str:
    """``clear prefix ‖ SFrame``, or the reason ("unsupported_codec" / "bad_frame") to drop it."""
    prefix = clear_prefix(codec, data)
    if isinstance(prefix, str):
        return prefix
    length, metadata = prefix
    sealed = key.encrypt(ctr, metadata, data[length:])
    if codec == "h264":
        sealed = escape_emulation(sealed, _trailing_zeros(data[:length]))
    return data[:length] + sealed


@dataclass(frozen=True)
class ReadFrame:
    """An encrypted frame's parts, before a key is chosen."""

    prefix: bytes
    metadata: bytes
    kid: int
    sframe: bytes

    def open(self, key: SFrameKey) -> bytes | None:
        plain = key.decrypt(self.metadata, self.sframe)
        return None if plain is None else self.prefix + plain


def read_encrypted_frame(codec: str, data: bytes) -> ReadFrame | str:
    prefix = clear_prefix(codec, data)
    if isinstance(prefix, str):
        return prefix
    length, metadata = prefix
    sframe = data[length:]
    if codec == "h264":
        sframe = unescape_emulation(sframe, _trailing_zeros(data[:length]))
    parsed = parse_header(sframe)
    if parsed is None:
        return "bad_frame"
    return ReadFrame(data[:length], metadata, parsed[0], sframe)


def decrypt_frame(codec: str, data: bytes, find_key: Callable[[int], SFrameKey | None]) -> tuple[str, bytes]:
    """``("ok", frame)`` or ``("missing_key" | "bad_frame" | "unsupported_codec", b"")``."""
    read = read_encrypted_frame(codec, data)
    if isinstance(read, str):
        return read, b""
    key = find_key(read.kid)
    if key is None:
        return "missing_key", b""
    plain = read.open(key)
    return ("ok", plain) if plain is not None else ("bad_frame", b"")


# ---- keys ---------------------------------------------------------------------------------------


def make_kid(epoch: int, step: int) -> int:
    if not (0 <= epoch < MAX_EPOCH and 0 <= step <= MAX_STEP):
        raise E2eeError("epoch or step out of range")
    return epoch * 256 + step


def split_kid(kid: int) -> tuple[int, int] | None:
    """``(epoch, step)``, or None beyond this scheme's range."""
    if not 0 <= kid < MAX_EPOCH * 256:
        return None
    return kid >> 8, kid & 0xFF


def ratchet_secret(secret: bytes) -> bytes:
    return hkdf_sha256(secret, RATCHET_LABEL, SECRET_LENGTH)


@dataclass(frozen=True)
class Party:
    """One side of a key blob: session id, identity and raw public key."""

    sid: str
    identity: str
    public_key: bytes

    def encoded(self) -> bytes:
        parts = (self.sid.encode(), self.identity.encode(), self.public_key)
        return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def pair_info(sender: Party, recipient: Party) -> bytes:
    return BLOB_LABEL + sender.encoded() + recipient.encoded()


def import_public_key(text: str) -> ec.EllipticCurvePublicKey | None:
    raw = from_b64url(text)
    if raw is None or len(raw) != PUBLIC_KEY_LENGTH or raw[0] != 0x04:
        return None
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return None


class Identity:
    """An ECDH P-256 identity key pair; the public key as the browser announces it."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._private = private_key or ec.generate_private_key(ec.SECP256R1())
        self.public_raw = self._private.public_key().public_bytes(
            encoding=serialization.Encoding.X962, format=serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = b64url(self.public_raw)

    @classmethod
    def from_private_value(cls, value: int) -> Identity:
        """A fixed identity, for test vectors."""
        return cls(ec.derive_private_key(value, ec.SECP256R1()))

    def pair_key(self, peer: ec.EllipticCurvePublicKey, sender: Party, recipient: Party) -> AESGCM:
        """The AES-GCM key for blobs from ``sender`` to ``recipient`` (one of them is this side)."""
        shared = self._private.exchange(ec.ECDH(), peer)
        return AESGCM(hkdf_sha256(shared, pair_info(sender, recipient), 16))

    def pair_keys(self, peer: ec.EllipticCurvePublicKey, me: Party, them: Party) -> tuple[AESGCM, AESGCM]:
        """Both directions with one ECDH: ``(send key, receive key)``."""
        shared = self._private.exchange(ec.ECDH(), peer)
        return (
            AESGCM(hkdf_sha256(shared, pair_info(me, them), 16)),
            AESGCM(hkdf_sha256(shared, pair_info(them, me), 16)),
        )


def seal_key_blob(pair_key: AESGCM, kid: int, secret: bytes, nonce: bytes | None = None) -> str:
    if len(secret) != SECRET_LENGTH:
        raise E2eeError("bad secret length")
    iv = nonce if nonce is not None else os.urandom(12)
    version = bytes([BLOB_VERSION])
    return b64url(version + iv + pair_key.encrypt(iv, struct.pack(">Q", kid) + secret, version))


def open_key_blob(pair_key: AESGCM, text: str) -> tuple[int, bytes] | None:
    """``(kid, secret)``, or None (malformed, wrong pair, tampered, KID out of range)."""
    blob = from_b64url(text)
    if blob is None or len(blob) != BLOB_LENGTH or blob[0] != BLOB_VERSION:
        return None
    try:
        plain = pair_key.decrypt(blob[1:13], blob[13:], blob[:1])
    except InvalidTag:
        return None
    kid = struct.unpack(">Q", plain[:8])[0]
    return (kid, plain[8:]) if split_kid(kid) is not None else None


def safety_digest(entries: Iterable[tuple[str, str]]) -> bytes:
    """SHA-256 over the distinct (identity, base64url public key) entries, sorted (safety.js)."""
    encoded: set[bytes] = set()
    for identity, key in entries:
        raw = from_b64url(key)
        name = identity.encode()
        if raw is not None:
            encoded.add(struct.pack(">H", len(name)) + name + struct.pack(">H", len(raw)) + raw)
    return hashlib.sha256(SAFETY_LABEL + b"".join(sorted(encoded))).digest()


def safety_digits(digest: bytes) -> list[str]:
    return [f"{int.from_bytes(digest[g * 5 : g * 5 + 5], 'big') % 100000:05d}" for g in range(5)]
