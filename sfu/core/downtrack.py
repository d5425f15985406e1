"""One subscriber's copy of one published track: rewrite, remember, retransmit.

``DownTrack`` glues the per-packet pieces together: the munger numbers the packet, the header is
rewritten with the subscriber's SSRC, payload type and extension ids (the part after the fixed
header is built once per source packet and id map, see ``ExtensionRemapper.tail``), the source
packet and its outgoing numbers are kept in the packet history (a reference, not a copy), and
NACKs from the subscriber are answered from that history (over RTX when negotiated) or, for
packets the history no longer has, translated into NACKs to the publisher. Sender reports of the
publisher are translated so the subscriber keeps lip sync. Which packets reach ``forward`` at
all is decided by the layer selector / audio policy. ``now`` is float seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sfu.core.actions import Drop, SendNack, SendRtp
from sfu.core.history import DEFAULT_SIZE, PacketHistory
from sfu.core.munger import Munged, RtpMunger
from sfu.core.rtcp import SenderReport
from sfu.core.rtp import ExtensionRemapper, RtpView, build_rtx, pack_fixed_header
from sfu.core.seqnum import SEQ_MASK, unwrap_near


@dataclass(frozen=True, slots=True)
class DownTrackParams:
    """What was negotiated with the subscriber for this track, plus the random starting points."""

    ssrc: int
    payload_type: int
    clock_rate: int
    first_sequence: int
    first_timestamp: int
    rtx_ssrc: int | None = None
    rtx_payload_type: int | None = None
    rtx_first_sequence: int = 0
    history_size: int = DEFAULT_SIZE


class DownTrack:
    """Forwards packets of one track to one subscriber."""

    __slots__ = (
        "_extensions",
        "_history",
        "_munger",
        "_params",
        "_pt",
        "_rtx_seq",
        "_ssrc",
        "octets_sent",
        "packets_sent",
    )

    def __init__(self, params: DownTrackParams, extensions: ExtensionRemapper | None = None) -> None:
        self._params = params
        self._ssrc = params.ssrc
        self._pt = params.payload_type & 0x7F
        self._extensions = extensions if extensions is not None else ExtensionRemapper({})
        self._munger = RtpMunger(
            params.clock_rate, first_sequence=params.first_sequence, first_timestamp=params.first_timestamp
        )
        self._history: PacketHistory[tuple[RtpView, Munged]] = PacketHistory(params.history_size)
        self._rtx_seq = (params.rtx_first_sequence - 1) & SEQ_MASK
        self.packets_sent = 0
        self.octets_sent = 0

    @property
    def params(self) -> DownTrackParams:
        return self._params

    @property
    def munger(self) -> RtpMunger:
        return self._munger

    @property
    def history(self) -> PacketHistory[tuple[RtpView, Munged]]:
        return self._history

    @property
    def extensions(self) -> ExtensionRemapper:
        return self._extensions

    def set_extensions(self, extensions: ExtensionRemapper | None) -> None:
        """Use another extension id map (the slot now carries a source negotiated differently)."""
        self._extensions = extensions if extensions is not None else ExtensionRemapper({})

    def forward(self, view: RtpView, now: float, *, switched: bool = False) -> bytes | Drop:
        """The rewritten packet to send, or why not. ``switched``: the layer selector says this
        packet starts a newly selected stream (resynchronises numbering even on the same SSRC)."""
        munger = self._munger
        if switched:
            munger.resync()
        result = munger.process(view.ssrc, view.sequence, view.timestamp, now)
        if isinstance(result, Drop):
            return result
        first, tail = self._extensions.tail(view)
        self._history.put(result.ext_sequence, (view, result), now)
        self.packets_sent += 1
        self.octets_sent += view.payload_end - view.header_length
        return (
            pack_fixed_header(
                first,
                (view.data[1] & 0x80) | self._pt,
                result.sequence,
                result.timestamp,
                self._ssrc,
            )
            + tail
        )

    def skip(self, view: RtpView) -> None:
        """``view`` is deliberately not forwarded (padding, dropped temporal layer, silence)."""
        self._munger.skip(view.ssrc, view.sequence)

    def on_nack(self, lost: Iterable[int], now: float, rtt: float | None = None) -> list[SendRtp | SendNack]:
        """Answer a subscriber's NACK of outgoing 16-bit sequence numbers ``lost``."""
        highest = self._munger.highest_sequence
        if highest is None:
            return []
        ext_seqs = [unwrap_near(s & SEQ_MASK, highest) for s in lost]
        found, missing = self._history.resend_many(ext_seqs, now, rtt)
        actions: list[SendRtp | SendNack] = [SendRtp(self._retransmission(*sent), True) for sent in found]
        upstream: dict[int, list[int]] = {}
        for ext_seq in missing:
            origin = self._munger.incoming_for(ext_seq & SEQ_MASK)
            if origin is not None:
                upstream.setdefault(origin[0], []).append(origin[1])
        actions.extend(SendNack(ssrc, tuple(seqs)) for ssrc, seqs in upstream.items())
        return actions

    def translate_sender_report(self, report: SenderReport) -> SenderReport | None:
        """The publisher's sender report as this subscriber must see it, or None if the report is
        about a stream that is not the one being forwarded."""
        timestamp = self._munger.translate_timestamp(report.ssrc, report.rtp_timestamp)
        if timestamp is None:
            return None
        return SenderReport(
            ssrc=self._params.ssrc,
            ntp_timestamp=report.ntp_timestamp,
            rtp_timestamp=timestamp,
            packet_count=self.packets_sent & 0xFFFFFFFF,
            octet_count=self.octets_sent & 0xFFFFFFFF,
        )

    def _retransmission(self, view: RtpView, munged: Munged) -> bytes:
        first, tail = self._extensions.tail(view)
        packet = (
            pack_fixed_header(
                first, (view.data[1] & 0x80) | self._pt, munged.sequence, munged.timestamp, self._ssrc
            )
            + tail
        )
        params = self._params
        if params.rtx_ssrc is None or params.rtx_payload_type is None:
            return packet
        self._rtx_seq = (self._rtx_seq + 1) & SEQ_MASK
        view = RtpView(packet)
        return build_rtx(
            view, ssrc=params.rtx_ssrc, payload_type=params.rtx_payload_type, sequence=self._rtx_seq
        )
