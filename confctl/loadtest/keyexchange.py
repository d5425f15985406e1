"""End-to-end encryption for synthetic participants, as the browser client does it (docs/E2EE.md):

- ``KeyExchange`` drives an ``E2eeParticipant`` from signaling messages: it announces the
  identity key after ``joined``, learns the others' keys (``joined.participants``,
  ``e2ee_identity``, ``participant_updated``), forgets leavers (``participant_left``), installs
  ``e2ee_key`` blobs, and runs the key schedule on its own timer, sending each ``e2ee_keys``
  message it produces. It notes when every key was made and first held (the rotation benchmark
  reads these) and counts what it sent and received.
- ``KeyExchange.encrypt`` is what crafted publishers call on each encoded frame before they
  packetize it (codec-aware clear prefix); ``decrypt_before_decoding`` puts the decryption in
  front of aiortc's decoder thread, so a decoding subscriber decodes plaintext (frames that do
  not open are dropped, as the browser's worker drops them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiortc import RTCPeerConnection

from confctl.loadtest.e2ee import E2eeParticipant, Timing

log = logging.getLogger("confctl.loadtest")

Send = Callable[[dict[str, Any]], Awaitable[None]]
IDLE_WAKE = 5.0  # seconds between ticks when nothing is scheduled


class KeyExchange:
    """One participant's part in an E2EE room's key exchange; ``handle`` every server message."""

    def __init__(
        self,
        sid: str,
        identity: str,
        send: Send,
        *,
        clock: Callable[[], float] = time.monotonic,
        timing: Timing | None = None,
    ) -> None:
        self.state = E2eeParticipant(sid, identity, clock=clock, timing=timing)
        self.clock = clock
        self._send = send
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.made: list[tuple[float, str, int]] = []  # (when, "rotation" | "ratchet", KID)
        self.held: dict[tuple[str, int], float] = {}  # (sender, KID) -> when first held
        self.counts: Counter[str] = Counter()
        self._hints: dict[object, str] = {}  # stream -> the sender whose key last opened it

    @property
    def sid(self) -> str:
        return self.state.sid

    # -- signaling ---------------------------------------------------------------------------------

    async def start(self, joined: Mapping[str, Any]) -> None:
        """After ``joined``: announce the identity key, learn the others', start the schedule."""
        await self._emit([{"type": "e2ee_identity", "key": self.state.public_key}])
        listing = [_entry(p) for p in joined.get("participants") or [] if isinstance(p, dict)]
        await self._emit(self._noting(lambda: self.state.on_participants(listing)))
        self._task = asyncio.create_task(self._run(), name=f"e2ee-{self.sid}")

    async def handle(self, msg: Mapping[str, Any]) -> None:
        """One server message (anything not about keys is ignored)."""
        kind = msg.get("type")
        if kind == "e2ee_key":
            sender, data = msg.get("from"), msg.get("data")
            if isinstance(sender, str) and isinstance(data, str):
                self.counts["key_messages_in"] += 1
                opened = self._noting(lambda: self.state.on_key_message(sender, data))
                if not opened and sender in self.state.peers:
                    self.counts["key_messages_refused"] += 1
        elif kind == "e2ee_identity":
            entry = _entry(msg)
            if entry["sid"] and entry["key"]:
                await self._emit(self._noting(lambda: self.state.on_identity(*_triple(entry))))
        elif kind == "participant_updated":
            entry = _entry(msg.get("participant") or {})
            if entry["sid"] and entry["key"]:
                await self._emit(self._noting(lambda: self.state.on_identity(*_triple(entry))))
        elif kind == "participant_left":
            sid = msg.get("sid")
            if isinstance(sid, str):
                self.state.on_leave(sid)
        elif kind == "error" and msg.get("code") in ("participant_not_found", "rate_limited", "e2ee_off"):
            self.counts[f"error_{msg.get('code')}"] += 1
        else:
            return
        self._wake.set()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def next_deadline(self) -> float | None:
        """When the schedule next has something to do (the participant's clock), or None."""
        s, t = self.state, self.state.timing
        times = [at for _sid, at in s.removals]
        if s.leaves is not None:
            times.append(min(s.leaves[1] + t.leave_quiet, s.leaves[0] + t.leave_max_delay))
        if s.ratchet_at is not None:
            times.append(s.ratchet_at)
        if s.next is not None:
            times.append(s.activate_at)
        return min(times, default=None)

    async def _run(self) -> None:
        try:
            while True:
                await self._emit(self._noting(self.state.tick))
                deadline = self.next_deadline()
                wait = IDLE_WAKE if deadline is None else max(0.0, deadline - self.clock())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, IDLE_WAKE) + 0.001)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing send ends the schedule, not the participant
            log.exception("key schedule of %s stopped", self.sid)

    def _noting(self, call: Callable[[], Any]) -> Any:
        """Run a state call; note the keys it made and the keys it installed, and when."""
        s = self.state
        rotations, ratchets = s.rotations, s.ratchets
        before = {sender: set(ring) for sender, ring in s.receive.items()}
        result = call()
        now = self.clock()
        if s.rotations != rotations and s.next is not None:
            self.made.append((now, "rotation", s.next.kid))
        elif s.ratchets != ratchets:
            self.made.append((now, "ratchet", s.send.kid))
        for sender, ring in s.receive.items():
            for kid in ring.keys() - before.get(sender, set()):
                self.held.setdefault((sender, kid), now)
        return result

    async def _emit(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message.get("type") == "e2ee_keys":
                self.counts["key_frames_out"] += 1
                self.counts["key_blobs_out"] += len(message.get("keys") or [])
            await self._send(message)

    # -- frames ------------------------------------------------------------------------------------

    def encrypt(self, codec: str, frame: bytes) -> bytes | None:
        """``frame`` encrypted with the current send key; None: drop it (never sent in clear)."""
        sealed = self.state.encrypt(codec, frame)
        self.counts["frames_encrypted" if sealed is not None else "frames_dropped"] += 1
        return sealed

    def decrypt(self, codec: str, frame: bytes, stream: object = None) -> bytes | None:
        """The plaintext of a received frame, or None. Audio slots carry whichever speaker is
        loudest, so the sender is found by trying first the one that opened ``stream`` last."""
        hint = self._hints.get(stream)
        senders = list(self.state.receive)
        if hint in self.state.receive:
            senders.remove(hint)
            senders.insert(0, hint)
        status = "missing_key"
        for sender in senders:
            status, plain = self.state.decrypt(sender, codec, frame)
            if status == "ok":
                self._hints[stream] = sender
                self.counts["frames_decrypted"] += 1
                return plain
            if status not in ("missing_key", "bad_frame"):
                break
        self.counts[f"frames_{status}"] += 1
        return None


def _entry(p: Mapping[str, Any]) -> dict[str, str]:
    """A Participant (``e2ee_key``) or an ``e2ee_identity`` message (``key``) as sid/identity/key."""
    key = p.get("e2ee_key", p.get("key"))
    return {
        "sid": str(p.get("sid") or ""),
        "identity": str(p.get("identity") or ""),
        "key": key if isinstance(key, str) else "",
    }


def _triple(entry: dict[str, str]) -> tuple[str, str, str]:
    return entry["sid"], entry["identity"], entry["key"]


def message_size(message: Mapping[str, Any]) -> int:
    """Bytes of a message as the signaling client sends it."""
    return len(json.dumps(message).encode())


class _DecryptingQueue:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue: frames are decrypted on their way in
    (on the event loop, where the receiver puts them); those that do not open never reach the
    decoder."""

    def __init__(self, inner: queue.Queue[Any], keys: KeyExchange) -> None:
        self._inner = inner
        self._keys = keys

    def put(self, item: Any) -> None:
        if item is not None:
            codec, frame = item
            plain = self._keys.decrypt(str(codec.name).lower(), bytes(frame.data), self)
            if plain is None:
                return
            frame.data = plain
        self._inner.put(item)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.get(*args, **kwargs)


_QUEUE_ATTRIBUTE = "_RTCRtpReceiver__decoder_queue"  # aiortc 1.16: the queue its decoder thread reads


def decrypt_before_decoding(pc: RTCPeerConnection, keys: KeyExchange) -> None:
    """Decrypt every frame ``pc``'s receivers hand to their decoders. Call after each
    ``setRemoteDescription``, before ``setLocalDescription`` (the decoder threads start when the
    connection does, and take the queue then). Idempotent."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        inner = receiver.__dict__.get(_QUEUE_ATTRIBUTE)
        if isinstance(inner, queue.Queue):
            setattr(receiver, _QUEUE_ATTRIBUTE, _DecryptingQueue(inner, keys))
