"""Reading session descriptions, and adding forward-only codecs to offers.

``parse_sdp`` reads what the forwarder needs from an offer or an answer (m-lines, MIDs,
codecs, header extension ids, RIDs, SSRCs, ICE credentials) and refuses malformed input with
``SdpError`` before the WebRTC stack sees it; ``sfu.sdpanswer`` completes the answers to
publishers (simulcast, Opus DTX). ``add_forward_only_codecs`` adds VP9 and AV1 to the
SFU's subscribe offers, with payload types allocated per description (``PayloadTypes``) so no
number names two codec configurations in the BUNDLE group.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from sfu.core.candidate import CandidateError, parse_candidate

# Caps on one description: together they keep parsing it (here, then in aiortc) linear and
# cheap, ~2-3 ms for the largest one signaling lets through (docs/SFU.md, "Hostile input").
MAX_SDP_CHARS = 65536
MAX_LINES = 4000
MAX_LINE_CHARS = 1024
MAX_MEDIA = 64
MAX_RIDS = 4
MAX_SSRC_LINES = 64  # a=ssrc lines per m-line (a browser writes 2 to 4 per SSRC)
MAX_SSRCS = 16  # distinct SSRCs per m-line (simulcast with RTX and FEC needs 6 to 9)
MAX_CANDIDATES = 32  # a=candidate lines per m-line
MAX_CANDIDATE_LINES = 256  # and in the whole description
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
_MID = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,64}")  # a token (RFC 5888, RFC 8866)
# what Python's str.splitlines (and so aiortc) also takes for a line break, and other controls:
# a description must read as the same lines here and there
_STRAY_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]|\r(?!\n)")


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
        self.direction = ""  # JSEP writes one in every m-line; aiortc fails on none
        self.rtpmap: dict[int, tuple[str, int, int | None]] = {}
        self.fmtp: dict[int, str] = {}
        self.extensions: dict[str, int] = {}
        self.rids: list[str] = []
        self.simulcast: list[str] = []
        self.ssrcs: dict[int, None] = {}  # insertion-ordered set: linear de-duplication
        self.ssrc_lines = 0
        self.candidates = 0
        self.fid: list[tuple[int, int]] = []
        self.ufrag = ""
        self.pwd = ""

    def attribute(self, name: str, value: str) -> None:
        if name == "mid":
            if _MID.fullmatch(value) is None:
                raise SdpError(f"bad mid: {value[:40]!r}")
            self.mid = value
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
            self.ssrc_lines += 1
            if self.ssrc_lines > MAX_SSRC_LINES:
                raise SdpError(f"m-line {self.index} has more than {MAX_SSRC_LINES} a=ssrc lines")
            ssrc_text, _, desc = value.partition(" ")
            if ":" not in desc:
                raise SdpError(f"bad ssrc attribute: {value[:60]!r}")
            self.ssrcs[_int(ssrc_text, "ssrc")] = None
            if len(self.ssrcs) > MAX_SSRCS:
                raise SdpError(f"m-line {self.index} names more than {MAX_SSRCS} SSRCs")
        elif name == "candidate":
            self.candidates += 1
            if self.candidates > MAX_CANDIDATES:
                raise SdpError(f"m-line {self.index} has more than {MAX_CANDIDATES} candidates")
            try:
                parse_candidate(value)
            except CandidateError as exc:
                raise SdpError(f"bad candidate: {exc}") from None
        elif name == "ssrc-group":
            parts = value.split()
            if parts and parts[0] == "FID" and len(parts) == 3:
                self.fid.append((_int(parts[1], "ssrc"), _int(parts[2], "ssrc")))
        elif name == "ice-ufrag":
            self.ufrag = value.strip()
        elif name == "ice-pwd":
            self.pwd = value.strip()

    def codecs(self) -> tuple[Codec, ...]:
        """The m-line's codecs with an rtpmap, in the m-line's order."""
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
        return tuple(codecs)

    def build(self, session_ufrag: str, session_pwd: str) -> MediaSection:
        if not self.mid:
            raise SdpError(f"m-line {self.index} has no a=mid")
        if not self.direction and self.kind != "application":
            raise SdpError(f"m-line {self.mid} has no direction attribute (a=sendrecv, a=sendonly, ...)")
        rids: tuple[str, ...] = ()
        if self.rids:
            order = [r for r in self.simulcast if r in self.rids] or self.rids
            rids = tuple(order)
        return MediaSection(
            index=self.index,
            kind=self.kind,
            mid=self.mid,
            direction=self.direction or "sendrecv",
            port=self.port,
            codecs=self.codecs(),
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
    stray = _STRAY_CONTROL.search(text)
    if stray is not None:
        raise SdpError(f"sdp contains a control character ({ord(stray.group()[0]):#x}) outside CRLF")
    if text.count("\n") > MAX_LINES:
        raise SdpError(f"sdp has more than {MAX_LINES} lines")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line]
    if any(len(line) > MAX_LINE_CHARS for line in lines):
        raise SdpError(f"sdp has a line longer than {MAX_LINE_CHARS} characters")
    if not lines or lines[0] != "v=0":
        raise SdpError("sdp must start with v=0")
    sections: list[_Section] = []
    session_ufrag = session_pwd = ""
    bundle: tuple[str, ...] | None = None
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
            elif name == "group" and attr.split(" ")[0] == "BUNDLE":
                if bundle is not None:
                    raise SdpError("sdp has more than one BUNDLE group")
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
    if sum(s.candidates for s in sections) > MAX_CANDIDATE_LINES:
        raise SdpError(f"sdp has more than {MAX_CANDIDATE_LINES} candidates")
    if bundle is not None:
        # aiortc takes the first mid as the transport's owner and tears down the transport of
        # every other one: a mid named twice, or the owner named again, stops the connection's
        # only transport (and waits forever when an ICE restart is under way)
        if len(set(bundle)) != len(bundle):
            raise SdpError("the BUNDLE group names a mid twice")
        unknown = set(bundle) - set(mids)
        if unknown:
            raise SdpError(f"the BUNDLE group names no m-line's mid: {sorted(unknown)[0][:20]!r}")
    for m in media:
        if not m.ice_ufrag or not m.ice_pwd:
            raise SdpError(f"m-line {m.mid} has no ICE credentials")
        if m.kind != "application" and m.port != 0 and not m.media_codecs():
            raise SdpError(f"m-line {m.mid} offers no codec")
    return SessionInfo(media=media, ice_ufrag=session_ufrag, bundle=bundle or ())


def check_bundle(info: SessionInfo, previous: SessionInfo | None = None) -> None:
    """A client's description for one of the SFU's connections, as the connection can take it:
    every m-line on one transport (max-bundle), which belongs to the first m-line, so the BUNDLE
    group (when there is one) starts with the first m-line's mid; and, renegotiating after
    ``previous``, the m-lines keep their kinds and mids in order, new ones after them (JSEP).
    aiortc would otherwise stop the one transport, or add a transceiver for every new mid."""
    if info.bundle and info.bundle[0] != info.media[0].mid:
        raise SdpError("the BUNDLE group must start with the first m-line's mid")
    if previous is not None:
        before = [(m.kind, m.mid) for m in previous.media]
        if [(m.kind, m.mid) for m in info.media[: len(before)]] != before:
            raise SdpError("a new offer must keep the previous offer's m-lines (kinds and mids, in order)")


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

DYNAMIC_PAYLOAD_TYPES = range(96, 128)
"""Where new payload types are taken from (aiortc adopts an answer's payload type only there)."""


@dataclass(frozen=True, slots=True)
class CodecConfig:
    """What one payload type number stands for in a session description: the rtpmap and the
    format parameters; for RTX, the configuration it repairs. Within one BUNDLE group a number
    names one configuration on every m-line (RFC 8843 section 9.1): the receiver demultiplexes
    by payload type."""

    name: str  # lower case
    clock_rate: int
    channels: int
    params: tuple[tuple[str, str], ...]  # sorted; for rtx, without apt
    repairs: CodecConfig | None = None

    @classmethod
    def of(cls, codec: Codec, section: Sequence[Codec]) -> CodecConfig:
        """The configuration of ``codec``, one of the codecs of one m-line ``section``."""
        params = codec.fmtp_params()
        repairs = None
        if codec.is_rtx:
            base = next((c for c in section if c.payload_type == codec.apt and not c.is_rtx), None)
            if base is not None:
                repairs = cls.of(base, section)
                params.pop("apt", None)
        return cls(
            codec.name.lower(), codec.clock_rate, codec.channels or 1, tuple(sorted(params.items())), repairs
        )


class PayloadTypes:
    """The payload type numbers of one session description, each bound to one configuration.

    ``reserved`` numbers (all those the description uses) are never handed out anew, so a
    fresh number cannot collide with one an m-line has not claimed yet.
    """

    def __init__(self, reserved: Iterable[int] = ()) -> None:
        self._config: dict[int, CodecConfig] = {}
        self._number: dict[CodecConfig, int] = {}
        self._reserved = frozenset(reserved)

    def claim(self, payload_type: int, config: CodecConfig) -> bool:
        """Bind ``payload_type`` to ``config``; False when it already names another configuration."""
        if self._config.setdefault(payload_type, config) != config:
            return False
        self._number.setdefault(config, payload_type)
        return True

    def number_for(self, config: CodecConfig, taken: Collection[int]) -> int | None:
        """The number ``config`` has already, unless an m-line's other codecs hold it (``taken``);
        else the lowest free dynamic number, now bound to it. None when none is free."""
        known = self._number.get(config)
        if known is not None and known not in taken:
            return known
        for pt in DYNAMIC_PAYLOAD_TYPES:
            if pt not in self._config and pt not in self._reserved and pt not in taken:
                self.claim(pt, config)
                return pt
        return None


class _OfferSection:
    """One m-line of an offer being rewritten: its lines, and the payload type changes."""

    def __init__(self, m_line: str) -> None:
        parts = m_line.split(" ")
        self.kind = parts[0][2:]
        self.rtp = self.kind in ("audio", "video") and len(parts) > 3
        pts = [int(p) for p in parts[3:] if p.isdigit() and int(p) <= 127] if self.rtp else []
        self.parsed = _Section(0, self.kind, 0, pts)
        self.lines = [m_line]
        self.renumbered: dict[int, int] = {}  # old -> new
        self.added: list[str] = []  # payload types appended to the m-line
        self.extra: list[str] = []  # attribute lines for them

    def add(self, line: str) -> None:
        self.lines.append(line)
        if self.rtp and line.startswith("a="):
            name, _, value = line[2:].partition(":")
            if name in ("rtpmap", "fmtp"):
                self.parsed.attribute(name, value)

    def payload_types(self) -> set[int]:
        return {self.renumbered.get(pt, pt) for pt in self.parsed.pts} | {int(pt) for pt in self.added}

    def render(self) -> list[str]:
        out = [self._renumber(line) for line in self.lines]
        if self.added:
            out[0] = " ".join([out[0], *self.added])
        return out + self.extra

    def _renumber(self, line: str) -> str:
        if not self.renumbered:
            return line
        new = self.renumbered
        if line.startswith("m="):
            parts = line.split(" ")
            return " ".join(parts[:3] + [str(new.get(int(p), p)) if p.isdigit() else p for p in parts[3:]])
        for prefix in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"):
            if line.startswith(prefix):
                pt_text, sep, rest = line[len(prefix) :].partition(" ")
                if pt_text.isdigit():
                    pt_text = str(new.get(int(pt_text), pt_text))
                if prefix == "a=fmtp:":
                    rest = ";".join(_renumber_apt(p, new) for p in rest.split(";"))
                return f"{prefix}{pt_text}{sep}{rest}"
        return line


def _renumber_apt(param: str, new: Mapping[int, int]) -> str:
    key, sep, value = param.partition("=")
    if key.strip().lower() == "apt" and value.strip().isdigit():
        return f"{key}{sep}{new.get(int(value.strip()), value.strip())}"
    return param


def _bind_existing(sections: Sequence[_OfferSection], table: PayloadTypes) -> None:
    """Claim every m-line's payload types; one naming another configuration than on an earlier
    m-line gets a new number on this m-line (its RTX apt follows)."""
    for section in sections:
        codecs = section.parsed.codecs()
        taken = set(section.parsed.pts)
        for codec in sorted(codecs, key=lambda c: c.is_rtx):
            config = CodecConfig.of(codec, codecs)
            if table.claim(codec.payload_type, config):
                continue
            pt = table.number_for(config, taken)
            if pt is None:
                raise SdpError(f"no payload type left for {codec.name} on m-line {section.kind}")
            section.renumbered[codec.payload_type] = pt
            taken.add(pt)


def _add_forward_only(section: _OfferSection, table: PayloadTypes) -> None:
    """Add the forward-only codecs (and their RTX) that the video m-line ``section`` lacks."""
    codecs = section.parsed.codecs()
    present = {CodecConfig.of(c, codecs) for c in codecs}
    for name, clock, fmtp in FORWARD_ONLY:
        media = Codec(0, name, clock, None, fmtp)
        config = CodecConfig.of(media, ())
        if config in present:
            continue
        taken = section.payload_types()
        pt = table.number_for(config, taken)
        if pt is None:
            return
        rtx_config = CodecConfig("rtx", clock, 1, (), config)
        rtx = table.number_for(rtx_config, taken | {pt})
        if rtx is None:
            return
        section.added += [str(pt), str(rtx)]
        section.extra += [
            f"a=rtpmap:{pt} {name}/{clock}",
            f"a=fmtp:{pt} {fmtp}",
            f"a=rtcp-fb:{pt} nack",
            f"a=rtcp-fb:{pt} nack pli",
            f"a=rtcp-fb:{pt} goog-remb",
            f"a=rtpmap:{rtx} rtx/{clock}",
            f"a=fmtp:{rtx} apt={pt}",
        ]


def add_forward_only_codecs(offer: str) -> str:
    """``offer`` with VP9 and AV1 (each with RTX) added to every video m-line, so subscribers
    can accept them.

    Payload types are allocated for the whole description, as one BUNDLE group needs: a number
    keeps one codec configuration on every m-line. A forward-only codec has the same number on
    every video m-line, never one that an audio m-line uses for something else; and should the
    offer itself reuse a number for two configurations, the later m-line's codec is renumbered.
    """
    newline = "\r\n" if "\r\n" in offer else "\n"
    session: list[str] = []
    sections: list[_OfferSection] = []
    for line in offer.split(newline):
        if not line:
            continue
        if line.startswith("m="):
            sections.append(_OfferSection(line))
        elif sections:
            sections[-1].add(line)
        else:
            session.append(line)
    table = PayloadTypes(pt for s in sections for pt in s.parsed.pts)
    _bind_existing(sections, table)
    for section in sections:
        if section.kind == "video" and section.rtp:
            _add_forward_only(section, table)
    out = session + [line for s in sections for line in s.render()]
    return newline.join(out) + newline
