"""Completing the SFU's answers to publishers, line by line on aiortc's answer.

``complete_simulcast_answer`` adds the ``a=rid``/``a=simulcast`` lines and the RID header
extensions that aiortc leaves out, so a browser sends all its simulcast layers;
``request_opus_dtx`` asks publishers for Opus DTX in the answer.
"""

from __future__ import annotations

from sfu.sdp import URI_RID, URI_RRID, MediaSection, SessionInfo


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


def request_opus_dtx(answer: str) -> str:
    """``answer`` with ``usedtx=1`` in the format parameters of every Opus payload type: the
    publisher's encoder then nearly stops sending during silence (about 5 packets a second in
    Chromium instead of 50), as LiveKit asks by default (RFC 7587)."""
    newline = "\r\n" if "\r\n" in answer else "\n"
    lines = answer.split(newline)
    opus = {
        line[9:].partition(" ")[0]
        for line in lines
        if line.startswith("a=rtpmap:") and line.partition(" ")[2].lower().startswith("opus/")
    }
    with_fmtp = {line[7:].partition(" ")[0] for line in lines if line.startswith("a=fmtp:")}
    out: list[str] = []
    for line in lines:
        if line.startswith("a=fmtp:"):
            pt, _, params = line[7:].partition(" ")
            keys = {p.partition("=")[0].strip().lower() for p in params.split(";")}
            if pt in opus and "usedtx" not in keys:
                line = f"a=fmtp:{pt} " + ";".join(filter(None, (params.strip(), "usedtx=1")))
        out.append(line)
        if line.startswith("a=rtpmap:"):
            pt = line[9:].partition(" ")[0]
            if pt in opus and pt not in with_fmtp:
                out.append(f"a=fmtp:{pt} usedtx=1")
    return newline.join(out)
