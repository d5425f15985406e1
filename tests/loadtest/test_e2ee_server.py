"""End-to-end encryption against a real server: the load tool's E2EE participants exchange keys
through confserver's signaling and send ciphertext through its SFU.

- A subscriber that takes no part in the key exchange receives the publisher's packets but never
  sees its picture, while an E2EE subscriber in the same room decrypts and decodes it.
- A participant removed through the admin API keeps its key state, yet cannot open what is sent
  after the others rotated, though it could before.
- Key blobs reach their one recipient only, and carry no media key in the clear.
- In a room of 100, one leave: everyone holds the new keys within a loose bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import pytest
from aiohttp.test_utils import TestClient

from bench import e2ee_rotation
from confctl.loadtest import clips as clip_factory
from confctl.loadtest.e2ee import b64url, from_b64url, open_key_blob
from confctl.loadtest.keypeer import KeyPeer
from confctl.loadtest.participant import Environment, Participant
from confctl.loadtest.plan import Options, Role
from confctl.loadtest.rawmedia import Pacer
from confctl.loadtest.signaling import tls_context, ws_url
from confserver.tokens import SigningKey, mint_join_token
from tests.conftest import API_KEY, API_SECRET, admin_headers, create_room, join_token

from .conftest import Server

# --- signaling only (the app in this process) ----------------------------------------------------


async def peer(client: TestClient, room: str, identity: str) -> KeyPeer:
    p = KeyPeer(client.session, str(client.make_url("/ws")), room, join_token(room, identity), identity)
    await p.join()
    return p


async def eventually(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.02)


def everyone_holds(peers: list[KeyPeer]) -> bool:
    return all(r.holds(s.sid) is not None for r in peers for s in peers if s is not r)


def vp8_keyframe() -> bytes:
    """A frame with a VP8 keyframe's clear prefix (frame tag, start code, 640x360) and a body."""
    return bytes([0x50, 0x2F, 0x01, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01]) + os.urandom(200)


def opens(receiver: KeyPeer, sender: KeyPeer, frame: bytes) -> str:
    """The receiver's verdict on a frame the sender encrypted now."""
    if receiver.keys is None or sender.keys is None:
        raise AssertionError("no key exchange")
    return receiver.keys.state.decrypt(sender.sid, "vp8", frame)[0]


async def test_a_removed_participant_cannot_open_frames_sent_after_the_rotation(client: TestClient) -> None:
    await create_room(client, "kick", e2ee=True)
    ana, bob, eve = [await peer(client, "kick", name) for name in ("ana", "bob", "eve")]
    await eventually(lambda: everyone_holds([ana, bob, eve]), 5, "keys exchanged")
    plain = vp8_keyframe()
    assert ana.keys is not None and bob.keys is not None and eve.keys is not None
    before = ana.keys.encrypt("vp8", plain)
    assert before is not None
    # the same frame, opened by both others before the removal
    assert eve.keys.state.decrypt(ana.sid, "vp8", before) == ("ok", plain)
    assert bob.keys.state.decrypt(ana.sid, "vp8", before) == ("ok", plain)

    removed_at = time.monotonic()
    resp = await client.delete("/api/v1/rooms/kick/participants/eve", headers=admin_headers())
    assert resp.status == 204
    await eventually(lambda: eve.ended is not None, 5, "eve removed")
    assert eve.ended == "kicked"
    # ana and bob rotate; the fresh key is used once it is active (500 ms after it was sent)
    for p in (ana, bob):
        await eventually(
            lambda p=p: (
                p.fresh_key_after(removed_at) is not None and p.keys is not None and p.keys.state.next is None
            ),
            5,
            f"{p.identity} rotated",
        )
    for sender, receiver in ((ana, bob), (bob, ana)):
        assert sender.keys is not None
        after = sender.keys.encrypt("vp8", plain)
        assert after is not None
        assert opens(receiver, sender, after) == "ok"
        assert opens(eve, sender, after) == "missing_key"  # eve still holds every key it was given
    assert eve.keys.state.receive.get(ana.sid), "eve's old keys are kept, and do not help"
    for p in (ana, bob, eve):
        await p.close()


