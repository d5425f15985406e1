"""Which published track and layer an incoming RTP packet belongs to.

A publisher's connection carries several streams over one transport (BUNDLE). The SFU routes
each packet, in this order:

1. by SSRC, once the SSRC has been learned (the fast path: one dict lookup per packet);
2. by the MID header extension (RFC 8843), then the RID / repaired-RID extensions (RFC 8852) for
   simulcast layers and their retransmission streams; the SSRC is learned from that packet
   (browsers stop sending MID/RID once the stream is acknowledged);
3. by the SSRCs the session description signalled (``a=ssrc`` / ``a=ssrc-group:FID``);
4. by payload type, when exactly one non-simulcast track of the connection uses it.

The router only names things: ``Route(track, layer, rtx)``. It never touches payloads.
At most ``max_learned`` SSRCs are learned, so a publisher cannot grow the table without bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_MAX_LEARNED = 64


@dataclass(frozen=True, slots=True)
class Route:
    """``track``: the publisher's key for the track (its MID); ``layer``: the RID, "" without
    simulcast; ``rtx``: the packet is an RFC 4588 retransmission to unwrap."""

    track: str
    layer: str
    rtx: bool


@dataclass(frozen=True, slots=True)
class TrackRouting:
    """What the session description says about one published m-line."""

    mid: str
    payload_types: frozenset[int]
    rtx_payload_types: frozenset[int] = frozenset()
    simulcast: bool = False
    ssrcs: Mapping[int, Route] | None = None  # signalled SSRCs (media and RTX)


class IncomingRouter:
    """Routes the RTP packets of one publishing connection to (track, layer)."""

    __slots__ = ("_by_mid", "_ext_mid", "_ext_rid", "_ext_rrid", "_learned", "_max_learned", "_ssrcs")

    def __init__(self, max_learned: int = DEFAULT_MAX_LEARNED) -> None:
        self._by_mid: dict[str, TrackRouting] = {}
        self._ssrcs: dict[int, Route] = {}
        self._learned = 0
        self._max_learned = max_learned
        self._ext_mid = 0
        self._ext_rid = 0
        self._ext_rrid = 0

    def configure(self, *, mid_ext: int = 0, rid_ext: int = 0, rrid_ext: int = 0) -> None:
        """Negotiated header extension ids (0: not negotiated)."""
        self._ext_mid = mid_ext
        self._ext_rid = rid_ext
        self._ext_rrid = rrid_ext

    def set_tracks(self, tracks: Iterable[TrackRouting]) -> None:
        """Replace the table of published m-lines; SSRCs learned for m-lines that remain are kept."""
        self._by_mid = {t.mid: t for t in tracks}
        kept = {ssrc: r for ssrc, r in self._ssrcs.items() if r.track in self._by_mid}
        for t in self._by_mid.values():
            if t.ssrcs:
                kept.update(t.ssrcs)
        self._ssrcs = kept
        self._learned = len(kept)

    def route(self, ssrc: int, payload_type: int, extensions: Mapping[int, bytes]) -> Route | None:
        """The route of a packet, or None when it cannot be attributed (it is dropped)."""
        found = self._ssrcs.get(ssrc)
        if found is not None:
            return found
        route = self._by_extension(payload_type, extensions)
        if route is None:
            route = self._by_payload_type(payload_type)
            if route is None:
                return None
        if self._learned < self._max_learned:
            self._ssrcs[ssrc] = route
            self._learned += 1
        return route

    def _by_extension(self, payload_type: int, extensions: Mapping[int, bytes]) -> Route | None:
        if not extensions or not self._ext_mid:
            return None
        mid = extensions.get(self._ext_mid)
        if mid is None:
            return None
        track = self._by_mid.get(_text(mid))
        if track is None:
            return None
        if track.simulcast:
            rrid = extensions.get(self._ext_rrid) if self._ext_rrid else None
            if rrid:
                return Route(track.mid, _text(rrid), True)
            rid = extensions.get(self._ext_rid) if self._ext_rid else None
            if not rid:
                return None  # a simulcast stream must name its layer before it can be learned
            return Route(track.mid, _text(rid), payload_type in track.rtx_payload_types)
        return Route(track.mid, "", payload_type in track.rtx_payload_types)

    def _by_payload_type(self, payload_type: int) -> Route | None:
        match: TrackRouting | None = None
        for track in self._by_mid.values():
            if payload_type in track.payload_types or payload_type in track.rtx_payload_types:
                if match is not None or track.simulcast:
                    return None
                match = track
        if match is None:
            return None
        return Route(match.mid, "", payload_type in match.rtx_payload_types)


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")
