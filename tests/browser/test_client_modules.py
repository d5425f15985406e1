"""The client's DOM-free modules, exercised in the browser with fakes in place of the network:
subscription planning, grid sizing, tokens, languages, reconnect decisions, media errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Server


@pytest.fixture(scope="module")
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context()
    p = context.new_page()
    p.goto(server.url + "/")
    yield p
    context.close()


def run(page: Any, body: str) -> Any:
    """Runs an async function body in the page; `imp(name)` imports /static/<name>.js."""
    return page.evaluate(f"async () => {{ const imp = (n) => import(`/static/${{n}}.js`); {body} }}")


def test_subscriptions_send_only_what_changed(page: Any) -> None:
    out = run(
        page,
        """
        const { SubscriptionPlanner } = await imp('subscriptions');
        const sent = [];
        const p = new SubscriptionPlanner((m) => sent.push(m.tracks));
        p.setVisible([{ trackId: 'A', width: 320, height: 180 }, { trackId: 'B', width: 1280, height: 720 }]);
        const first = p.flush();
        p.setVisible([{ trackId: 'A', width: 330, height: 186 }, { trackId: 'B', width: 1280, height: 720 }]);
        const tiny = p.flush();             // under 15 %: not worth a message
        p.setVisible([{ trackId: 'A', width: 1280, height: 720 }]);
        const second = p.flush();           // A grows, B leaves the screen
        p.setPaused(true);
        const paused = p.flush();
        p.close();
        return { first, tiny, second, paused, messages: sent.length };
        """,
    )
    assert out["first"] == [
        {"id": "A", "subscribe": True, "max_width": 320, "max_height": 180},
        {"id": "B", "subscribe": True, "max_width": 1280, "max_height": 720},
    ]
    assert out["tiny"] == []
    assert out["second"] == [
        {"id": "A", "subscribe": True, "max_width": 1280, "max_height": 720},
        {"id": "B", "subscribe": False},
    ]
    assert out["paused"] == [
        {"id": "A", "subscribe": True, "max_width": 1280, "max_height": 720, "paused": True}
    ]
    assert out["messages"] == 3


def test_grid_fit_makes_tiles_as_large_as_the_space_allows(page: Any) -> None:
    out = run(
        page,
        """
        const { gridFit, PAGE_SIZE } = await imp('stage');
        return { one: gridFit(1, 1600, 900, 0), four: gridFit(4, 1600, 900, 0), page: gridFit(PAGE_SIZE, 1600, 900, 0), size: PAGE_SIZE };
        """,
    )
    assert out["size"] == 25
    assert (out["one"]["cols"], out["one"]["tileW"], out["one"]["tileH"]) == (1, 1600, 900)
    assert (out["four"]["cols"], out["four"]["rows"], out["four"]["tileW"]) == (2, 2, 800)
    assert out["page"]["cols"] * out["page"]["rows"] >= 25


def test_tokens_are_judged_before_joining_only_for_friendly_messages(page: Any, server: Server) -> None:
    good = server.token("r1", "ana", name="Ana Putri", role="moderator")
    out = run(
        page,
        f"""
        const {{ decodeJoinToken, tokenProblem }} = await imp('token');
        const good = '{good}';
        const claims = decodeJoinToken(good);
        const now = Date.now();
        return {{
          claims,
          ok: tokenProblem(good, claims, 'r1', now),
          wrongRoom: tokenProblem(good, claims, 'r2', now),
          expired: tokenProblem(good, claims, 'r1', now + 3 * 3600 * 1000),
          missing: tokenProblem(null, null, 'r1', now),
          garbage: tokenProblem('abc', decodeJoinToken('abc'), 'r1', now),
          badJson: decodeJoinToken('a.b.c'),
        }};
        """,
    )
    assert out["claims"]["identity"] == "ana" and out["claims"]["name"] == "Ana Putri"
    assert "update_name" in out["claims"]["permissions"]
    assert out["ok"] is None
    assert out["wrongRoom"] == "wrong_room"
    assert out["expired"] == "expired"
    assert out["missing"] == "missing"
    assert out["garbage"] == "malformed"
    assert out["badJson"] is None


def test_the_language_follows_the_browser_unless_chosen(page: Any) -> None:
    out = run(
        page,
        """
        const { pickLanguage } = await imp('i18n');
        return [
          pickLanguage(null, ['id-ID', 'en']), pickLanguage(null, ['de-DE', 'id']), pickLanguage(null, ['fr']),
          pickLanguage('en', ['id-ID']), pickLanguage('xx', ['id']),
        ];
        """,
    )
    assert out == ["id", "id", "en", "en", "id"]


def test_every_way_out_of_a_meeting_has_its_page(page: Any) -> None:
    out = run(
        page,
        """
        const { endScreenKey } = await imp('endscreen');
        return [
          endScreenKey({ kind: 'refused', code: 'token_rejected', reason: 'expired' }),
          endScreenKey({ kind: 'refused', code: 'token_rejected', reason: 'bad_signature' }),
          endScreenKey({ kind: 'refused', code: 'room_locked' }),
          endScreenKey({ kind: 'refused', code: 'room_full' }),
          endScreenKey({ kind: 'refused', code: 'something_new' }),
          endScreenKey({ kind: 'kicked', reason: 'removed' }),
          endScreenKey({ kind: 'kicked', reason: 'duplicate_identity' }),
          endScreenKey({ kind: 'kicked', reason: 'token_revoked' }),
          endScreenKey({ kind: 'room_closed', reason: 'ended' }),
          endScreenKey({ kind: 'room_closed', reason: 'empty_timeout' }),
          endScreenKey({ kind: 'connection_lost' }),
          endScreenKey({ kind: 'token', problem: 'malformed' }),
        ];
        """,
    )
    assert out == [
        "expired", "invalid", "room_locked", "room_full", "join_failed", "removed", "duplicate", "revoked",
        "ended", "closed", "connection_lost", "invalid",
    ]  # fmt: skip


FAKE_SIGNALING = """
class FakeSignaling extends EventTarget {
  constructor() { super(); this.sent = []; this.isOpen = false; FakeSignaling.made.push(this); }
  connect() { setTimeout(() => { this.isOpen = true; this.dispatchEvent(new CustomEvent('open')); }, 0); }
  send(m) { this.sent.push(m); return true; }
  abandon() { this.abandoned = true; }
  serverSays(m) { this.dispatchEvent(new CustomEvent('message', { detail: m })); }
  drop(code) { this.isOpen = false; this.dispatchEvent(new CustomEvent('close', { detail: { code } })); }
}
FakeSignaling.made = [];
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const me = { sid: 'S1', identity: 'ana', name: 'Ana', role: 'moderator', permissions: ['moderate', 'chat'], joined_at: 1,
             state: { audio_muted: false, video_muted: true, hand_raised: false } };