async def test_key_blobs_reach_only_their_recipient_and_hide_the_media_key(client: TestClient) -> None:
    await create_room(client, "blobs", e2ee=True)
    trio = [await peer(client, "blobs", name) for name in ("ana", "bob", "cy")]
    await eventually(lambda: everyone_holds(trio), 5, "keys exchanged")
    await asyncio.sleep(0.5)  # any last blob delivered
    addressed: dict[str, set[tuple[str, str]]] = {p.sid: set() for p in trio}  # to -> {(from, data)}
    for sender in trio:
        for message in sender.key_outbox:
            for entry in message["keys"]:
                addressed[entry["to"]].add((sender.sid, entry["data"]))
    for receiver in trio:
        got = {(m["from"], m["data"]) for m in receiver.inbox if m.get("type") == "e2ee_key"}
        assert got, f"{receiver.identity} received no key"
        assert got == addressed[receiver.sid], "each blob addressed to it, and none other"
        for other in trio:
            if other is not receiver:
                assert not got & addressed[other.sid]
        assert all(
            m["identity"] in ("ana", "bob", "cy") for m in receiver.inbox if m.get("type") == "e2ee_key"
        )
    by_sid = {p.sid: p for p in trio}
    for sender in trio:
        assert sender.keys is not None
        current = sender.keys.state.send.secret
        for message in sender.key_outbox:
            text = json.dumps(message)
            for entry in message["keys"]:
                receiver = by_sid[entry["to"]]
                assert receiver.keys is not None
                pair = receiver.keys.state.peers[sender.sid].receive_key
                opened = open_key_blob(pair, entry["data"])
                assert opened is not None  # the recipient opens it: it carries a key of the sender
                blob = from_b64url(entry["data"]) or b""
                for secret in (opened[1], current):
                    assert secret not in blob and b64url(secret) not in text and secret.hex() not in text
        frame = sender.keys.encrypt("vp8", vp8_keyframe())
        assert frame is not None
        for receiver in trio:
            if receiver is not sender:
                assert opens(receiver, sender, frame) == "ok"  # the blobs did carry the current key
    for p in trio:
        await p.close()


async def test_in_a_room_of_100_everyone_holds_the_new_keys_soon_after_a_leave(client: TestClient) -> None:
    await create_room(client, e2ee_rotation.ROOM, e2ee=True)
    bench = e2ee_rotation.Bench(str(client.make_url("/ws")), None, SigningKey.hs256(API_KEY, API_SECRET))
    try:
        await bench.fill(100)
        event = await bench.leave(1, 0.0)
    finally:
        await bench.close()
    assert event.participants == 99 and event.incomplete == 0 and len(event.seconds) == 99
    assert max(event.seconds) < 10.0
    assert event.rotations == (1, 1)  # one fresh key per remaining sender
    assert event.down_messages >= 99 * 98  # every sender's key to every other


# --- media through a real server -------------------------------------------------------------------


def signature(frame: av.VideoFrame) -> tuple[int, int, bytes]:
    """Size and a sparse sample of the luma plane: enough to tell the clip's pictures apart."""
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size
    rows = b"".join(data[y * stride + 8 : y * stride + frame.width : 16] for y in range(8, frame.height, 16))
    return frame.width, frame.height, rows


def looks_like(sig: tuple[int, int, bytes], references: list[tuple[int, int, bytes]]) -> bool:
    """The picture of one of the clip's frames: same size, luma within a few levels on average."""
    for ref in references:
        if ref[:2] == sig[:2] and len(ref[2]) == len(sig[2]):
            if sum(abs(a - b) for a, b in zip(ref[2], sig[2], strict=True)) / len(ref[2]) < 8:
                return True
    return False


@pytest.fixture(scope="module")
def credentials(server: Server) -> Iterator[dict[str, Any]]:
    yield json.loads((server.home / ".local/state/confserver/credentials.json").read_text())


