"""What a synthetic participant needs of the browser's key manager and transform worker
(web/e2ee/keymanager.js, cryptor.js), in one synchronous object on an injected clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .wire import (
    MAX_STEP,
    SECRET_LENGTH,
    Identity,
    Party,
    SFrameKey,
    encrypt_frame,
    from_b64url,
    import_public_key,
    make_kid,
    open_key_blob,
    ratchet_secret,
    read_encrypted_frame,
    seal_key_blob,
    split_kid,
)

KEYS_PER_MESSAGE = 100


@dataclass(frozen=True)
class Timing:
    """The browser's schedule (keymanager.js DEFAULT_OPTIONS), in seconds."""

    join_coalesce: float = 0.25
    leave_quiet: float = 0.4
    leave_max_delay: float = 1.5
    activate_delay: float = 0.5
    retire_after: float = 4.0
    max_peers: int = 128
    max_keys_per_sender: int = 4
    max_ratchet_ahead: int = 64
    max_steps_per_epoch: int = 32


@dataclass
class _Peer:
    identity: str
    key: str
    send_key: AESGCM
    receive_key: AESGCM


@dataclass
class _SendKey:
    epoch: int
    step: int
    secret: bytes
    kid: int = field(init=False)
    sframe: SFrameKey = field(init=False)

    def __post_init__(self) -> None:
        self.kid = make_kid(self.epoch, self.step)
        self.sframe = SFrameKey.derive(self.secret, self.kid)


@dataclass
class _ReceiveKey:
    secret: bytes
    sframe: SFrameKey
    retire_at: float | None = None
    used: bool = False


