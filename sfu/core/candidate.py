"""ICE candidates from clients (RFC 8839 section 5.1), checked before the ICE agent sees them.

``parse_candidate`` reads the text of an ``a=candidate`` attribute (without the ``candidate:``
prefix) and refuses, with ``CandidateError`` saying why, anything the WebRTC stack would trip
over (too few fields, a non-numeric port or priority) and any address the server should not
send connectivity checks to: unspecified, multicast, broadcast, reserved ("this network",
240.0.0.0/4) or port 0. Loopback, private and link-local addresses are accepted (development
and LAN deployments use them), as are mDNS host names (``<uuid>.local``, what browsers write
to hide local addresses). Sans-I/O: strings in, a frozen value out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_CANDIDATE_CHARS = 1024
TYPES = frozenset({"host", "srflx", "prflx", "relay"})
PROTOCOLS = frozenset({"udp", "tcp"})
TCP_TYPES = frozenset({"active", "passive", "so"})
MAX_PRIORITY = 2**31 - 1

_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")
_MDNS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})\.local", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,10}", re.ASCII)

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


class CandidateError(ValueError):
    """The candidate is malformed or names an address the server will not check; says what."""


@dataclass(frozen=True, slots=True)
class IceCandidate:
    foundation: str
    component: int
    protocol: str  # "udp" or "tcp", lower case
    priority: int
    address: str  # an IP literal or an mDNS name
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    tcp_type: str | None = None

    def to_sdp(self) -> str:
        """The candidate as ``a=candidate`` text (without the prefix), normalised."""
        text = (
            f"{self.foundation} {self.component} {self.protocol} {self.priority} "
            f"{self.address} {self.port} typ {self.type}"
        )
        if self.related_address is not None:
            text += f" raddr {self.related_address}"
        if self.related_port is not None:
            text += f" rport {self.related_port}"
        if self.tcp_type is not None:
            text += f" tcptype {self.tcp_type}"
        return text


def _number(text: str, what: str, lo: int, hi: int) -> int:
    if _DIGITS.fullmatch(text) is None:
        raise CandidateError(f"{what} is not a number: {text[:20]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise CandidateError(f"{what} out of range: {value}")
    return value


def check_address(text: str, what: str = "address") -> str:
    """An IP literal the server may send checks to, or an mDNS name; returns it normalised."""
    if text.lower().endswith(".local"):
        if _MDNS_NAME.fullmatch(text) is None:
            raise CandidateError(f"{what} is not a valid mDNS name: {text[:40]!r}")
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise CandidateError(f"{what} is not an IP address: {text[:40]!r}") from None
    if address.is_unspecified or address.is_multicast:
        raise CandidateError(f"{what} {address} is unspecified or multicast")
    if isinstance(address, ipaddress.IPv4Address) and (
        address == _BROADCAST or address in _THIS_NETWORK or address.is_reserved
    ):
        raise CandidateError(f"{what} {address} is broadcast or reserved")
    return str(address)


def parse_candidate(text: str) -> IceCandidate:
    """Read one candidate; raises ``CandidateError`` with a readable reason."""
    if len(text) > MAX_CANDIDATE_CHARS:
        raise CandidateError(f"a candidate is at most {MAX_CANDIDATE_CHARS} characters")
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    bits = text.split()
    if len(bits) < 8:
        raise CandidateError(
            "a candidate has at least 8 fields: foundation component protocol priority address port typ type"
        )
    if len(bits) % 2:
        raise CandidateError("a candidate's extensions come in name value pairs")
    foundation = bits[0]
    if _FOUNDATION.fullmatch(foundation) is None:
        raise CandidateError(f"bad foundation: {foundation[:40]!r}")
    component = _number(bits[1], "component", 1, 1)  # RTP and RTCP share a port (rtcp-mux)
    protocol = bits[2].lower()
    if protocol not in PROTOCOLS:
        raise CandidateError(f"protocol must be udp or tcp, not {bits[2][:20]!r}")
    priority = _number(bits[3], "priority", 1, MAX_PRIORITY)
    address = check_address(bits[4])
    port = _number(bits[5], "port", 1, 65535)
    if bits[6] != "typ":
        raise CandidateError("the seventh field of a candidate must be typ")
    kind = bits[7]
    if kind not in TYPES:
        raise CandidateError(f"type must be one of {', '.join(sorted(TYPES))}, not {kind[:20]!r}")
    related_address: str | None = None
    related_port: int | None = None
    tcp_type: str | None = None
    for i in range(8, len(bits), 2):
        name, value = bits[i], bits[i + 1]
        if name == "raddr":
            try:
                related_address = str(ipaddress.ip_address(value))
            except ValueError:
                raise CandidateError(f"raddr is not an IP address: {value[:40]!r}") from None
        elif name == "rport":
            related_port = _number(value, "rport", 0, 65535)
        elif name == "tcptype":
            if value not in TCP_TYPES:
                raise CandidateError(f"tcptype must be active, passive or so, not {value[:20]!r}")
            tcp_type = value
        elif name == "generation":
            _number(value, "generation", 0, 0xFFFFFFFF)
    return IceCandidate(
        foundation,
        component,
        protocol,
        priority,
        address,
        port,
        kind,
        related_address,
        related_port,
        tcp_type,
    )
