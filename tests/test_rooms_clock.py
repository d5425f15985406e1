"""Room time runs on an injected clock: the rejoin grace of a locked room and the empty timeout
are tested to the second, without waiting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from confserver.errors import ServiceError
from confserver.metrics import Metrics
from confserver.rooms import REJOIN_GRACE, JoinRequest, RoomService
from confserver.store import MemoryStore, RoomUpdate


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Peer:
    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.sent: list[str] = []
        self.closed: list[tuple[Mapping[str, Any], int]] = []

    def send_text(self, text: str) -> None:
        self.sent.append(text)

    def close_with(self, msg: Mapping[str, Any], close_code: int) -> None:
        self.closed.append((msg, close_code))


def service(clock: Clock) -> RoomService:
    return RoomService(
        MemoryStore(),
        Metrics.create(process=False),
        node="n1",
        auto_create=False,
        default_max_participants=10,
        auto_created_empty_timeout=300,
        seat_lease=30.0,
        clock=clock,
    )


async def enter(rooms: RoomService, room: str, identity: str, sid: str) -> None:
    req = JoinRequest(
        room=room,
        sid=sid,
        identity=identity,
        name=identity,
        role="participant",
        permissions=frozenset(),
        state={},
    )
    await rooms.join(req, Peer(sid))


async def test_a_locked_room_readmits_who_dropped_off_within_the_grace_and_refuses_later() -> None:
    assert REJOIN_GRACE == 120.0
    clock = Clock(1000.0)
    rooms = service(clock)
    await rooms.admin.create_room("r1", max_participants=None, empty_timeout=0, metadata={})
    await enter(rooms, "r1", "ana", "PA_ana1")
    await enter(rooms, "r1", "budi", "PA_budi1")
    await enter(rooms, "r1", "host", "PA_host")
    await rooms.update_room("r1", RoomUpdate(locked=True))
    await rooms.leave("r1", "PA_budi1", "disconnected")  # budi's network dropped at 1000
    clock.now = 1002.0
    await rooms.leave("r1", "PA_ana1", "disconnected")  # ana's at 1002
    clock.now = 1121.0
    await enter(rooms, "r1", "ana", "PA_ana2")  # 119 s later: back in
    with pytest.raises(ServiceError) as refused:
        await enter(rooms, "r1", "budi", "PA_budi2")  # 121 s later: the lock holds
    assert refused.value.code == "room_locked"
    assert sorted(s.participant.identity for s in rooms.hub.seats("r1")) == ["ana", "host"]


async def test_who_left_on_purpose_gets_no_grace_in_a_locked_room() -> None:
    clock = Clock(1000.0)
    rooms = service(clock)
    await rooms.admin.create_room("r1", max_participants=None, empty_timeout=0, metadata={})
    await enter(rooms, "r1", "ana", "PA_ana1")
    await rooms.update_room("r1", RoomUpdate(locked=True))
    await rooms.leave("r1", "PA_ana1", "left")
    clock.now = 1001.0
    with pytest.raises(ServiceError) as refused:
        await enter(rooms, "r1", "ana", "PA_ana2")
    assert refused.value.code == "room_locked"


async def test_an_empty_room_closes_after_its_empty_timeout_on_the_clock() -> None:
    clock = Clock(5000.0)
    rooms = service(clock)
    await rooms.admin.create_room("r1", max_participants=None, empty_timeout=300, metadata={})
    await enter(rooms, "r1", "ana", "PA_ana")
    clock.now = 5010.0
    await rooms.leave("r1", "PA_ana", "left")  # empty from 5010
    clock.now = 5309.0
    assert await rooms.close_expired_rooms() == []
    assert (await rooms.admin.get_room("r1")).name == "r1"
    clock.now = 5310.0
    assert await rooms.close_expired_rooms() == ["r1"]
    with pytest.raises(ServiceError) as gone:
        await rooms.admin.get_room("r1")
    assert gone.value.code == "room_not_found"


async def test_a_room_with_someone_in_it_never_times_out() -> None:
    clock = Clock(5000.0)
    rooms = service(clock)
    await rooms.admin.create_room("r1", max_participants=None, empty_timeout=60, metadata={})
    await enter(rooms, "r1", "ana", "PA_ana")
    clock.now = 5000.0 + 86400
    await rooms.refresh_leases()
    assert await rooms.close_expired_rooms() == []
    assert [s.participant.identity for s in rooms.hub.seats("r1")] == ["ana"]
