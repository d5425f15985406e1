"""The hostile inputs of the media path and the admin API, as a live server meets them: each one is
answered (an answer or an ``error`` with a documented code, never ``internal``), quickly, on a
connection that stays open, and the room keeps talking afterwards.

The generators and the harness are those of ``test_signaling_fuzz``.
"""

from __future__ import annotations

import json
import time

from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.hostile import real_offer, tracks_of

from .conftest import admin_headers, join
from .test_signaling_fuzz import (
    CHROMIUM_OFFER,
    LIVE,
    _new_ice,
    exchange,
    json_text,
    live,
    live_media,
    probe_room,
    trio,
)

__all__ = ["live", "live_media"]  # fixtures, shared with the fuzzers

CANDIDATE = "candidate:{n} 1 udp 2130706431 127.0.0.1 {port} typ host"


async def test_a_second_offer_bundling_one_mid_twice_with_new_ice_credentials_is_answered_at_once(
    live_media: TestClient,
) -> None:
    sdp = await real_offer()
    t = await trio(live_media)
    try:
        first = await exchange(
            t.fuzzer, json.dumps({"type": "publish_offer", "sdp": sdp, "tracks": tracks_of(sdp)})
        )
        assert "publish_answer" in [m["type"] for m in first.messages]
        lines = _new_ice(sdp.strip().splitlines(), "zzzz", "p" * 24)
        lines = ["a=group:BUNDLE 0 0" if x.startswith("a=group:BUNDLE") else x for x in lines]
        second = "\r\n".join(lines) + "\r\n"
        started = time.monotonic()
        answer = await exchange(
            t.fuzzer, json.dumps({"type": "publish_offer", "sdp": second, "tracks": tracks_of(sdp)})
        )
        assert time.monotonic() - started < 5, "the session froze on the offer"
        answer.assert_documented(second)
        assert answer.closed is None
        await probe_room(t.speaker, [t.witness, t.fuzzer], "a duplicated BUNDLE id")
    finally:
        await t.close()


async def test_an_offer_without_any_direction_is_answered(live_media: TestClient) -> None:
    sdp = "\r\n".join(x for x in CHROMIUM_OFFER.splitlines() if x not in ("a=sendonly",)) + "\r\n"
    t = await trio(live_media)
    try:
        answer = await exchange(
            t.fuzzer, json.dumps({"type": "publish_offer", "sdp": sdp, "tracks": tracks_of(sdp)})
        )
        answer.assert_documented(sdp)
        assert answer.closed is None
        assert {m["type"] for m in answer.messages} & {"publish_answer", "error"}
        await probe_room(t.speaker, [t.witness, t.fuzzer], "an offer without direction")
    finally:
        await t.close()


async def test_a_chat_only_viewer_sending_a_60_kb_offer_with_no_tracks_is_refused_quickly(
    live_media: TestClient,
) -> None:
    padding = "".join(f"a=x-pad:{i:05d}{'x' * 50}\r\n" for i in range(1000))
    sdp = (CHROMIUM_OFFER + padding)[: 60 * 1024]
    t = await trio(live_media, fuzzer_role="viewer", permissions=["chat"])
    try:
        started = time.monotonic()
        answer = await exchange(t.fuzzer, json.dumps({"type": "publish_offer", "sdp": sdp, "tracks": []}))
        assert time.monotonic() - started < 2
        answer.assert_documented("60 KB offer")
        assert answer.codes, (
            f"a viewer cannot publish: the offer must be refused; got {[m['type'] for m in answer.messages]}"
        )
        assert answer.closed is None
        await probe_room(t.speaker, [t.witness, t.fuzzer], "a viewer's 60 KB offer")
    finally:
        await t.close()


@settings(LIVE, max_examples=25)
@given(fields=st.integers(0, 7), junk=st.sampled_from(["", "x", "\ud800", "9" * 30, "-1", "NaN"]))
async def test_candidates_with_fewer_than_eight_fields_are_refused(
    live_media: TestClient, fields: int, junk: str
) -> None:
    parts = CANDIDATE.format(n=1, port=5000).split(" ")[:fields]
    if parts and junk:
        parts[-1] = junk
    candidate = " ".join(parts)
    t = await trio(live_media)
    try:
        offer = json.dumps(
            {"type": "publish_offer", "sdp": CHROMIUM_OFFER, "tracks": tracks_of(CHROMIUM_OFFER)}
        )
        await exchange(t.fuzzer, offer)
        frame = json.dumps(
            {"type": "ice_candidate", "target": "publish", "candidate": candidate, "sdpMid": "0"}
        )
        answer = await exchange(t.fuzzer, frame)
        answer.assert_documented(candidate)
        assert answer.closed is None
        await probe_room(t.speaker, [t.witness, t.fuzzer], f"the candidate {candidate!r}")
    finally:
        await t.close()


async def test_a_flood_of_candidates_is_answered_and_bounded(live_media: TestClient) -> None:
    t = await trio(live_media)
    try:
        offer = json.dumps(
            {"type": "publish_offer", "sdp": CHROMIUM_OFFER, "tracks": tracks_of(CHROMIUM_OFFER)}
        )
        await exchange(t.fuzzer, offer)
        codes: list[str] = []
        for n in range(400):
            cand = CANDIDATE.format(n=n, port=10000 + n)
            frame = json.dumps(
                {"type": "ice_candidate", "target": "publish", "candidate": cand, "sdpMid": "0"}
            )
            answer = await exchange(t.fuzzer, frame)
            answer.assert_documented(cand)
            assert answer.closed is None, f"closed after {n} candidates"
            codes += answer.codes
        assert codes, "400 remote candidates for one connection were all accepted: nothing bounds them"
        await probe_room(t.speaker, [t.witness, t.fuzzer], "a flood of candidates")
    finally:
        await t.close()


@settings(LIVE, max_examples=40)
@given(metadata=json_text)
async def test_hostile_room_metadata_from_the_api_is_refused_or_harmless(
    live: TestClient, metadata: str
) -> None:
    t = await trio(live)
    try:
        body = '{"metadata":' + metadata + "}"
        headers = {**admin_headers(), "Content-Type": "application/json"}
        resp = await live.patch(f"/api/v1/rooms/{t.room}", data=body.encode(), headers=headers)
        assert resp.status < 500, (resp.status, await resp.text(), body[:200])
        doc = await resp.json()  # whatever the answer, valid JSON
        if resp.status >= 400:
            assert isinstance(doc.get("error"), str)
        await probe_room(t.speaker, [t.witness, t.fuzzer], f"room metadata {body[:200]!r}")
        name = f"md{t.room}"
        created = await live.post(
            "/api/v1/rooms",
            data=('{"name":"' + name + '","metadata":' + metadata + "}").encode(),
            headers=headers,
        )
        assert created.status < 500, (created.status, await created.text())
        if created.status == 201:  # accepted: a joiner is shown the metadata in `joined`
            ws, joined = await join(live, name, "late")
            await ws.close()
            assert joined["room"]["name"] == name
    finally:
        await t.close()
