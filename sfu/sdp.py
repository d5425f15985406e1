"""Reading session descriptions, and completing answers for simulcast.

``parse_sdp`` reads what the forwarder needs from an offer or an answer (m-lines, MIDs,
codecs, header extension ids, RIDs, SSRCs, ICE credentials) and refuses malformed input with
``SdpError`` before the WebRTC stack sees it. ``complete_simulcast_answer`` adds the
``a=rid``/``a=simulcast`` lines and the RID header extensions that aiortc leaves out, so a
browser sends all its simulcast layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MAX_SDP_CHARS = 65536
MAX_LINES = 4000
MAX_MEDIA = 64
MAX_RIDS = 4
KINDS = frozenset({"audio", "video", "application"})
DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
URI_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"

FORWARDED_EXTENSIONS = frozenset({URI_AUDIO_LEVEL, URI_ABS_SEND_TIME, URI_VIDEO_ORIENTATION, URI_TOFFSET})
"""Extensions copied from publisher to subscriber; MID and RIDs are the publisher's own names."""

_EMPTY: Mapping[str, int] = MappingProxyType({})


class SdpError(ValueError):
    """The session description is malformed or lacks something required; says what."""


@dataclass(frozen=True, slots=True)
class Codec:
    payload_type: int
    name: str  # as in a=rtpmap, e.g. "VP8", "opus", "rtx"
    clock_rate: int
    channels: int | None = None
    fmtp: str = ""
    apt: int | None = None  # for rtx: the payload type it repairs

    @property
    def is_rtx(self) -> bool:
        return self.name.lower() == "rtx"

    def fmtp_params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.fmtp.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep:
                out[key.strip().lower()] = value.strip()
        return out


@dataclass(frozen=True, slots=True)
class MediaSection:
    index: int
    kind: str
    mid: str
    direction: str
    port: int
    codecs: tuple[Codec, ...]
    extensions: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # uri -> id
    rids: tuple[str, ...] = ()  # RIDs this side sends, in a=simulcast order
    ssrcs: tuple[int, ...] = ()
    fid_groups: tuple[tuple[int, int], ...] = ()  # (media ssrc, rtx ssrc)
    ice_ufrag: str = ""
    ice_pwd: str = ""

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")

    def codec(self, payload_type: int) -> Codec | None:
        return next((c for c in self.codecs if c.payload_type == payload_type), None)

    def media_codecs(self) -> tuple[Codec, ...]:
        return tuple(c for c in self.codecs if not c.is_rtx)

    def rtx_for(self, payload_type: int) -> Codec | None:
        return next((c for c in self.codecs if c.is_rtx and c.apt == payload_type), None)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    media: tuple[MediaSection, ...]
    ice_ufrag: str = ""
    bundle: tuple[str, ...] = field(default=())

    def section(self, mid: str) -> MediaSection | None:
        return next((m for m in self.media if m.mid == mid), None)

    def ice_ufrags(self) -> frozenset[str]:
        return frozenset(m.ice_ufrag or self.ice_ufrag for m in self.media)