async def test_only_the_key_holder_sees_the_picture(server: Server, credentials: dict[str, Any]) -> None:
    room = "sealed"
    made = server.confctl("room", "create", room, "--e2ee")
    assert made.returncode == 0, made.stderr
    clips = await asyncio.to_thread(
        clip_factory.build, video=True, simulcast=False, speech=False, quiet=False
    )
    assert clips.top is not None
    decoder = av.CodecContext.create("libvpx", "r")
    references = [signature(f) for data in clips.top.frames for f in decoder.decode(av.Packet(data))]
    key = SigningKey.hs256(credentials["api_key"], credentials["api_secret"])
    sealed = Options(
        room=room, video_publishers=1, subscribers=2, decoders=2, participants=3, e2ee=True
    ).check()
    plain = Options(room=room, video_publishers=1, subscribers=2, decoders=2, participants=3).check()
    pacer = Pacer()
    async with aiohttp.ClientSession() as session:

        def env(options: Options) -> Environment:
            tls = tls_context(credentials["cacert"])
            return Environment(
                session, ws_url(f"https://127.0.0.1:{server.port}"), tls, options, clips, pacer
            )

        def member(index: int, identity: str, options: Options, publish: bool) -> Participant:
            role = Role(index, identity, publish, False, False, not publish, not publish)
            token, _ = mint_join_token(
                key, room=room, identity=identity, permissions=role.permissions, now=time.time()
            )
            return Participant(role, token, env(options))

        publisher = member(0, "camera", sealed, True)
        reader = member(1, "reader", sealed, False)
        outsider = member(2, "outsider", plain, False)  # a plain client: no key exchange
        seen: dict[str, list[bool]] = {"reader": [], "outsider": []}
        reader.frame_sink = lambda f: seen["reader"].append(looks_like(signature(f), references))
        outsider.frame_sink = lambda f: seen["outsider"].append(looks_like(signature(f), references))
        tasks = [asyncio.create_task(p.run()) for p in (publisher, reader, outsider)]
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                len(seen["reader"]) < 60 or outsider.received().video < 300
            ):
                await asyncio.sleep(0.5)
                await outsider.refresh_stats()
            for p in (publisher, reader, outsider):
                assert p.failure is None, p.failure
        finally:
            await asyncio.gather(*(p.leave() for p in (publisher, reader, outsider)), return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pacer.close()
    assert publisher.keys is not None and publisher.keys.counts["frames_encrypted"] > 60
    assert publisher.keys.counts["frames_dropped"] == 0
    # the E2EE subscriber decrypts and decodes the camera: the clip's pictures
    assert reader.frames_decoded >= 60 and seen["reader"].count(True) >= 55
    assert reader.keys is not None and reader.keys.counts["frames_decrypted"] >= 60
    # the plain one receives the same packets, and never sees a picture (libvpx turns some
    # ciphertext into frames of noise; none resembles the clip)
    assert outsider.received().video >= 300
    assert outsider.keys is None
    assert seen["outsider"].count(True) == 0


def test_load_test_e2ee_publishes_ciphertext_that_its_decoders_open(server: Server) -> None:
    done = server.confctl(
        *("load-test", "--room", "sealed-run", "--e2ee", "-P", "1", "-A", "1", "-S", "2", "--decoders", "1"),
        *("--duration", "4s", "--warmup", "2s", "--metrics-url", server.metrics_url, "--json"),
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    e2ee = doc["e2ee"]
    assert doc["setup"]["e2ee"] is True and doc["participants"]["failed"] == 0
    # one camera (30 frames/s) and one microphone (50/s), each frame encrypted before it is sent
    assert e2ee["frames_encrypted_per_s"] > 50 and e2ee["frames_dropped_per_s"] == 0
    # the decoder opens what it is sent and decodes it; the key messages went both ways
    assert e2ee["frames_decrypted_per_s"] > 20 and doc["decoded_fps"] > 20
    assert e2ee["key_blobs_out"] >= 2 and e2ee["key_messages_in"] == e2ee["key_blobs_out"]


def test_load_test_refuses_to_mix_plain_and_e2ee_rooms(server: Server) -> None:
    assert server.confctl("room", "create", "plain-room").returncode == 0
    common = ("-S", "1", "--duration", "1s", "--no-metrics")
    done = server.confctl("load-test", "--room", "plain-room", "--e2ee", *common)
    assert done.returncode == 2 and "not end-to-end encrypted" in done.stderr
    assert server.confctl("room", "create", "sealed-room", "--e2ee").returncode == 0
    done = server.confctl("load-test", "--room", "sealed-room", *common)
    assert done.returncode == 2 and "add --e2ee" in done.stderr
    done = server.confctl("load-test", "--room", "x", "--e2ee", "--sender", "aiortc", "-A", "1", *common)
    assert done.returncode == 2 and "--sender crafted" in done.stderr
