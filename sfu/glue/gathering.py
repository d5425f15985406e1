"""Candidate gathering: host candidates on chosen addresses, on the shared media port or in the
UDP port range, optionally advertising a public address (NAT 1:1), on sockets the SFU binds
itself (``sfu.ports.bind_udp``) with ``MediaProtocol`` (SRTP unprotected in the socket callback).

aioice binds one ephemeral port per agent on every interface but loopback; ``prepare_gathering``
replaces an agent's ``Connection.gather_candidates`` and fills its ``_local_candidates``,
``_protocols`` and ``_local_candidates_start``/``_end`` as aioice's own gathering does. Also the
candidates an agent holds (``remote_candidate_count``, capped per connection) and its sockets
given back when a connection's close is stuck (``release_sockets``).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol
from aiortc import RTCPeerConnection

from sfu.fastio import enable_timestamps
from sfu.glue.aiortcseam import MediaProtocol, transports
from sfu.ports import GatherPolicy, PortRangeExhausted, bind_udp, local_addresses, size_receive_buffer
from sfu.udpmux import MediaPorts, UdpMux

log = logging.getLogger("sfu.glue")


async def _bind(connection: Connection, address: str, ports: MediaPorts) -> StunProtocol:
    if isinstance(ports, UdpMux):  # an endpoint of the shared socket
        shared, protocol = await ports.socket_for(address), MediaProtocol(connection)
        shared.attach(
            protocol, connection.local_username, connection.local_password, protocol.handle_datagram
        )
        return protocol
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for port in ports.candidates():
        try:
            sock = bind_udp(address, port)
        except OSError as exc:
            last = exc
            continue
        try:
            size_receive_buffer(sock)
            guard = ports.guard if ports.guard is not None and enable_timestamps(sock) else None
            _, protocol = await loop.create_datagram_endpoint(
                partial(MediaProtocol, connection, sock, guard), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        return protocol
    raise PortRangeExhausted(f"no free UDP port on {address} in {ports.low}-{ports.high}: {last}")


async def _gather(connection: Connection, policy: GatherPolicy, ports: MediaPorts) -> None:
    """Replaces ``Connection.gather_candidates``: host candidates only (no STUN/TURN), per policy."""
    if connection._local_candidates_start:
        return
    connection._local_candidates_start = True
    candidates: list[Candidate] = []
    for address in local_addresses(policy):
        try:
            protocol = await _bind(connection, address, ports)
        except OSError as exc:
            log.warning("cannot bind a media socket on %s: %s", address, exc)
            continue
        host, port = protocol.transport.get_extra_info("sockname")[:2]
        advertised = policy.public_ip or host
        foundation, priority = candidate_foundation("host", "udp", advertised), candidate_priority(1, "host")
        protocol.local_candidate = Candidate(foundation, 1, "udp", priority, advertised, port, "host")
        connection._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    connection._local_candidates += candidates
    connection._local_candidates_end = True


def install_gatherer(connection: Connection, policy: GatherPolicy, ports: MediaPorts) -> None:
    """Make the ICE agent ``connection`` gather per ``policy`` (``IceRestart``'s new agent too)."""
    if "gather_candidates" in connection.__dict__:
        return

    async def gather_candidates() -> None:
        await _gather(connection, policy, ports)

    connection.gather_candidates = gather_candidates  # type: ignore[method-assign]


def prepare_gathering(pc: RTCPeerConnection, policy: GatherPolicy, ports: MediaPorts) -> None:
    """Make ``pc`` gather per ``policy``; call before every ``setLocalDescription``."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        install_gatherer(connection, policy, ports)


def local_ports(pc: RTCPeerConnection) -> list[int]:
    """UDP ports the connection's sockets are bound to."""
    out: list[int] = []
    for dtls in transports(pc):
        for protocol in dtls.transport._connection._protocols:
            out.append(protocol.transport.get_extra_info("sockname")[1])
    return out


def remote_candidate_count(pc: RTCPeerConnection) -> int:
    """Remote candidates ``pc``'s ICE agent holds (each one gets connectivity checks)."""
    return sum(len(dtls.transport._connection.remote_candidates) for dtls in transports(pc))


def release_sockets(pc: RTCPeerConnection) -> None:
    """Close the sockets of ``pc``'s ICE agents without waiting on anything: for a connection
    whose ``close()`` did not finish in time (a stuck close must not hold ports forever)."""
    for dtls in transports(pc):
        ice = dtls.transport
        connections = {ice._connection, ice.iceGatherer._connection}
        for connection in connections:
            for protocol in connection._protocols:
                transport = protocol.transport
                if transport is not None and not transport.is_closing():
                    transport.close()
