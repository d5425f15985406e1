"""The load tool's E2EE mirror (confctl.loadtest.e2ee): RFC 9605 vectors, frames, key blobs, the key
schedule, and the fixed vectors in tests/web/e2ee_vectors.json that the browser modules' tests
check too, so that both sides make and accept the same bytes.

Regenerate the vector file after a deliberate format change with
``E2EE_WRITE_VECTORS=1 python -m pytest tests/loadtest/test_e2ee.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from confctl.loadtest.e2ee import (
    BLOB_LENGTH,
    E2eeParticipant,
    Identity,
    Party,
    SFrameKey,
    clear_prefix,
    decrypt_frame,
    derivation_labels,
    derive_key_salt,
    encode_header,
    encrypt_frame,
    escape_emulation,
    from_b64url,
    import_public_key,
    make_kid,
    open_key_blob,
    parse_header,
    ratchet_secret,
    safety_digest,
    safety_digits,
    seal_key_blob,
    split_kid,
    unescape_emulation,
)

ROOT = Path(__file__).resolve().parent.parent.parent
VECTORS = ROOT / "tests" / "web" / "e2ee_vectors.json"

# RFC 9605 Appendix C.3, cipher suite 0x0004
RFC_KID, RFC_CTR = 0x123, 0x4567
RFC_BASE_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
RFC_METADATA = bytes.fromhex("4945544620534672616d65205747")
RFC_PT = bytes.fromhex("64726166742d696574662d736672616d652d656e63")
RFC_CT = "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb"

FILLER = bytes((i * 31 + 7) & 0xFF for i in range(200))
FRAMES = {
    "vp8-key": ("vp8", bytes.fromhex("5042009d012a8002e001") + FILLER),
    "vp8-delta": ("vp8", bytes.fromhex("310500") + FILLER[:90]),
    "opus": ("opus", bytes([0x78]) + FILLER[:60]),
    "h264-idr": (
        "h264",
        bytes.fromhex("000000016742c01fda014016e806d0a13500000168ce06e20000016588840033ff00000301000000")
        + FILLER,
    ),
    "h264-delta": ("h264", bytes.fromhex("00000001419a020405") + FILLER[:100]),
}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rfc9605_header_vectors() -> None:
    for kid, ctr, encoded in [
        (0, 0, "00"),
        (0, 255, "08ff"),
        (0, 65536, "0a010000"),
        (0, 2**64 - 1, "0fffffffffffffffff"),
        (255, 0, "80ff"),
        (256, 256, "9901000100"),
        (4294967295, 4294967296, "bcffffffff0100000000"),
        (2**64 - 1, 2**64 - 1, "ffffffffffffffffffffffffffffffffff"),
    ]:
        assert encode_header(kid, ctr).hex() == encoded
        assert parse_header(bytes.fromhex(encoded)) == (kid, ctr, len(encoded) // 2)
    assert parse_header(bytes.fromhex("0805")) is None
    assert parse_header(bytes.fromhex("0901")) is None


def test_rfc9605_aes_gcm_vector() -> None:
    key_label, salt_label = derivation_labels(RFC_KID)
    assert key_label.hex() == "534672616d6520312e3020536563726574206b65792000000000000001230004"
    assert salt_label.hex() == "534672616d6520312e30205365637265742073616c742000000000000001230004"
    key, salt = derive_key_salt(RFC_BASE_KEY, RFC_KID)
    assert key.hex() == "d34f547f4ca4f9a7447006fe7fcbf768"
    assert salt.hex() == "75234edefe07819026751816"
    context = SFrameKey.derive(RFC_BASE_KEY, RFC_KID)
    assert context.nonce(RFC_CTR).hex() == "75234edefe07819026755d71"
    assert context.encrypt(RFC_CTR, RFC_METADATA, RFC_PT).hex() == RFC_CT
    assert context.decrypt(RFC_METADATA, bytes.fromhex(RFC_CT)) == RFC_PT
    assert context.decrypt(b"other", bytes.fromhex(RFC_CT)) is None


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_frame_round_trip_and_tampering(name: str) -> None:
    codec, frame = FRAMES[name]
    key = SFrameKey.derive(RFC_BASE_KEY, 0x1234)
    sealed = encrypt_frame(codec, frame, key, 3)
    assert isinstance(sealed, bytes)
    prefix = clear_prefix(codec, frame)
    assert isinstance(prefix, tuple)
    assert sealed[: prefix[0]] == frame[: prefix[0]]
    assert decrypt_frame(codec, sealed, lambda kid: key if kid == 0x1234 else None) == ("ok", frame)
    assert decrypt_frame(codec, sealed, lambda kid: None)[0] == "missing_key"
    bad = bytearray(sealed)
    bad[-1] ^= 1
    assert decrypt_frame(codec, bytes(bad), lambda kid: key)[0] == "bad_frame"


def test_frame_refusals_and_escaping() -> None:
    key = SFrameKey.derive(RFC_BASE_KEY, 1)
    assert encrypt_frame("vp9", FILLER, key, 0) == "unsupported_codec"
    assert encrypt_frame("vp8", bytes([0x50, 1, 2]), key, 0) == "bad_frame"
    assert encrypt_frame("h264", FILLER, key, 0) == "bad_frame"
    for raw in [b"\x00\x00\x01", b"\x00\x00", b"\x00\x00\x03\x01", bytes(range(4)) * 30]:
        escaped = escape_emulation(raw)
        assert b"\x00\x00\x01" not in escaped and b"\x00\x00\x00" not in escaped
        assert unescape_emulation(escaped) == raw


def test_key_blob_binds_both_parties() -> None:
    a, b, c = Identity(), Identity(), Identity()
    pa, pb = Party("A", "ana", a.public_raw), Party("B", "ben", b.public_raw)
    b_pub, a_pub = import_public_key(b.public_key), import_public_key(a.public_key)
    assert b_pub is not None and a_pub is not None
    secret = os.urandom(16)
    blob = seal_key_blob(a.pair_key(b_pub, pa, pb), make_kid(5, 2), secret)
    assert len(from_b64url(blob) or b"") == BLOB_LENGTH
    assert open_key_blob(b.pair_key(a_pub, pa, pb), blob) == (make_kid(5, 2), secret)
    assert open_key_blob(c.pair_key(a_pub, pa, pb), blob) is None
    assert open_key_blob(b.pair_key(a_pub, pb, pa), blob) is None
    assert open_key_blob(b.pair_key(a_pub, Party("A", "eve", a.public_raw), pb), blob) is None
    assert import_public_key("AAAA") is None
    assert split_kid(make_kid(7, 255)) == (7, 255)


def _room(n: int, clock: Clock) -> dict[str, E2eeParticipant]:
    people = {f"S{i}": E2eeParticipant(f"S{i}", f"user-{i}", clock=clock) for i in range(n)}
    listing = [{"sid": p.sid, "identity": p.identity, "key": p.public_key} for p in people.values()]
    outbox = [(p.sid, m) for p in people.values() for m in p.on_participants(listing)]
    _deliver(people, outbox)
    return people


def _deliver(people: dict[str, E2eeParticipant], outbox: list[tuple[str, dict[str, object]]]) -> int:
    blobs = 0
    while outbox:
        sender, message = outbox.pop(0)
        keys = message["keys"]
        assert isinstance(keys, list)
        for entry in keys:
            blobs += 1
            if entry["to"] in people:
                assert people[entry["to"]].on_key_message(sender, entry["data"])
    return blobs


def _advance(people: dict[str, E2eeParticipant], clock: Clock, seconds: float) -> int:
    blobs = 0
    end = clock.t + seconds
    while clock.t < end:
        clock.t = min(end, clock.t + 0.05)
        blobs += _deliver(people, [(p.sid, m) for p in people.values() for m in p.tick()])
    return blobs


def test_participants_join_ratchet_and_leave_rotation() -> None:
    clock = Clock()
    people = _room(3, clock)
    _advance(people, clock, 1)
    frame = FRAMES["opus"][1]
    before = people["S0"].encrypt("opus", frame)
    assert before is not None
    assert people["S1"].decrypt("S0", "opus", before) == ("ok", frame)
    newcomer = E2eeParticipant("S3", "user-3", clock=clock)
    people["S3"] = newcomer
    listing = [{"sid": p.sid, "identity": p.identity, "key": p.public_key} for p in people.values()]
    _deliver(people, [(p.sid, m) for p in people.values() for m in p.on_participants(listing)])
    _advance(people, clock, 1)
    assert newcomer.decrypt("S0", "opus", before)[0] == "missing_key"
    after = people["S0"].encrypt("opus", frame)
    assert after is not None
    assert newcomer.decrypt("S0", "opus", after) == ("ok", frame)
    assert people["S1"].decrypt("S0", "opus", after) == ("ok", frame), "ratchet on demand"
    gone = people.pop("S2")
    for p in people.values():
        p.on_leave("S2")
    blobs = _advance(people, clock, 3)
    assert blobs == 3 * 2
    latest = people["S0"].encrypt("opus", frame)
    assert latest is not None
    assert gone.decrypt("S0", "opus", latest)[0] == "missing_key"
    assert people["S1"].decrypt("S0", "opus", latest) == ("ok", frame)


def test_ten_leaves_in_a_second_make_one_rotation() -> None:
    clock = Clock()
    people = _room(14, clock)
    _advance(people, clock, 2)
    for i in range(4, 14):
        people.pop(f"S{i}")
        for p in people.values():
            p.on_leave(f"S{i}")
        _advance(people, clock, 0.1)
    _advance(people, clock, 3)
    assert all(p.rotations == 1 for p in people.values())
    _advance(people, clock, 5)
    assert all(p.stats()["senders"] == 3 and p.stats()["keys"] <= 3 * 4 for p in people.values())


def _fixed_identity(n: int) -> Identity:
    return Identity.from_private_value(int.from_bytes(bytes([n]) * 32, "big") % (2**255))


def _jwk(identity: Identity, value: int) -> dict[str, str]:
    from confctl.loadtest.e2ee import b64url

    return {
        "kty": "EC",
        "crv": "P-256",
        "d": b64url(value.to_bytes(32, "big")),
        "x": b64url(identity.public_raw[1:33]),
        "y": b64url(identity.public_raw[33:]),
    }


def build_vectors() -> dict[str, object]:
    """Fixed inputs → the bytes both implementations must produce."""
    base_key = bytes.fromhex("00112233445566778899aabbccddeeff")
    kid = make_kid(0x123456, 3)
    frames = []
    for name, (codec, frame) in sorted(FRAMES.items()):
        sealed = encrypt_frame(codec, frame, SFrameKey.derive(base_key, kid), 77)
        assert isinstance(sealed, bytes)
        frames.append(
            {"name": name, "codec": codec, "ctr": 77, "frame": frame.hex(), "encrypted": sealed.hex()}
        )
    values = [int.from_bytes(bytes([n]) * 32, "big") % (2**255) for n in (0x11, 0x22)]
    sender, recipient = (Identity.from_private_value(v) for v in values)
    ps, pr = (
        Party("PA_sender", "ana@example.org", sender.public_raw),
        Party("PA_recip", "Bén", recipient.public_raw),
    )
    r_pub = import_public_key(recipient.public_key)
    assert r_pub is not None
    secret = bytes(range(16))
    nonce = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
    blob = seal_key_blob(sender.pair_key(r_pub, ps, pr), kid, secret, nonce)
    ratchet = [secret]
    for _ in range(3):
        ratchet.append(ratchet_secret(ratchet[-1]))
    entries = [
        (ps.identity, sender.public_key),
        (pr.identity, recipient.public_key),
        ("carol", sender.public_key),
    ]
    digest = safety_digest(entries)
    return {
        "frames": {"base_key": base_key.hex(), "kid": kid, "cases": frames},
        "blob": {
            "sender": {
                "sid": ps.sid,
                "identity": ps.identity,
                "jwk": _jwk(sender, values[0]),
                "key": sender.public_key,
            },
            "recipient": {
                "sid": pr.sid,
                "identity": pr.identity,
                "jwk": _jwk(recipient, values[1]),
                "key": recipient.public_key,
            },
            "kid": kid,
            "secret": secret.hex(),
            "nonce": nonce.hex(),
            "blob": blob,
        },
        "ratchet": [s.hex() for s in ratchet],
        "safety": {
            "entries": [{"identity": i, "key": k} for i, k in entries],
            "digest": digest.hex(),
            "digits": safety_digits(digest),
        },
    }


def test_vector_file_matches_what_python_makes() -> None:
    vectors = build_vectors()
    if os.environ.get("E2EE_WRITE_VECTORS") == "1":
        VECTORS.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
    assert json.loads(VECTORS.read_text()) == vectors


def test_python_opens_what_the_vector_file_holds() -> None:
    vectors = json.loads(VECTORS.read_text())
    frames = vectors["frames"]
    key = SFrameKey.derive(bytes.fromhex(frames["base_key"]), frames["kid"])
    for case in frames["cases"]:
        opened = decrypt_frame(case["codec"], bytes.fromhex(case["encrypted"]), lambda kid: key)
        assert opened == ("ok", bytes.fromhex(case["frame"]))


def test_browser_modules_agree_with_the_vector_file() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    done = subprocess.run(
        [node, "--test", "tests/web/e2ee_vectors.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
