"""One subscriber's subscription to one video track.

The ``LayerSelector`` picks the simulcast layer from the subscriber's tile size, its bandwidth
estimate (REMB) and which layers are alive (the track's shared ``LayerLiveness``), and switches
only on keyframes. While a keyframe is awaited the publisher is asked for one (throttled per
source by the publisher's ``KeyframeRequester``, re-sent until it arrives). The time spent
waiting is measured.

The track shows a forwarder only the packets of the layers its selector listens to (the one
forwarded and the one awaited): every change of the selector's state goes through this class,
which keeps the track's index (``UpTrack.listen``) in step. A forwarder in the steady state (the
selected layer flows, no switch pending, on the stream it switched to) is indexed by its slot
alone: the track forwards those packets into the slot without asking the forwarder.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import Histogram

from sfu.core.actions import DropReason
from sfu.core.rtp import RtpView
from sfu.core.simulcast import FORWARD, LayerDecision, LayerLimits, LayerSelector

if TYPE_CHECKING:
    from sfu.slot import Slot
    from sfu.uptrack import UpTrack


class Listening(NamedTuple):
    """What a forwarder takes from its track: packets of ``deciding`` layers through
    ``on_packet``, packets of the ``direct`` layer straight into ``slot``."""

    deciding: tuple[str, ...]
    direct: str | None
    slot: Slot | None


_NOT_LISTENING = Listening((), None, None)


class VideoForwarder:
    __slots__ = (
        "_index",
        "_shed",
        "_ssrc",
        "_wait_metric",
        "limits",
        "selector",
        "slot",
        "subscriber",
        "track",
        "waiting_since",
    )

    def __init__(
        self,
        track: UpTrack,
        subscriber: str,
        limits: LayerLimits,
        now: float,
        wait_metric: Histogram,
        shed: int = 0,
    ) -> None:
        self.track = track
        self.subscriber = subscriber
        self.slot: Slot | None = None
        self.limits = limits  # as the subscriber asked
        self._shed = shed  # layers below the top the server holds it to (load shedding)
        self.selector = LayerSelector(liveness=track.liveness)
        self.selector.set_layers(track.layer_infos(), now)
        self.selector.set_limits(replace(limits, shed=shed), now)
        self.waiting_since: float | None = now
        self._ssrc: int | None = None
        self._wait_metric = wait_metric
        self._index: Listening = _NOT_LISTENING

    def _reindex(self) -> None:
        """Tell the track which layers' packets this forwarder needs now: the layer that flows
        with no switch pending goes straight into the slot (no decision needed), the others
        (awaited, or a stream other than the one switched to) come to ``on_packet``."""
        selector, slot = self.selector, self.slot
        if slot is None:
            index = _NOT_LISTENING
        else:
            current = selector.current
            steady = current == selector.target and self._ssrc is not None
            direct = current if steady and self._ssrc == self.track.ssrc_of(current) else None
            index = Listening(tuple(rid for rid in selector.listening if rid != direct), direct, slot)
        if index != self._index:
            self.track.listen(self, self._index, index)
            self._index = index

    def attach(self, slot: Slot, now: float) -> None:
        """Start forwarding into ``slot`` (negotiated); the first packet must be a keyframe."""
        self.slot = slot
        slot.forwarder = self
        slot.bind(self.track)
        self.track.add_forwarder(self)
        self.restart(now)
        self.track.request_keyframe(self.selector.target, now)

    def detach(self) -> None:
        self.track.remove_forwarder(self)
        slot = self.slot
        if slot is not None and slot.forwarder is self:
            slot.unbind()
        self.slot = None
        self._reindex()

    def restart(self, now: float) -> None:
        """Wait for a keyframe again (attach, unmute, publisher stream restarted)."""
        self.selector.restart(now)
        self.waiting_since = now
        self._ssrc = None
        self._reindex()

    def update(self, now: float) -> None:
        """Re-evaluate the layer (timer, or the track's layers came or went)."""
        self.selector.update(now)
        self._reindex()

    def set_limits(self, limits: LayerLimits, now: float) -> None:
        was_paused = self.limits.paused
        self.limits = limits
        self.selector.set_limits(replace(limits, shed=self._shed), now)
        self._reindex()
        if was_paused and not limits.paused:
            self.restart(now)
            self.track.request_keyframe(self.selector.target, now)

    def shed(self, layers: int, now: float) -> None:
        """Hold this subscription ``layers`` below the track's top layer (0: as asked)."""
        if layers != self._shed:
            self._shed = layers
            self.selector.set_limits(replace(self.limits, shed=layers), now)
            self._reindex()

    def on_packet(self, view: RtpView, rid: str, is_key: bool, now: float) -> None:
        """A packet of a layer this forwarder decides on (the steady layer goes straight into
        the slot, see ``_reindex``)."""
        slot = self.slot
        if slot is None:
            return
        decision = self.selector.on_packet(rid, is_key, now)
        if decision is FORWARD and view.ssrc == self._ssrc:
            slot.forward(view, now)
            return
        self._decided(decision, slot, view, rid, now)
        self._reindex()

    def _decided(self, decision: LayerDecision, slot: Slot, view: RtpView, rid: str, now: float) -> None:
        if decision.forward:
            if decision.switched:
                if self.waiting_since is not None:
                    self._wait_metric.observe(now - self.waiting_since)
                    self.waiting_since = None
                self._ssrc = view.ssrc
            elif view.ssrc != self._ssrc:
                # the same layer restarted under a new SSRC: wait for its keyframe
                self.restart(now)
                slot.counters.drop(DropReason.WAITING_FOR_KEYFRAME)
                self.track.request_keyframe(rid, now)
                return
            slot.forward(view, now, switched=decision.switched)
        else:
            slot.counters.drop(decision.reason or DropReason.LAYER_NOT_SELECTED)
            if decision.reason is DropReason.WAITING_FOR_KEYFRAME and self.waiting_since is None:
                self.waiting_since = now
        if decision.request_keyframe:
            self.track.request_keyframe(self.selector.target, now)

    def skip(self, view: RtpView, rid: str) -> None:
        """A padding-only packet of ``rid``: close its sequence gap if it is the forwarded layer."""
        slot = self.slot
        if slot is not None and rid == self.selector.current and view.ssrc == self._ssrc:
            slot.skip(view)

    def stream_changed(self) -> None:
        """A layer of the track started a new stream (SSRC): packets of the steady layer need a
        decision again (a new stream waits for its keyframe)."""
        self._reindex()

    def on_bitrate(self, bitrate: int | None, now: float) -> None:
        self.selector.set_available_bitrate(bitrate, now)
        self._reindex()

    def refresh_layers(self, now: float) -> None:
        self.selector.set_layers(self.track.layer_infos(), now)
        self._reindex()
