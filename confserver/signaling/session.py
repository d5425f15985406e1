"""One participant's signaling session, independent of the transport.

The adapter feeds parsed messages to ``Session.handle`` and calls ``Session.end`` once when the
connection is gone; the session answers through its ``Peer`` (non-blocking sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from ..access import password_matches
from ..audit import UNKNOWN, Actor
from ..contract import IceCandidate, PublishOffer, SubscribeAnswer, Unpublish, UpdateSubscription
from ..errors import ServiceError
from ..media import MediaController
from ..metrics import Metrics
from ..rooms import JoinRequest, Peer, RoomService, participant_info, room_info
from ..store import Participant, RevocationStore, Room, RoomUpdate
from ..tokens import JoinClaims, TokenError, TokenVerifier
from . import messages as m
from .e2ee import KEYS_BURST, KEYS_PER_SECOND, KeyBudget, KeyRelay
from .messages import CloseCode

log = logging.getLogger("confserver.signaling")

ICE_REFRESH_INTERVAL = 300.0
"""Seconds between fresh TURN credentials pushed to a joined session (``ice_servers``); the first
comes before the join token's expiry, which bounds the credentials given at join."""
MEDIA_CALL_TIMEOUT = 15.0
"""Seconds any call into the media service may take before the session gives up on it. The SFU
bounds its own calls more tightly; this is the signaling side's backstop, so that a stuck media
call can never hold a reader, a seat or the cleanup of a connection."""


@dataclass(frozen=True)
class _Pending:
    """A join waiting in the lobby, to be finished when a moderator admits it."""

    claims: JoinClaims
    req: JoinRequest
    name: str
    started: float


@dataclass(frozen=True)
class SessionLimits:
    chat_max_chars: int
    media_timeout: float = MEDIA_CALL_TIMEOUT