const joined = { type: 'joined', v: 1, sid: 'S1', room: { name: 'r', locked: false }, self: me, participants: [], ice_servers: [] };
"""


def test_a_dropped_connection_rejoins_with_the_same_token_and_state(page: Any) -> None:
    out = run(
        page,
        FAKE_SIGNALING
        + """
        const { Meeting } = await imp('meeting');
        const m = new Meeting({ url: 'ws://x', room: 'r', token: 'T', makeSignaling: () => new FakeSignaling() });
        const statuses = [];
        m.addEventListener('status', (e) => statuses.push(e.detail.status));
        m.start({ state: { audio_muted: false, video_muted: true } });
        await tick();
        const first = FakeSignaling.made[0];
        first.serverSays(joined);
        m.setLocalState({ hand_raised: true });
        first.drop(1006);                  // a blip
        await tick(600);                   // the first retry comes within half a second
        const second = FakeSignaling.made[1];
        second.serverSays({ ...joined, sid: 'S2', self: { ...me, sid: 'S2' } });
        second.serverSays({ type: 'kicked', reason: 'removed', message: 'removed by mod', by: 'mod' });
        return { statuses, join: first.sent[0], rejoin: second.sent[0], end: m.endReason, made: FakeSignaling.made.length };
        """,
    )
    assert out["join"] == {
        "type": "join",
        "v": 1,
        "token": "T",
        "room": "r",
        "state": {"audio_muted": False, "video_muted": True, "hand_raised": False},
    }
    assert out["rejoin"]["token"] == "T" and out["rejoin"]["state"]["hand_raised"] is True
    assert out["statuses"] == ["connecting", "joined", "reconnecting", "reconnecting", "joined", "ended"]
    assert out["end"] == {"kind": "kicked", "reason": "removed", "message": "removed by mod", "by": "mod"}
    assert out["made"] == 2  # removed: no reconnect


def test_a_refused_join_ends_without_retrying(page: Any) -> None:
    out = run(
        page,
        FAKE_SIGNALING
        + """
        const { Meeting } = await imp('meeting');
        const m = new Meeting({ url: 'ws://x', room: 'r', token: 'T', makeSignaling: () => new FakeSignaling() });
        m.start({});
        await tick();
        const sig = FakeSignaling.made[0];
        sig.serverSays({ type: 'error', code: 'token_rejected', reason: 'expired', message: 'm', ref: 'join' });
        sig.drop(4000);
        await tick(600);
        return { end: m.endReason, made: FakeSignaling.made.length };
        """,
    )
    assert out["end"]["kind"] == "refused" and out["end"]["reason"] == "expired"
    assert out["made"] == 1


def test_media_unavailable_closes_the_media_side_only(page: Any) -> None:
    out = run(
        page,
        """
        const { MediaSession } = await imp('media');
        const sent = [];
        const media = new MediaSession({ send: (m) => sent.push(m), selfSid: 'S1', permissions: ['subscribe', 'publish_video'] });
        media.start({});
        media.handle({ type: 'track_published', track: { id: 'TR1', sid: 'S2', identity: 'budi', kind: 'video', source: 'camera', layers: [], muted: false } });
        media.handle({ type: 'track_published', track: { id: 'TR0', sid: 'S1', identity: 'ana', kind: 'video', source: 'screen', layers: [], muted: false } });
        const before = { pub: media.publication('S2', 'camera')?.id, own: media.ownTracks.get('screen'), status: media.status };
        media.setVisible([{ sid: 'S2', source: 'camera', width: 640, height: 360 }]);
        media.planner.flush();
        media.handle({ type: 'error', code: 'media_unavailable', message: 'no media', ref: 'update_subscription' });
        return { before, after: media.status, sent, remote: media.remote.size, pcs: media.peerConnections().length };
        """,
    )
    assert out["before"] == {"pub": "TR1", "own": "TR0", "status": "connecting"}
    assert out["sent"][0] == {"type": "update_subscription", "tracks": []}  # asks at once: is there media?
    assert {
        "type": "update_subscription",
        "tracks": [{"id": "TR1", "subscribe": True, "max_width": 640, "max_height": 360}],
    } in out["sent"]
    assert out["after"] == "unavailable" and out["remote"] == 0 and out["pcs"] == 0


def test_connection_quality_from_round_trip_and_loss(page: Any) -> None:
    out = run(
        page,
        """
        const { rateQuality } = await imp('quality');
        return [rateQuality({}), rateQuality({ rttMs: 40 }), rateQuality({ rttMs: 300 }), rateQuality({ rttMs: 40, lossRatio: 0.1 })];
        """,
    )
    assert out == ["unknown", "good", "fair", "poor"]