class E2eeParticipant:
    """A synthetic participant's E2EE state: the key manager and frame cryptor of the browser in one,
    synchronous, on an injected clock.

    Feed it the signaling events (:meth:`on_participants`, :meth:`on_identity`, :meth:`on_leave`,
    :meth:`on_key_message`) and call :meth:`tick` every few hundred milliseconds; each returns the
    ``e2ee_keys`` messages to send. :meth:`encrypt` and :meth:`decrypt` work on encoded frames.
    """

    def __init__(
        self,
        sid: str,
        identity: str,
        *,
        clock: Callable[[], float],
        keys: Identity | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.sid = sid
        self.identity = identity
        self.keys = keys or Identity()
        self.clock = clock
        self.timing = timing or Timing()
        self.peers: dict[str, _Peer] = {}
        self.pending: dict[str, list[str]] = {}
        epoch = 1 + (int.from_bytes(os.urandom(4), "big") & 0xFFFFFF)
        self.send = _SendKey(epoch, 0, os.urandom(SECRET_LENGTH))
        self.counter = 0
        self.next: _SendKey | None = None
        self.activate_at = 0.0
        self.newcomers: set[str] = set()
        self.ratchet_at: float | None = None
        self.last_ratchet = float("-inf")
        self.leaves: tuple[float, float] | None = None
        self.receive: dict[str, dict[int, _ReceiveKey]] = {}
        self.removals: list[tuple[str, float]] = []
        self.rotations = 0
        self.ratchets = 0

    @property
    def public_key(self) -> str:
        return self.keys.public_key

    # -- signaling in, e2ee_keys messages out --

    def on_participants(self, listing: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
        listed: set[str] = set()
        for entry in listing:
            sid, identity, key = entry.get("sid"), entry.get("identity"), entry.get("key")
            if isinstance(sid, str) and isinstance(key, str):
                listed.add(sid)
                self._learn(sid, str(identity or ""), key)
        for sid in [s for s in self.peers if s not in listed]:
            self.on_leave(sid)
        return self.tick()

    def on_identity(self, sid: str, identity: str, key: str) -> list[dict[str, object]]:
        self._learn(sid, identity, key)
        return self.tick()

    def _learn(self, sid: str, identity: str, key: str) -> None:
        if sid == self.sid:
            return
        known = self.peers.get(sid)
        if known is not None and known.key == key:
            return
        if known is not None:
            self.on_leave(sid)
            self.receive.pop(sid, None)
        public = import_public_key(key)
        if public is None or len(self.peers) >= self.timing.max_peers:
            return
        me = Party(self.sid, self.identity, self.keys.public_raw)
        them = Party(sid, identity, from_b64url(key) or b"")
        self.peers[sid] = _Peer(identity, key, *self.keys.pair_keys(public, me, them))
        self.removals = [r for r in self.removals if r[0] != sid]
        for data in self.pending.pop(sid, []):
            self.on_key_message(sid, data)
        self.newcomers.add(sid)
        now = self.clock()
        if self.ratchet_at is None:
            self.ratchet_at = max(now, self.last_ratchet + self.timing.join_coalesce)

    def on_leave(self, sid: str) -> None:
        if self.peers.pop(sid, None) is None:
            return
        self.newcomers.discard(sid)
        now = self.clock()
        self.removals.append((sid, now + self.timing.retire_after))
        self.leaves = (self.leaves[0] if self.leaves else now, now)

    def on_key_message(self, sender: str, data: str) -> bool:
        """Installs a sender's key; False when the blob does not open (kept if the key is unknown)."""
        peer = self.peers.get(sender)
        if peer is None:
            queue = self.pending.setdefault(sender, [])
            if len(self.pending) <= self.timing.max_peers and len(queue) < 4:
                queue.append(data)
            return False
        opened = open_key_blob(peer.receive_key, data)
        if opened is None:
            return False
        kid, secret = opened
        ring = self.receive.setdefault(sender, {})
        if kid not in ring:
            ring[kid] = _ReceiveKey(secret, SFrameKey.derive(secret, kid))
            self._prune(ring)
        return ring[kid].secret == secret

    def tick(self) -> list[dict[str, object]]:
        now = self.clock()
        out: list[dict[str, object]] = []
        if self.leaves is not None and now >= min(
            self.leaves[1] + self.timing.leave_quiet, self.leaves[0] + self.timing.leave_max_delay
        ):
            out += self._rotate(now)
        if self.ratchet_at is not None and now >= self.ratchet_at:
            out += self._ratchet(now)
        if self.next is not None and now >= self.activate_at:
            self.send, self.next, self.counter = self.next, None, 0
        for sid, at in [r for r in self.removals if r[1] <= now]:
            self.removals.remove((sid, at))
            if sid not in self.peers:
                self.receive.pop(sid, None)
        return out

    def _ratchet(self, now: float) -> list[dict[str, object]]:
        self.ratchet_at = None
        targets = [s for s in self.newcomers if s in self.peers]
        self.newcomers.clear()
        if not targets or self.leaves is not None:
            return []
        if self.next is None:
            if self.send.step >= min(MAX_STEP, self.timing.max_steps_per_epoch):
                return self._rotate(now)
            self.send = _SendKey(self.send.epoch, self.send.step + 1, ratchet_secret(self.send.secret))
            self.counter = 0
            self.last_ratchet = now
            self.ratchets += 1
        return self._seal(targets, self.next or self.send)

    def _rotate(self, now: float) -> list[dict[str, object]]:
        self.leaves = None
        self.newcomers.clear()
        self.ratchet_at = None
        base = self.next or self.send
        self.next = _SendKey(base.epoch + 1, 0, os.urandom(SECRET_LENGTH))
        self.activate_at = now + self.timing.activate_delay
        self.rotations += 1
        return self._seal(list(self.peers), self.next)

    def _seal(self, sids: list[str], key: _SendKey) -> list[dict[str, object]]:
        entries = [
            {"to": sid, "data": seal_key_blob(self.peers[sid].send_key, key.kid, key.secret)}
            for sid in sids
            if sid in self.peers
        ]
        return [
            {"type": "e2ee_keys", "keys": entries[i : i + KEYS_PER_MESSAGE]}
            for i in range(0, len(entries), KEYS_PER_MESSAGE)
        ]

    # -- frames --

    def encrypt(self, codec: str, frame: bytes) -> bytes | None:
        """The encrypted frame, or None when it must be dropped (codec refused, frame too short)."""
        if not frame:
            return frame
        sealed = encrypt_frame(codec, frame, self.send.sframe, self.counter)
        self.counter += 1
        return None if isinstance(sealed, str) else sealed

    def decrypt(self, sender: str, codec: str, frame: bytes) -> tuple[str, bytes]:
        """``("ok", frame)`` or ``("missing_key" | "bad_frame" | "unsupported_codec", b"")``."""
        read = read_encrypted_frame(codec, frame)
        if isinstance(read, str):
            return read, b""
        ring = self.receive.get(sender, {})
        now = self.clock()
        self._prune(ring)
        known = ring.get(read.kid)
        if known is not None:
            plain = read.open(known.sframe)
            if plain is None:
                return "bad_frame", b""
            self._used(ring, read.kid, now)
            return "ok", plain
        derived = self._ratchet_to(ring, read.kid)
        if derived is None:
            return "missing_key", b""
        plain = read.open(derived.sframe)
        if plain is None:
            return "bad_frame", b""
        ring[read.kid] = derived
        self._used(ring, read.kid, now)
        return "ok", plain

    def _ratchet_to(self, ring: dict[int, _ReceiveKey], kid: int) -> _ReceiveKey | None:
        target = split_kid(kid)
        if target is None:
            return None
        epoch, step_wanted = target
        ahead = self.timing.max_ratchet_ahead
        bases = [
            (k & 0xFF, key)
            for k, key in ring.items()
            if k >> 8 == epoch and k & 0xFF < step_wanted and step_wanted - (k & 0xFF) <= ahead
        ]
        if not bases:
            return None
        step, base = max(bases, key=lambda item: item[0])
        secret = base.secret
        for _ in range(step_wanted - step):
            secret = ratchet_secret(secret)
        return _ReceiveKey(secret, SFrameKey.derive(secret, kid))

    def _used(self, ring: dict[int, _ReceiveKey], kid: int, now: float) -> None:
        ring[kid].used = True
        for other, key in ring.items():
            if other < kid and key.retire_at is None:
                key.retire_at = now + self.timing.retire_after
        self._prune(ring)

    def _prune(self, ring: dict[int, _ReceiveKey]) -> None:
        now = self.clock()
        for kid in [k for k, key in ring.items() if key.retire_at is not None and key.retire_at <= now]:
            del ring[kid]
        newest_used = max((k for k, key in ring.items() if key.used), default=None)
        oldest_first = sorted(k for k in ring if k != newest_used)
        for kid in oldest_first[: max(0, len(ring) - self.timing.max_keys_per_sender)]:
            del ring[kid]

    def stats(self) -> dict[str, int]:
        return {
            "peers": len(self.peers),
            "senders": len(self.receive),
            "keys": sum(len(r) for r in self.receive.values()),
            "rotations": self.rotations,
            "ratchets": self.ratchets,
            "send_kid": self.send.kid,
        }