class Session:
    def __init__(
        self,
        *,
        peer: Peer,
        rooms: RoomService,
        verifier: TokenVerifier,
        revocations: RevocationStore,
        media: MediaController,
        metrics: Metrics,
        limits: SessionLimits,
        client_ip: str = "",
    ) -> None:
        self.sid = "PA_" + secrets.token_urlsafe(9)
        self._client_ip = client_ip
        self._peer = peer
        self._rooms = rooms
        self._verifier = verifier
        self._revocations = revocations
        self._media = media
        self._metrics = metrics
        self._limits = limits
        self._claims: JoinClaims | None = None
        self._waiting: _Pending | None = None
        """Set while this session waits in the room's lobby."""
        self._after_admission: asyncio.Task[None] | None = None
        self._name = ""
        self._ended = False
        self._ice_refresh: asyncio.TimerHandle | None = None
        self._e2ee: KeyRelay | None = None
        """Set when joined to an E2EE room (which cannot be switched while anyone is in it)."""

    @property
    def joined(self) -> bool:
        return self._claims is not None

    @property
    def waiting(self) -> bool:
        """In the lobby: no seat yet, but the connection stays."""
        return self._waiting is not None and self._claims is None

    @property
    def room(self) -> str | None:
        return self._claims.room if self._claims else None

    def send(self, msg: Mapping[str, Any]) -> None:
        self._peer.send_text(m.encode(msg))

    def send_error(self, code: str, message: str, ref: str | None = None, **extra: Any) -> None:
        self._metrics.ws_errors.labels(code).inc()
        self.send(m.error(code, message, ref, **extra))

    async def handle(self, msg: m.ClientMessage) -> None:
        """Act on one message; refusals become ``error`` messages, the session goes on."""
        try:
            await self._dispatch(msg)
        except ServiceError as e:
            self.send_error(e.code, e.message, _ref(msg))
        except m.ProtocolError as e:
            self.send_error(e.code, e.message, e.ref or _ref(msg))

    async def _dispatch(self, msg: m.ClientMessage) -> None:
        """One case per message type; ``assert_never`` makes a type without one a mypy error (and a
        loud ``internal`` at run time), never a message silently ignored."""
        match msg:
            case m.Ping():
                self.send({"type": "pong", "t": msg.t})
            case m.Join():
                await self._join(msg)
            case m.Leave():
                if self._waiting is not None and self._claims is None:
                    self._rooms.quit_lobby(self._waiting.req.room, self.sid)
                    self._waiting = None
                else:
                    self._joined()
                self._peer.close_with({"type": "left"}, CloseCode.NORMAL)
            case m.Chat():
                self._chat(self._joined(), msg)
            case m.UpdateSelf():
                await self._update(self._joined(), msg)
            case m.MuteParticipant():
                await self._mute(self._moderator(), msg)
            case m.KickParticipant():
                claims = self._moderator()
                with self._audited("participant.kick", target=msg.identity):
                    await self._rooms.kick(claims.room, msg.identity, claims.identity)
            case m.LockRoom():
                claims = self._moderator()
                with self._audited("room.lock" if msg.locked else "room.unlock"):
                    await self._rooms.update_room(claims.room, RoomUpdate(locked=msg.locked))
            case m.EndRoom():
                claims = self._moderator()
                with self._audited("room.end"):
                    await self._rooms.delete_room(claims.room, reason="ended")
            case m.Admit():
                claims = self._moderator()
                with self._audited("participant.admit", target=msg.identity):
                    await self._rooms.admit(claims.room, msg.identity, claims.identity)
            case m.Deny():
                claims = self._moderator()
                with self._audited("participant.deny", target=msg.identity):
                    self._rooms.deny(claims.room, msg.identity, claims.identity)
            case m.E2eeIdentity():
                self._key_relay().announce(msg)
            case m.E2eeKeys():
                unknown = self._key_relay().relay(msg, time.monotonic())
                if unknown:
                    self.send_error(
                        "participant_not_found", "not delivered: not in this room", "e2ee_keys", sids=unknown
                    )
            case PublishOffer() | SubscribeAnswer() | IceCandidate() | UpdateSubscription() | Unpublish():
                claims = self._joined()
                await self._media_call(self._media.handle(claims.room, self.sid, msg), msg.type)
            case _:
                assert_never(msg)

    def _key_relay(self) -> KeyRelay:
        self._joined()
        if self._e2ee is None:
            raise ServiceError("e2ee_off", "this room is not end-to-end encrypted")
        return self._e2ee

    @contextlib.contextmanager
    def _audited(self, action: str, target: str = "", **conf: Any) -> Iterator[None]:
        """Record a moderator's action with its outcome (a refusal under the same action)."""
        claims = self._joined()
        outcome, reason = "failure", "internal"
        try:
            yield
            outcome, reason = "success", ""
        except ServiceError as e:
            reason = e.code
            raise
        finally:
            self._rooms.audit.record(
                action,
                actor=Actor("participant", claims.identity, self._name),
                outcome="success" if outcome == "success" else "failure",
                reason=reason,
                room=claims.room,
                target=target,
                client_ip=self._client_ip,
                conf=conf or None,
            )

    def _record_join(
        self, reason: str, claims: JoinClaims | None = None, room: str = "", action: str = "participant.join"
    ) -> None:
        """One entry per join attempt: admitted, waiting in the lobby, or refused and why."""
        actor = UNKNOWN if claims is None else Actor("participant", claims.identity, claims.name)
        self._rooms.audit.record(
            action,
            actor=actor,
            outcome="success" if not reason or action != "participant.join" else "failure",
            reason=reason,
            room=claims.room if claims is not None else room,
            client_ip=self._client_ip,
            conf={"sid": self.sid, "role": claims.role, "jti": claims.jti} if claims is not None else None,
        )

    def _joined(self) -> JoinClaims:
        if self._claims is None:
            raise ServiceError("not_joined", "send join first")
        return self._claims

    def _moderator(self) -> JoinClaims:
        claims = self._joined()
        if "moderate" not in claims.permissions:
            raise ServiceError("forbidden", "only moderators can do this")
        return claims

    # --- join ---------------------------------------------------------------------------------

    async def _join(self, msg: m.Join) -> None:
        if self._claims is not None or self._waiting is not None:
            raise ServiceError("already_joined", "this connection has joined already")
        started = time.monotonic()
        try:
            claims = self._verifier.verify_join(msg.token, room=msg.room, now=time.time())
            if await self._revocations.is_revoked(claims.jti, time.time()):
                raise TokenError("revoked")
        except TokenError as e:
            self._metrics.token_rejections.labels(e.reason).inc()
            self._metrics.joins.labels("token_rejected").inc()
            self._record_join(f"token_rejected:{e.reason}", room=msg.room or "")
            self._fail_join("token_rejected", str(e), reason=e.reason)
            return
        name = claims.name
        if msg.name is not None and msg.name != claims.name:
            if "update_name" not in claims.permissions:
                self._metrics.joins.labels("forbidden").inc()
                self._record_join("forbidden", claims)
                self._fail_join("forbidden", "this token does not allow changing the display name")
                return
            name = msg.name
        state = dict(msg.state or {})
        for key, perm in (("audio_muted", "publish_audio"), ("video_muted", "publish_video")):
            if perm not in claims.permissions:
                state[key] = True  # whatever the client says: it cannot send this kind of media
            state.setdefault(key, False)
        req = JoinRequest(
            room=claims.room,
            sid=self.sid,
            identity=claims.identity,
            name=name,
            role=claims.role,
            permissions=claims.permissions,
            state=state,
            jti=claims.jti,
        )
        try:
            room = await self._admission(claims, msg.password)
            if room is not None and room.lobby and not self._skips_lobby(claims):
                self._waiting = _Pending(claims, req, name, started)
                if not await self._rooms.wait(req, self._peer, self._enter_from_lobby):
                    self._record_join("lobby", claims, action="participant.knock")
                return
            me = await self._enter(claims, req, name, started)
        except ServiceError as e:
            self._waiting = None
            self._metrics.joins.labels(e.code).inc()
            self._record_join(e.code, claims)
            self._fail_join(e.code, e.message)
            return
        await self._start_media(claims, me)

    async def _admission(self, claims: JoinClaims, password: str | None) -> Room | None:
        """The room's own conditions, before a seat or the lobby: a lock refuses newcomers, and a
        password is asked of everyone but moderators. Raises ``ServiceError``."""
        await self._rooms.hold(claims.room)  # this node serves the room, or the client reconnects
        room = await self._rooms.admin.find(claims.room)
        if room is None or "moderate" in claims.permissions:
            return room
        returning = self._rooms.returning(room.name, claims.identity)
        if room.locked and not returning:
            raise ServiceError("room_locked", "the room is locked", 403)
        if room.password_hash:
            keys = ((room.name, "identity", claims.identity), (room.name, "address", self._client_ip))
            failures = self._rooms.password_failures
            if any(failures.blocked(key) for key in keys):
                raise ServiceError("rate_limited", "too many wrong passwords; wait a minute", 429)
            if password is None:
                raise ServiceError("password_required", "this room needs a password", 401)
            if not await asyncio.to_thread(password_matches, room.password_hash, password):
                for key in keys:
                    failures.failed(key)
                raise ServiceError("bad_password", "the password is not right", 403)
        return room

    def _skips_lobby(self, claims: JoinClaims) -> bool:
        perms = claims.permissions
        return (
            "moderate" in perms
            or "skip_lobby" in perms
            or self._rooms.returning(claims.room, claims.identity)
        )

    async def _enter_from_lobby(self) -> None:
        """Admitted by a moderator: take the seat now (``room_full`` goes back to the moderator,
        and this session keeps waiting); media starts in this session's own task."""
        pending = self._waiting
        if pending is None or self._ended:
            raise ServiceError("participant_not_found", "this person is no longer waiting")
        me = await self._enter(pending.claims, pending.req, pending.name, pending.started)
        self._after_admission = asyncio.create_task(
            self._start_media(pending.claims, me), name=f"admitted-{self.sid}"
        )

    async def _enter(self, claims: JoinClaims, req: JoinRequest, name: str, started: float) -> Participant:
        """Take the seat and answer ``joined``. Raises ``ServiceError`` (``room_full``, ...)."""
        room, me, others = await self._rooms.join(req, self._peer)
        self._claims = claims
        self._waiting = None
        self._name = name
        if room.e2ee:
            budget = KeyBudget(KEYS_PER_SECOND, KEYS_BURST, time.monotonic())
            self._e2ee = KeyRelay(self._rooms.hub, room.name, self.sid, claims.identity, budget)
        self._record_join("", claims)
        ice_servers = self._media.ice_servers(claims.identity, not_after=claims.expires_at)
        self.send(
            {
                "type": "joined",
                "v": m.PROTOCOL_VERSION,
                "sid": self.sid,
                "room": room_info(room),
                "self": participant_info(me),
                "participants": [self._rooms.hub.describe(p) for p in others],
                "ice_servers": ice_servers,
                "token_expires_at": claims.expires_at,
            }
        )
        if "moderate" in claims.permissions and self._rooms.lobby.waiting(room.name):
            self.send(self._rooms.lobby_message(room.name))  # who is knocking already
        self._metrics.joins.labels("admitted").inc()
        self._metrics.join_duration.observe(time.monotonic() - started)
        if any("credential" in server for server in ice_servers):
            before_expiry = claims.expires_at - time.time() - 60.0
            floor = min(10.0, ICE_REFRESH_INTERVAL)
            self._schedule_ice_refresh(max(floor, min(ICE_REFRESH_INTERVAL, before_expiry)))
        return me

    async def _start_media(self, claims: JoinClaims, me: Participant) -> None:
        # after `joined`, so that the tracks already in the room reach a client that knows the room
        await self._media_call(
            self._media.participant_joined(
                claims.room, self.sid, claims.permissions, self.send, identity=claims.identity
            ),
            "join",
        )
        for key, kind in (("audio_muted", "audio"), ("video_muted", "video")):
            if me.state.get(key):  # joined muted: the media side applies it when the track comes
                await self._media_call(self._media.set_muted(claims.room, self.sid, kind, True), "join")

    def _fail_join(self, code: str, message: str, **extra: Any) -> None:
        self._metrics.ws_errors.labels(code).inc()
        close = CloseCode.TRY_AGAIN if code == "try_again" else CloseCode.JOIN_REFUSED
        self._peer.close_with(m.error(code, message, "join", **extra), close)

    # --- in the room ----------------------------------------------------------------------------

    def _chat(self, claims: JoinClaims, msg: m.Chat) -> None:
        if "chat" not in claims.permissions:
            raise ServiceError("forbidden", "this token does not allow chat")
        text = msg.text.strip()
        if not text:
            raise ServiceError("bad_field", "chat text is empty")
        if len(text) > self._limits.chat_max_chars:
            raise ServiceError(
                "chat_too_long", f"chat messages are at most {self._limits.chat_max_chars} characters"
            )
        out: dict[str, Any] = {
            "type": "chat",
            "id": secrets.token_urlsafe(8),
            "from": {"sid": self.sid, "identity": claims.identity, "name": self._name},
            "text": text,
            "ts": int(time.time() * 1000),
        }
        if msg.to is None:
            self._rooms.hub.broadcast(claims.room, out)
            return
        out["to"] = msg.to
        if not self._rooms.hub.send_to_identity(claims.room, msg.to, out):
            raise ServiceError("participant_not_found", f"no participant {msg.to} in this room")
        if msg.to != claims.identity:
            self.send(out)  # the sender sees its own private message in the conversation

    async def _update(self, claims: JoinClaims, msg: m.UpdateSelf) -> None:
        if msg.name is not None and "update_name" not in claims.permissions:
            raise ServiceError("forbidden", "this token does not allow changing the display name")
        for key, perm in (("audio_muted", "publish_audio"), ("video_muted", "publish_video")):
            if msg.state.get(key) is False and perm not in claims.permissions:
                raise ServiceError("forbidden", f"this token does not allow {perm.replace('_', ' ')}")
        updated = await self._rooms.update_state(claims.room, self.sid, msg.state, msg.name)
        if updated is None:
            raise ServiceError("not_joined", "this session is no longer in the room")
        if msg.name is not None:
            self._name = msg.name
        for key, kind in (("audio_muted", "audio"), ("video_muted", "video")):
            if key in msg.state:
                muted = msg.state[key]
                await self._media_call(self._media.set_muted(claims.room, self.sid, kind, muted), "update")

    async def _mute(self, claims: JoinClaims, msg: m.MuteParticipant) -> None:
        by = claims.identity
        if not msg.muted:
            if not self._rooms.hub.send_to_identity(
                claims.room, msg.identity, {"type": "unmute_requested", "kind": msg.kind, "by": by}
            ):
                raise ServiceError("participant_not_found", f"no participant {msg.identity} in this room")
            return
        with self._audited("participant.mute", target=msg.identity, kind=msg.kind):
            target = await self._rooms.mute(claims.room, msg.identity, msg.kind, by)
        await self._media_call(self._media.set_muted(claims.room, target.sid, msg.kind, True), "mute")

    def _schedule_ice_refresh(self, delay: float) -> None:
        self._ice_refresh = asyncio.get_running_loop().call_later(delay, self._refresh_ice_servers)

    def _refresh_ice_servers(self) -> None:
        """TURN credentials are short-lived and end with the session: only a session still in the
        room gets new ones (a removed or revoked participant's relay cannot be renewed)."""
        claims = self._claims
        if self._ended or claims is None:
            return
        self.send({"type": "ice_servers", "ice_servers": self._media.ice_servers(claims.identity)})
        self._schedule_ice_refresh(ICE_REFRESH_INTERVAL)

    async def _media_call(self, call: Coroutine[Any, Any, None], ref: str) -> None:
        """Await a media call with a deadline. A call that misses it leaves this session's media in
        an unknown state: the connection is closed (``media_timeout``), which ends the session and
        frees its seat; the client reconnects with fresh media."""
        try:
            await asyncio.wait_for(call, self._limits.media_timeout)
        except TimeoutError:
            log.error("media call missed its deadline; closing the connection", extra={"sid": self.sid})
        except ServiceError as e:
            if e.code != "media_timeout":
                raise
            log.warning("the media side timed out; closing the connection", extra={"sid": self.sid})
        else:
            return
        self._metrics.ws_errors.labels("media_timeout").inc()
        self._peer.close_with(
            m.error("media_timeout", "the media service did not answer in time; reconnecting", ref),
            CloseCode.MEDIA_TIMEOUT,
        )

    # --- end ----------------------------------------------------------------------------------

    async def end(self, reason: str) -> None:
        """The connection is gone: free the seat and tell the room. Called once by the adapter.
        The media side gets a deadline; the seat is freed whatever it does."""
        if self._ended:
            return
        self._ended = True
        if self._ice_refresh is not None:
            self._ice_refresh.cancel()
        if self._after_admission is not None:
            self._after_admission.cancel()
        claims = self._claims
        if claims is None:
            if self._waiting is not None:
                self._rooms.lobby_left(self._waiting.req.room, self.sid)
            return
        try:
            await asyncio.wait_for(
                self._media.participant_left(claims.room, self.sid), self._limits.media_timeout
            )
        except TimeoutError:
            log.error("media cleanup missed its deadline", extra={"sid": self.sid, "room": claims.room})
        except Exception:
            log.exception("media cleanup failed", extra={"sid": self.sid, "room": claims.room})
        finally:
            await self._rooms.leave(claims.room, self.sid, reason)


def _ref(msg: m.ClientMessage) -> str:
    """The wire type of a message, the ``ref`` of an error answering it."""
    match msg:
        case PublishOffer() | SubscribeAnswer() | IceCandidate() | UpdateSubscription() | Unpublish():
            return msg.type
        case m.Join():
            return "join"
        case m.Ping():
            return "ping"
        case m.Leave():
            return "leave"
        case m.Chat():
            return "chat"
        case m.UpdateSelf():
            return "update"
        case m.MuteParticipant():
            return "mute"
        case m.KickParticipant():
            return "kick"
        case m.LockRoom():
            return "lock_room"
        case m.EndRoom():
            return "end_room"
        case m.Admit():
            return "admit"
        case m.Deny():
            return "deny"
        case m.E2eeIdentity():
            return "e2ee_identity"
        case m.E2eeKeys():
            return "e2ee_keys"
        case _:
            assert_never(msg)
