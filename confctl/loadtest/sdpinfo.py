"""The little the load generator reads from, and changes in, session descriptions.

Only descriptions made by aiortc or by the server are read here; a line that does not parse is
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


@dataclass
class Section:
    kind: str
    mid: str = ""
    codecs: dict[str, int] = field(default_factory=dict)  # lower-case codec name -> first payload type
    extensions: dict[str, int] = field(default_factory=dict)  # uri -> id
    fmtp: dict[int, str] = field(default_factory=dict)  # payload type -> format parameters


def sections(sdp: str) -> list[Section]:
    out: list[Section] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append(Section(kind=line[2:].split(" ", 1)[0]))
        elif not out:
            continue
        elif line.startswith("a=mid:"):
            out[-1].mid = line[6:].strip()
        elif line.startswith("a=rtpmap:"):
            pt, _, rest = line[9:].partition(" ")
            name = rest.split("/", 1)[0].lower()
            if pt.isdigit():
                out[-1].codecs.setdefault(name, int(pt))
        elif line.startswith("a=fmtp:"):
            pt, _, params = line[7:].partition(" ")
            if pt.isdigit():
                out[-1].fmtp[int(pt)] = params.strip()
        elif line.startswith("a=extmap:"):
            ext_id, _, rest = line[9:].partition(" ")
            ext_id = ext_id.split("/", 1)[0]
            if ext_id.isdigit():
                out[-1].extensions[rest.split(" ", 1)[0]] = int(ext_id)
    return out


def asks_for_dtx(sdp: str, mid: str) -> bool:
    """True when the m-line ``mid`` of ``sdp`` (the server's answer) has ``usedtx=1`` for Opus."""
    for section in sections(sdp):
        pt = section.codecs.get("opus")
        if section.mid == mid and pt is not None:
            params = section.fmtp.get(pt, "").replace(" ", "").split(";")
            return "usedtx=1" in params
    return False


def ssrc_kinds(sdp: str) -> dict[int, str]:
    """SSRC -> ``audio``/``video`` for the streams an offer announces, ``rtx`` for their
    retransmission SSRCs (``a=ssrc-group:FID media rtx``). SSRCs, not payload types: a payload
    type number may mean different codecs on different m-lines."""
    kinds: dict[int, str] = {}
    rtx: set[int] = set()
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=ssrc-group:FID "):
            ssrcs = line[17:].split()
            rtx.update(int(s) for s in ssrcs[1:] if s.isdigit())
        elif line.startswith("a=ssrc:"):
            text = line[7:].split(" ", 1)[0]
            if text.isdigit():
                kinds[int(text)] = kind
    for ssrc in rtx:
        kinds[ssrc] = "rtx"
    return kinds


def ssrc_extension_ids(sdp: str, uri: str) -> dict[int, int]:
    """SSRC -> the id its m-line gives header extension ``uri``, for the SSRCs an offer
    announces on m-lines that have it."""
    ids: dict[int, int] = {}
    ext_id = 0
    for line in sdp.splitlines():
        if line.startswith("m="):
            ext_id = 0
        elif line.startswith("a=extmap:"):
            number, _, rest = line[9:].partition(" ")
            number = number.split("/", 1)[0]
            if rest.split(" ", 1)[0] == uri and number.isdigit():
                ext_id = int(number)
        elif line.startswith("a=ssrc:") and ext_id:
            text = line[7:].split(" ", 1)[0]
            if text.isdigit():
                ids[int(text)] = ext_id
    return ids


def free_extension_id(section: Section) -> int:
    used = set(section.extensions.values())
    return next(i for i in range(10, 15) if i not in used)


def simulcast_offer(sdp: str, mid: str, rids: tuple[str, ...], rid_ext: int) -> str:
    """A browser-style simulcast offer: the video m-line ``mid`` sends ``rids`` (lowest first) on
    unsignalled SSRCs that name their layer with the rtp-stream-id extension ``rid_ext``."""
    out: list[str] = []
    current = ""
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            current = ""
        elif line.startswith("a=mid:"):
            current = line[6:]
        if current == mid and line.startswith(("a=ssrc", "a=msid")):
            continue
        out.append(line)
        if current == mid and line == f"a=mid:{mid}":
            out.append(f"a=extmap:{rid_ext} {URI_RID}")
            out.extend(f"a=rid:{rid} send" for rid in rids)
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(out)