def _int(text: str, what: str, lo: int = 0, hi: int = 0xFFFFFFFF) -> int:
    if not text.isdigit() or len(text) > 10:
        raise SdpError(f"{what} is not a number: {text[:20]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise SdpError(f"{what} out of range: {value}")
    return value


class _Section:
    """Mutable accumulator while parsing one m-line."""

    def __init__(self, index: int, kind: str, port: int, pts: list[int]) -> None:
        self.index = index
        self.kind = kind
        self.port = port
        self.pts = pts
        self.mid = ""
        self.direction = "sendrecv"
        self.rtpmap: dict[int, tuple[str, int, int | None]] = {}
        self.fmtp: dict[int, str] = {}
        self.extensions: dict[str, int] = {}
        self.rids: list[str] = []
        self.simulcast: list[str] = []
        self.ssrcs: list[int] = []
        self.fid: list[tuple[int, int]] = []
        self.ufrag = ""
        self.pwd = ""

    def attribute(self, name: str, value: str) -> None:
        if name == "mid":
            self.mid = value.strip()
        elif name in DIRECTIONS and not value:
            self.direction = name
        elif name == "rtpmap":
            pt_text, _, enc = value.partition(" ")
            pt = _int(pt_text, "rtpmap payload type", 0, 127)
            parts = enc.strip().split("/")
            if len(parts) < 2 or not parts[0]:
                raise SdpError(f"bad rtpmap: {value[:60]!r}")
            channels = _int(parts[2], "channel count", 1, 255) if len(parts) > 2 else None
            self.rtpmap[pt] = (parts[0], _int(parts[1], "clock rate", 1, 10_000_000), channels)
        elif name == "fmtp":
            pt_text, _, params = value.partition(" ")
            self.fmtp[_int(pt_text, "fmtp payload type", 0, 127)] = params.strip()
        elif name == "extmap":
            id_text, _, uri = value.partition(" ")
            ext_id = _int(id_text.split("/")[0], "extmap id", 1, 255)
            self.extensions[uri.strip().split(" ")[0]] = ext_id
        elif name == "rid":
            rid, _, rest = value.partition(" ")
            if rest.split(" ")[0] == "send" and len(self.rids) < MAX_RIDS:
                self.rids.append(rid)
        elif name == "simulcast":
            direction, _, streams = value.partition(" ")
            if direction == "send":
                for alt in streams.strip().split(";"):
                    first = alt.split(",")[0].lstrip("~")
                    if first:
                        self.simulcast.append(first)
        elif name == "ssrc":
            ssrc = _int(value.split(" ")[0], "ssrc")
            if ssrc not in self.ssrcs:
                self.ssrcs.append(ssrc)
        elif name == "ssrc-group":
            parts = value.split()
            if parts and parts[0] == "FID" and len(parts) == 3:
                self.fid.append((_int(parts[1], "ssrc"), _int(parts[2], "ssrc")))
        elif name == "ice-ufrag":
            self.ufrag = value.strip()
        elif name == "ice-pwd":
            self.pwd = value.strip()

    def build(self, session_ufrag: str, session_pwd: str) -> MediaSection:
        if not self.mid:
            raise SdpError(f"m-line {self.index} has no a=mid")
        codecs: list[Codec] = []
        if self.kind != "application":
            for pt in self.pts:
                known = self.rtpmap.get(pt)
                if known is None:
                    continue  # static payload types without rtpmap are not used by WebRTC clients
                name, clock, channels = known
                fmtp = self.fmtp.get(pt, "")
                apt = None
                if name.lower() == "rtx":
                    apt_text = Codec(pt, name, clock, None, fmtp).fmtp_params().get("apt", "")
                    apt = _int(apt_text, "rtx apt", 0, 127) if apt_text else None
                codecs.append(Codec(pt, name, clock, channels, fmtp, apt))
        rids: tuple[str, ...] = ()
        if self.rids:
            order = [r for r in self.simulcast if r in self.rids] or self.rids
            rids = tuple(order)
        return MediaSection(
            index=self.index,
            kind=self.kind,
            mid=self.mid,
            direction=self.direction,
            port=self.port,
            codecs=tuple(codecs),
            extensions=MappingProxyType(dict(self.extensions)),
            rids=rids,
            ssrcs=tuple(self.ssrcs),
            fid_groups=tuple(self.fid),
            ice_ufrag=self.ufrag or session_ufrag,
            ice_pwd=self.pwd or session_pwd,
        )


def parse_sdp(text: object) -> SessionInfo:
    """Read a session description; raises ``SdpError`` with a readable reason."""
    if not isinstance(text, str):
        raise SdpError("sdp must be a string")
    if len(text) > MAX_SDP_CHARS:
        raise SdpError(f"sdp is longer than {MAX_SDP_CHARS} characters")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line]
    if len(lines) > MAX_LINES:
        raise SdpError("sdp has too many lines")
    if not lines or lines[0] != "v=0":
        raise SdpError("sdp must start with v=0")
    sections: list[_Section] = []
    session_ufrag = session_pwd = ""
    bundle: tuple[str, ...] = ()
    has_origin = False
    fingerprint = False
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"not an sdp line: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "o":
            has_origin = True
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4 or parts[0] not in KINDS:
                raise SdpError(f"bad m-line: {line[:60]!r}")
            if len(sections) >= MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} m-lines")
            port = _int(parts[1].split("/")[0], "m-line port", 0, 65535)
            pts = [_int(p, "payload type", 0, 127) for p in parts[3:]] if parts[0] != "application" else []
            sections.append(_Section(len(sections), parts[0], port, pts))
        elif kind == "a":
            name, _, attr = value.partition(":")
            if name == "fingerprint":
                fingerprint = True
            if sections:
                sections[-1].attribute(name, attr)
            elif name == "ice-ufrag":
                session_ufrag = attr.strip()
            elif name == "ice-pwd":
                session_pwd = attr.strip()
            elif name == "group" and attr.startswith("BUNDLE"):
                bundle = tuple(attr.split()[1:])
    if not has_origin:
        raise SdpError("sdp has no o= line")
    if not sections:
        raise SdpError("sdp has no m-line")
    if not fingerprint:
        raise SdpError("sdp has no DTLS fingerprint")
    media = tuple(s.build(session_ufrag, session_pwd) for s in sections)
    mids = [m.mid for m in media]
    if len(set(mids)) != len(mids):
        raise SdpError("two m-lines have the same mid")
    for m in media:
        if not m.ice_ufrag or not m.ice_pwd:
            raise SdpError(f"m-line {m.mid} has no ICE credentials")
        if m.kind != "application" and m.port != 0 and not m.media_codecs():
            raise SdpError(f"m-line {m.mid} offers no codec")
    return SessionInfo(media=media, ice_ufrag=session_ufrag, bundle=bundle)


