"""The shared media port (``sfu.udpmux``) and its batched sends (``sfu.fastio.DatagramBatch``):
one socket for every connection, datagrams told apart by ICE credentials and addresses, a
fan-out sent with one ``sendmmsg``."""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import threading
import time

import pytest
from aioice import stun

from confserver.config import ConfigError, load_config
from sfu import fastio, ports
from sfu.context import PacketFilters
from sfu.controller import SfuController
from sfu.fastio import DatagramBatch, enable_timestamps
from sfu.glue import gathering, send
from sfu.glue.srtp import SrtpSession
from sfu.metrics import Counters, ReceiveWaits, SfuMetrics
from sfu.ports import StaleGuard
from sfu.udpmux import MuxSocket, UdpMux
from tests.sfu.conftest import config
from tests.sfu.peers import Peer, wait_until
from tests.sfu.test_forwarding import video_track_of
from tests.sfu.test_network import candidate_ports
from tests.sfu.test_srtp_session import rtp, sessions


class Owner:
    """What ``DatagramBatch`` asks of whoever writes into an SRTP buffer."""

    def __init__(self, srtp: SrtpSession) -> None:
        self.buffer: memoryview | None = srtp.rtp_buffer
        self.ready_buffer = srtp.rtp_buffer


def receivers(count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(2)
        out.append(s)
    return out


def test_a_batch_sends_every_queued_datagram_in_one_flush_and_gives_the_buffers_back() -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    scheduled: list[int] = []
    failures: list[int] = []
    batch = DatagramBatch(sender, lambda: scheduled.append(1), failures.append)
    assert batch.available
    targets = receivers(3)
    writers = []
    for target in targets:
        tx, rx = sessions()
        srtp = SrtpSession(tx)
        owner = Owner(srtp)
        name = batch.address(socket.AF_INET, *target.getsockname())
        writers.append((srtp, owner, batch.emitter(srtp, name, owner), SrtpSession(rx)))
    sent = [rtp(seq) for seq in range(1, 4)]
    try:
        for packet, (_srtp, owner, emit, _rx) in zip(sent, writers, strict=True):
            assert owner.buffer is not None
            owner.buffer[: len(packet)] = packet
            assert emit(len(packet))
            assert owner.buffer is None  # held by the batch until it is sent
        assert batch.count == 3 and scheduled == [1]  # queued outside a socket callback: flush soon
        assert select.select(targets, [], [], 0.05)[0] == []  # nothing sent yet
        batch.flush()
        assert batch.count == 0 and failures == []
        for packet, (_srtp, owner, _emit, rx), target in zip(sent, writers, targets, strict=True):
            assert owner.buffer is owner.ready_buffer
            assert rx.unprotect(target.recv(2048)) == packet
    finally:
        sender.close()
        for target in targets:
            target.close()


def test_a_destination_the_kernel_refuses_is_counted_and_the_others_still_get_theirs() -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    failures: list[int] = []
    batch = DatagramBatch(sender, lambda: None, failures.append)
    (good,) = receivers(1)
    destinations = [("127.0.0.1", 0), good.getsockname(), ("127.0.0.1", 0)]  # port 0: EINVAL
    emitters = []  # a queued datagram's address lives in its emitter: kept until the flush, as a writer does
    try:
        for seq, destination in enumerate(destinations):
            tx, _rx = sessions()
            srtp = SrtpSession(tx)
            owner = Owner(srtp)
            emit = batch.emitter(srtp, batch.address(socket.AF_INET, *destination), owner)
            emitters.append(emit)
            packet = rtp(seq)
            srtp.rtp_buffer[: len(packet)] = packet
            assert emit(len(packet))
        batch.flush()
        assert failures == [2] and batch.failed == 2
        assert len(good.recv(2048)) > 12
    finally:
        sender.close()
        good.close()


def test_addresses_that_are_not_numeric_are_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        batch = DatagramBatch(sock, lambda: None)
        assert batch.address(socket.AF_INET, "example.gov", 5000) is None
        assert batch.address(socket.AF_INET, "::1", 5000) is None
        assert batch.address(socket.AF_INET6, "::1", 5000) is not None


class Endpoint(asyncio.DatagramProtocol):
    """An ICE agent's socket protocol as the mux sees it: what it gets, and its transport."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append(data)


class Wire:
    """The shared socket's transport: what went out."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def binding(kind: stun.Class, username: str | None = None, password: bytes | None = None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=kind)
    if username is not None:
        message.attributes["USERNAME"] = username
    if password is not None:
        message.add_message_integrity(password)
    return bytes(message)


async def test_responses_go_to_the_endpoint_that_sent_the_check_even_from_an_address_another_holds() -> None:
    counters = Counters()
    mux_socket = MuxSocket(counters)
    wire = Wire()
    mux_socket.transport = wire  # type: ignore[assignment]
    old, new = Endpoint(), Endpoint()
    mux_socket.attach(old, "old", "old-password-old-password", old.deliver)
    mux_socket.attach(new, "new", "new-password-new-password", new.deliver)
    peer = ("127.0.0.1", 40000)
    assert old.transport is not None and new.transport is not None
    first = binding(stun.Class.REQUEST, "peer:old")
    old.transport.sendto(first, peer)  # the old agent's check: the address is its own
    check = binding(stun.Class.REQUEST, "peer:new")
    new.transport.sendto(check, peer)  # an ICE restart's agent checks the same address
    reply = bytearray(check)
    reply[0:2] = b"\x01\x01"  # its success response, same transaction id
    mux_socket.datagram_received(bytes(reply), peer)
    error = bytearray(binding(stun.Class.REQUEST, "peer:new"))
    error[0:2] = b"\x01\x11"  # an error response to a check nobody sent
    mux_socket.datagram_received(bytes(error), peer)
    stray = bytearray(binding(stun.Class.REQUEST, "peer:old"))
    stray[0:2] = b"\x01\x01"
    stranger = ("127.0.0.1", 40001)
    mux_socket.datagram_received(bytes(stray), stranger)  # nobody's transaction, nobody's address
    assert counters.dropped.get("unknown_address") == 1
    answer = bytearray(first)
    answer[0:2] = b"\x01\x01"
    mux_socket.datagram_received(bytes(answer), stranger)  # the old agent's check, answered from elsewhere
    assert new.got == [bytes(reply)]  # routed by the transaction id
    assert old.got == [bytes(error), bytes(answer)]  # unknown transaction: the address's holder
    # a check that names the new agent and carries its password moves the address to it
    mux_socket.datagram_received(binding(stun.Class.REQUEST, "new:peer", b"new-password-new-password"), peer)
    mux_socket.datagram_received(b"\x80" + bytes(20), peer)  # media from the peer
    assert new.got[-1] == b"\x80" + bytes(20) and len(old.got) == 2
    assert [addr for _, addr in wire.sent] == [peer, peer]  # both checks went out


class Reader:
    """What ``drain`` reads through: a real socket, and where its errors go."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.errors: list[OSError] = []

    def error_received(self, exc: OSError) -> None:
        self.errors.append(exc)


def wait_for_arrival_stamps(sender: socket.socket, receiver: socket.socket) -> None:
    """Linux switches arrival stamping on for the machine shortly after the first socket asks
    (until then a datagram is stamped when it is read, and looks fresh): wait until a probe
    that waited 50 ms says so."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        sender.sendto(b"probe", receiver.getsockname())
        time.sleep(0.05)
        _, ancillary, _, _ = receiver.recvmsg(2048, 64)
        seconds, nanoseconds = struct.unpack("@ll", ancillary[0][2][:16])
        if time.time() - seconds - nanoseconds * 1e-9 >= 0.04:
            return
    raise AssertionError("the kernel does not stamp arrivals")


def test_rtp_that_waited_longer_than_the_bound_is_dropped_unread_and_nothing_else_is() -> None:
    receiver, sender = receivers(1)[0], socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setblocking(False)
    assert enable_timestamps(receiver)
    to = receiver.getsockname()
    wait_for_arrival_stamps(sender, receiver)
    rtcp = bytes([0x81, 201, 0, 1]) + bytes(4)  # a receiver report: never dropped
    check = binding(stun.Class.REQUEST, "a:b")  # STUN: never dropped
    counters, waits = Counters(), ReceiveWaits()
    guard = StaleGuard(counters, 0.2, waits)
    try:
        for seq in range(5):
            sender.sendto(rtp(seq), to)
        sender.sendto(rtcp, to)
        sender.sendto(check, to)
        time.sleep(0.25)  # the server is busy: all of that waits
        fresh = [rtp(seq) for seq in range(5, 8)]
        for packet in fresh:
            sender.sendto(packet, to)
        got: list[bytes] = []
        reader = Reader(receiver)
        read = fastio.drain(reader.sock, lambda data, _addr: got.append(data), reader.error_received, guard)
        assert read == 10 and counters.dropped == {"stale": 5} and reader.errors == []
        assert got == [rtcp, check, *fresh]
        # the oldest was timed (the head of the queue), and what followed it not
        assert sum(waits.counts) == 1 and waits.total_seconds > 0.25
        # without a bound the wait is still measured, and everything is handed over
        for seq in range(3):
            sender.sendto(rtp(seq), to)
        time.sleep(0.25)
        got.clear()
        unbounded = StaleGuard(counters, 0.0, waits)
        assert (
            fastio.drain(reader.sock, lambda data, _addr: got.append(data), reader.error_received, unbounded)
            == 3
        )
        assert len(got) == 3 and counters.dropped == {"stale": 5} and sum(waits.counts) == 2
    finally:
        receiver.close()
        sender.close()


def test_the_receive_wait_is_a_histogram_in_the_metrics() -> None:
    metrics = SfuMetrics()
    for seconds in (0.0005, 0.003, 0.003, 0.7, 30.0):
        metrics.receive_waits.observe(seconds)
    sample = metrics.registry.get_sample_value
    name = "conf_sfu_receive_wait_seconds"
    assert sample(f"{name}_bucket", {"le": "0.001"}) == 1
    assert sample(f"{name}_bucket", {"le": "0.005"}) == 3
    assert sample(f"{name}_bucket", {"le": "1.0"}) == 4
    assert sample(f"{name}_bucket", {"le": "+Inf"}) == sample(f"{name}_count") == 5
    assert abs(sample(f"{name}_sum") - 30.7065) < 1e-9


# --- the SFU on one port, with real aiortc peers ------------------------------------------------


def server_ports(sfu: SfuController, room: str) -> list[int]:
    return [
        port
        for member in sfu._rooms[room].members.values()
        for side in (member.publisher, member.subscriber)
        if side is not None
        for port in gathering.local_ports(side.pc)
    ]


def ice_credentials(sdp: str) -> tuple[str, str]:
    ufrag = next(line[12:] for line in sdp.splitlines() if line.startswith("a=ice-ufrag:"))
    pwd = next(line[10:] for line in sdp.splitlines() if line.startswith("a=ice-pwd:"))
    return ufrag, pwd


def binding_request(ufrag: str, password: str, remote_ufrag: str) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{ufrag}:{remote_ufrag}"
    request.attributes["PRIORITY"] = 1
    request.add_message_integrity(password.encode())
    request.add_fingerprint()
    return bytes(request)


def unknown_drops(sfu: SfuController) -> float:
    value = sfu.metrics.registry.get_sample_value(
        "conf_sfu_dropped_packets_total", {"reason": "unknown_address"}
    )
    return value or 0.0


async def test_every_connection_shares_one_port_and_fan_outs_leave_in_one_sendmmsg(
    sfu: SfuController, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    flush = DatagramBatch.flush

    def counting_flush(self: DatagramBatch) -> None:
        if self.count:
            batches.append(self.count)
        flush(self)

    monkeypatch.setattr(DatagramBatch, "flush", counting_flush)
    peers = [Peer(sfu, "one-port", f"p{i}") for i in range(3)]
    try:
        for p in peers:
            await p.join()
        await peers[0].publish(video=(160, 120), audio=False)
        track = video_track_of(peers[1], "p0")
        for p in peers[1:]:
            await p.subscribe(track)
        for p in peers[1:]:
            await wait_until(
                lambda p=p: (r := p.video_for(track)) is not None and r.frames >= 10, 5, what="video"
            )
        used = server_ports(sfu, "one-port")
        assert len(used) == 4 and len(set(used)) == 1  # 3 subscribe connections and 1 publish connection
        mux = sfu._ctx.ports  # type: ignore[union-attr]
        assert isinstance(mux, UdpMux) and mux.port == used[0]
        answer = peers[0].of_type("publish_answer")[0]["sdp"]
        assert {port for _host, port in candidate_ports(answer)} == {mux.port}
        assert len(mux.ufrags()) == 4
        assert max(batches) == 2  # each video packet to both subscribers at once
        assert unknown_drops(sfu) == 0
    finally:
        for p in peers:
            await p.close()
    assert sfu._ctx is not None and isinstance(sfu._ctx.ports, UdpMux) and sfu._ctx.ports.ufrags() == set()


async def test_strangers_are_dropped_and_counted_and_only_a_check_with_the_password_takes_an_address(
    sfu: SfuController,
) -> None:
    alice = Peer(sfu, "strangers", "alice")
    await alice.join()
    offer = (await alice.expect("subscribe_offer"))["sdp"]
    ufrag, password = ice_credentials(offer)
    (port,) = {port for _host, port in candidate_ports(offer)}
    await wait_until(lambda: alice.subscribe_pc is not None and alice.subscribe_pc.localDescription, 2)
    theirs, _ = ice_credentials(alice.subscribe_pc.localDescription.sdp)  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.setblocking(False)
    try:
        junk = struct.pack("!BBHII", 0x80, 96, 1, 1, 0xBAD) + bytes(100)
        stranger.sendto(junk, ("127.0.0.1", port))
        await wait_until(lambda: unknown_drops(sfu) == 1, 2, what="junk counted")

        stranger.sendto(binding_request(ufrag, "not-the-password", theirs), ("127.0.0.1", port))
        reply = stun.parse_message(await asyncio.wait_for(loop.sock_recv(stranger, 2048), 2))
        assert reply.message_class == stun.Class.ERROR  # 401 from the ICE agent it named
        stranger.sendto(junk, ("127.0.0.1", port))
        await wait_until(lambda: unknown_drops(sfu) == 2, 2, what="still a stranger")

        stranger.sendto(binding_request(ufrag, password, theirs), ("127.0.0.1", port))
        reply = stun.parse_message(await asyncio.wait_for(loop.sock_recv(stranger, 2048), 2))
        assert reply.message_class == stun.Class.RESPONSE
        assert reply.attributes["XOR-MAPPED-ADDRESS"] == stranger.getsockname()
        stranger.sendto(junk, ("127.0.0.1", port))  # now the connection's (SRTP refuses it)
        await asyncio.sleep(0.2)
        assert unknown_drops(sfu) == 2

        await alice.publish(video=(160, 120), audio=False)  # the room still works
        assert alice.of_type("publish_answer")
    finally:
        stranger.close()
        await alice.close()


def stall(seconds: float) -> None:
    """Keep the event loop from running, as a saturated server does."""
    time.sleep(seconds)


async def two_with_video(sfu: SfuController, room: str) -> tuple[Peer, Peer, str]:
    """Alice publishes video in ``room`` and Bob receives it."""
    alice, bob = Peer(sfu, room, "alice"), Peer(sfu, room, "bob")
    for p in (alice, bob):
        await p.join()
    await alice.publish(video=(160, 120), audio=False)
    track = video_track_of(bob, "alice")
    await bob.subscribe(track)
    await wait_until(lambda: (r := bob.video_for(track)) is not None and r.frames >= 5, 5, what="video")
    return alice, bob, track


async def flood_while_stalled(to: list[tuple[str, int]], count: int = 40) -> None:
    """``count`` RTP datagrams to each of ``to`` from a stranger, arriving while the server's
    event loop is stuck for half a second; then the loop runs again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:

        def flood() -> None:
            for seq in range(count):
                for address in to:
                    stranger.sendto(struct.pack("!BBHII", 0x80, 96, seq, 1, 0xBAD) + bytes(100), address)

        sender = threading.Thread(target=flood)
        sender.start()
        stall(0.5)
        sender.join()
    await asyncio.sleep(0.3)


def dropped(sfu: SfuController, reason: str) -> float:
    value = sfu.metrics.registry.get_sample_value("conf_sfu_dropped_packets_total", {"reason": reason})
    return value or 0.0


async def video_goes_on(bob: Peer, track: str) -> None:
    frames = bob.video_for(track).frames  # type: ignore[union-attr]
    await wait_until(
        lambda: bob.video_for(track).frames >= frames + 5,  # type: ignore[union-attr]
        5,
        what="video goes on after the stale datagrams were dropped",
    )


async def test_a_server_that_fell_behind_drops_what_waited_too_long_and_goes_on_forwarding() -> None:
    sfu = SfuController(config(max_receive_delay=0.2))
    alice, bob, track = await two_with_video(sfu, "behind")
    try:
        mux = sfu._ctx.ports  # type: ignore[union-attr]
        assert isinstance(mux, UdpMux)
        await flood_while_stalled([("127.0.0.1", mux.port)])
        # the first datagram of a wake-up is read before its stamp is looked at; the rest waited
        stale = dropped(sfu, "stale")
        assert stale >= 30 and stale + dropped(sfu, "unknown_address") == 40
        waits = sfu.metrics.registry.get_sample_value
        long_waits = waits("conf_sfu_receive_wait_seconds_count") - waits(
            "conf_sfu_receive_wait_seconds_bucket", {"le": "0.25"}
        )
        assert long_waits >= 1  # the oldest waited through the stall
        await video_goes_on(bob, track)
    finally:
        for p in (alice, bob):
            await p.close()
        await sfu.close()


async def test_in_a_port_range_too_what_waited_too_long_is_dropped_and_the_server_sheds() -> None:
    """A socket per connection (``sfu.port_min``/``port_max``) has the same bound: RTP that
    waited through a stalled event loop is dropped as stale, and that is the load-shedding and
    NACK-hold signal, as on the shared port."""
    sfu = SfuController(config(max_receive_delay=0.2, port_min=47160, port_max=47179))
    alice, bob, track = await two_with_video(sfu, "range-behind")
    try:
        ctx = sfu._ctx
        assert ctx is not None and not ctx.shedding() and ctx.load_shedding is not None
        await flood_while_stalled([("127.0.0.1", port) for port in range(47160, 47180)])
        # each of the sockets bound in the range reads its first datagrams of a wake-up unstamped
        assert dropped(sfu, "stale") >= 30 and ctx.shedding()
        waits = sfu.metrics.registry.get_sample_value
        assert waits("conf_sfu_receive_wait_seconds_count") > 0  # measured on these sockets too
        await video_goes_on(bob, track)
    finally:
        for p in (alice, bob):
            await p.close()
        await sfu.close()


def is_nack(data: bytes) -> bool:
    """A generic NACK (RTPFB, FMT 1) at the start of an RTCP packet."""
    return len(data) >= 12 and data[1] == 205 and data[0] & 0x1F == 1


async def test_while_it_drops_stale_media_the_server_asks_publishers_for_no_retransmissions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(7)
    filters = PacketFilters(incoming=lambda data: rng.random() < 0.1)  # gaps the SFU must NACK
    sfu = SfuController(config(max_receive_delay=0.2), None, packet_filters=filters)
    nacks: list[float] = []
    send_rtcp = send.RtpWriter.send_rtcp

    def recording(self: send.RtpWriter, data: bytes) -> bool:
        if is_nack(data):
            nacks.append(time.monotonic())
        return send_rtcp(self, data)

    monkeypatch.setattr(send.RtpWriter, "send_rtcp", recording)
    alice, bob = Peer(sfu, "shedding", "alice"), Peer(sfu, "shedding", "bob")
    try:
        for p in (alice, bob):
            await p.join()
        await alice.publish(video=(320, 240), audio=False)
        track = video_track_of(bob, "alice")
        await bob.subscribe(track)
        await wait_until(lambda: len(nacks) >= 3, 5, what="NACKs for the gaps")
        mux = sfu._ctx.ports  # type: ignore[union-attr]
        assert isinstance(mux, UdpMux) and not mux.shedding()
        (shared,) = [f.result() for f in mux._sockets.values()]
        start = time.monotonic()
        while time.monotonic() - start < 1.5:  # the server keeps finding stale media
            assert shared.guard(1.0, True)
            await asyncio.sleep(0.05)
        assert mux.shedding() and sfu._ctx.shedding()  # type: ignore[union-attr]
        assert [t for t in nacks if t > start] == []
        stopped = time.monotonic()
        await wait_until(lambda: any(t > stopped for t in nacks), 5, what="NACKs again once caught up")
        assert min(t for t in nacks if t > stopped) - stopped >= ports.SHEDDING_HOLD * 0.9
    finally:
        for p in (alice, bob):
            await p.close()
        await sfu.close()


async def test_a_fixed_udp_port_is_used_and_a_taken_one_is_refused_when_the_sfu_starts() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(OSError, match=f"UDP port {port}"):
            SfuController(config(udp_port=port))
    sfu = SfuController(config(udp_port=port))
    alice = Peer(sfu, "fixed", "alice")
    try:
        await alice.join()
        offer = (await alice.expect("subscribe_offer"))["sdp"]
        assert {p for _host, p in candidate_ports(offer)} == {port}
    finally:
        await alice.close()
        await sfu.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONF_SFU_UDP_PORT": "70000"}, "sfu.udp_port"),
        (
            {"CONF_SFU_UDP_PORT": "7882", "CONF_SFU_PORT_MIN": "40000", "CONF_SFU_PORT_MAX": "40999"},
            "not both",
        ),
        ({"CONF_SFU_MAX_RECEIVE_DELAY": "0.01"}, "sfu.max_receive_delay"),
        ({"CONF_SFU_MAX_RECEIVE_DELAY": "-1"}, "sfu.max_receive_delay"),
    ],
)
def test_bad_udp_port_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env)