def complete_simulcast_answer(answer: str, offer: SessionInfo) -> str:
    """``answer`` with, for every simulcast m-line of ``offer``, the RID extensions, one
    ``a=rid:<rid> recv`` per layer and ``a=simulcast:recv`` in the offer's order."""
    wanted = {m.mid: m for m in offer.media if m.rids}
    if not wanted:
        return answer
    newline = "\r\n" if "\r\n" in answer else "\n"
    out: list[str] = []
    current: MediaSection | None = None
    present: set[str] = set()

    def close_section() -> None:
        if current is None:
            return
        for uri in (URI_RID, URI_RRID):
            ext_id = current.extensions.get(uri)
            if ext_id is not None and uri not in present:
                out.append(f"a=extmap:{ext_id} {uri}")
        out.extend(f"a=rid:{rid} recv" for rid in current.rids)
        out.append("a=simulcast:recv " + ";".join(current.rids))

    for line in answer.split(newline):
        if line.startswith("m="):
            close_section()
            current = None
            present = set()
        elif line.startswith("a=mid:"):
            current = wanted.get(line[6:].strip())
        elif line.startswith("a=extmap:"):
            present.add(line.partition(" ")[2].strip())
        elif line.startswith(("a=rid:", "a=simulcast:")):
            continue
        if line:
            out.append(line)
    close_section()
    return newline.join(out) + newline


def section_for_rid_check(section: MediaSection) -> None:
    """A simulcast m-line must negotiate the RID extension, or its layers cannot be told apart."""
    if section.rids and URI_RID not in section.extensions:
        raise SdpError(f"m-line {section.mid} uses simulcast without the rtp-stream-id extension")


FORWARD_ONLY = (
    # (name, clock rate, fmtp): codecs the SFU forwards although aiortc cannot decode them
    ("VP9", 90000, "profile-id=0"),
    ("AV1", 90000, "level-idx=5;profile=0;tier=0"),
)
FORWARD_ONLY_NAMES = frozenset(name.lower() for name, _clock, _fmtp in FORWARD_ONLY)


def add_forward_only_codecs(offer: str) -> str:
    """``offer`` with VP9 and AV1 (each with RTX) added to every video m-line, on payload types
    the m-line does not use yet, so subscribers can accept them."""
    newline = "\r\n" if "\r\n" in offer else "\n"
    lines = offer.split(newline)
    out: list[str] = []
    extra: list[str] = []
    for line in lines:
        if line.startswith("m="):
            out.extend(extra)
            extra = []
            parts = line.split(" ")
            if parts[0] == "m=video" and len(parts) > 3:
                used = {int(p) for p in parts[3:] if p.isdigit()}
                free = (pt for pt in range(96, 128) if pt not in used)
                added: list[str] = []
                for name, clock, fmtp in FORWARD_ONLY:
                    pt, rtx = next(free, None), next(free, None)
                    if pt is None or rtx is None:
                        break
                    added += [str(pt), str(rtx)]
                    extra += [
                        f"a=rtpmap:{pt} {name}/{clock}",
                        f"a=fmtp:{pt} {fmtp}",
                        f"a=rtcp-fb:{pt} nack",
                        f"a=rtcp-fb:{pt} nack pli",
                        f"a=rtcp-fb:{pt} goog-remb",
                        f"a=rtpmap:{rtx} rtx/{clock}",
                        f"a=fmtp:{rtx} apt={pt}",
                    ]
                line = " ".join([*parts, *added])
        elif line == "" and extra:
            out.extend(extra)
            extra = []
        out.append(line)
    out.extend(extra)
    text = newline.join(out)
    return text if text.endswith(newline) else text + newline
