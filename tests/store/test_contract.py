"""The storage contract, run against every implementation through the ``store`` fixture."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio

from confserver.store import (
    ROOM_CAP,
    AdminKey,
    AdminKeyExistsError,
    ClaimResult,
    MemoryStore,
    Participant,
    RedisStore,
    Room,
    RoomExistsError,
    RoomUpdate,
    Store,
    StoreUnavailableError,
    open_store,
)

from ..conftest import free_port
from .conftest import NOW

LEASE = 30.0


def make_room(name: str = "standup", *, max_participants: int = 10, empty_timeout: int = 300,
              **kwargs: Any) -> Room:
    return Room(name=name, max_participants=max_participants, empty_timeout=empty_timeout,
                metadata=kwargs.pop("metadata", {"topic": "daily"}), created_at=NOW, updated_at=NOW,
                **kwargs)


def seat(sid: str, *, room: str = "standup", joined_at: float = NOW, **kwargs: Any) -> Participant:
    return Participant(room=room, sid=sid, identity=kwargs.pop("identity", f"user-{sid}"),
                       name=kwargs.pop("name", f"User {sid}"), role=kwargs.pop("role", "member"),
                       permissions=kwargs.pop("permissions", ("publish", "subscribe")),
                       joined_at=joined_at, node=kwargs.pop("node", "node-a"), **kwargs)


async def claim(store: Store, sid: str, *, now: float = NOW, lease: float = LEASE, room: str = "standup",
                auto_create: Room | None = None) -> ClaimResult:
    return await store.seats.claim(seat(sid, room=room, joined_at=now), now=now, lease=lease,
                                   auto_create=auto_create)


# --- rooms -------------------------------------------------------------------------------------


async def test_created_room_reads_back_equal(store: Store) -> None:
    room = make_room(metadata={"topic": "daily", "tags": ["a", "b"], "n": 1.5}, locked=True)
    await store.rooms.create(room)
    assert await store.rooms.get("standup") == room
    assert await store.rooms.get("missing") is None


async def test_create_existing_room_raises(store: Store) -> None:
    await store.rooms.create(make_room())
    with pytest.raises(RoomExistsError):
        await store.rooms.create(make_room(max_participants=3))
    got = await store.rooms.get("standup")
    assert got is not None and got.max_participants == 10


async def test_list_rooms_sorted_by_name(store: Store) -> None:
    for name in ["zeta", "alpha", "mid:dle", "Beta"]:
        await store.rooms.create(make_room(name))
    assert [r.name for r in await store.rooms.list()] == ["Beta", "alpha", "mid:dle", "zeta"]


async def test_update_changes_only_given_fields(store: Store) -> None:
    await store.rooms.create(make_room())
    updated = await store.rooms.update("standup", RoomUpdate(max_participants=4), NOW + 5)
    expected = Room(name="standup", max_participants=4, empty_timeout=300, metadata={"topic": "daily"},
                    created_at=NOW, updated_at=NOW + 5)
    assert updated == expected
    assert await store.rooms.get("standup") == expected
    final = await store.rooms.update(
        "standup", RoomUpdate(empty_timeout=0, metadata={"x": 1}, locked=True), NOW + 9)
    assert final == Room(name="standup", max_participants=4, empty_timeout=0, metadata={"x": 1},
                         created_at=NOW, updated_at=NOW + 9, locked=True)


async def test_e2ee_option_reads_back_and_changes_alone(store: Store) -> None:
    await store.rooms.create(make_room(e2ee=True, lobby=True))
    got = await store.rooms.get("standup")
    assert got is not None and got.e2ee is True and got.lobby is True
    off = await store.rooms.update("standup", RoomUpdate(e2ee=False), NOW + 5)
    assert off is not None and off.e2ee is False and off.lobby is True
    again = await store.rooms.get("standup")
    assert again is not None and again.e2ee is False
    unchanged = await store.rooms.update("standup", RoomUpdate(locked=True), NOW + 6)
    assert unchanged is not None and unchanged.e2ee is False and unchanged.locked is True


async def test_update_of_missing_room_returns_none(store: Store) -> None:
    assert await store.rooms.update("missing", RoomUpdate(locked=True), NOW) is None
    assert await store.rooms.get("missing") is None


async def test_delete_removes_seats(store: Store) -> None:
    await store.rooms.create(make_room())
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    assert await store.rooms.delete("standup") is True
    assert await store.rooms.get("standup") is None
    assert await store.rooms.list() == []
    assert await store.seats.count("standup", NOW) == 0
    await store.rooms.create(make_room())
    assert await store.seats.list("standup", NOW) == []
    assert await store.seats.get("standup", "s1", NOW) is None


async def test_delete_of_missing_room_returns_false(store: Store) -> None:
    assert await store.rooms.delete("missing") is False


# --- claims ------------------------------------------------------------------------------------


async def test_claim_on_missing_room_is_room_not_found(store: Store) -> None:
    assert await claim(store, "s1") is ClaimResult.ROOM_NOT_FOUND
    assert await store.rooms.get("standup") is None


async def test_auto_create_on_claim(store: Store) -> None:
    template = make_room(max_participants=2, auto_created=True)
    assert await claim(store, "s1", auto_create=template) is ClaimResult.ADMITTED
    assert await store.rooms.get("standup") == template
    assert [r.name for r in await store.rooms.list()] == ["standup"]
    assert await store.seats.count("standup", NOW) == 1


async def test_auto_create_leaves_existing_room_untouched(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=1))
    template = make_room(max_participants=50, auto_created=True)
    assert await claim(store, "s1", auto_create=template) is ClaimResult.ADMITTED
    assert await claim(store, "s2", auto_create=template) is ClaimResult.ROOM_FULL
    got = await store.rooms.get("standup")
    assert got is not None and got.max_participants == 1 and not got.auto_created


async def test_duplicate_sid_is_refused(store: Store) -> None:
    await store.rooms.create(make_room())
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    assert await claim(store, "s1", now=NOW + 1) is ClaimResult.DUPLICATE
    assert await store.seats.count("standup", NOW + 1) == 1


async def test_locked_room_refuses_claims(store: Store) -> None:
    await store.rooms.create(make_room())
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    await store.rooms.update("standup", RoomUpdate(locked=True), NOW)
    assert await claim(store, "s2") is ClaimResult.ROOM_LOCKED
    assert [p.sid for p in await store.seats.list("standup", NOW)] == ["s1"]
    await store.rooms.update("standup", RoomUpdate(locked=False), NOW)
    assert await claim(store, "s2") is ClaimResult.ADMITTED


async def test_reconnecting_participant_may_bypass_the_lock_but_not_the_cap(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=2, locked=True))
    rejoin = seat("back", joined_at=NOW)
    assert await store.seats.claim(rejoin, now=NOW, lease=LEASE, bypass_lock=True) is ClaimResult.ADMITTED
    assert await claim(store, "stranger") is ClaimResult.ROOM_LOCKED
    other = seat("back-2", joined_at=NOW)
    assert await store.seats.claim(other, now=NOW, lease=LEASE, bypass_lock=True) is ClaimResult.ADMITTED
    third = seat("back-3", joined_at=NOW)
    assert await store.seats.claim(third, now=NOW, lease=LEASE, bypass_lock=True) is ClaimResult.ROOM_FULL


async def test_full_room_refuses_claims(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=2))
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    assert await claim(store, "s2") is ClaimResult.ADMITTED
    assert await claim(store, "s3") is ClaimResult.ROOM_FULL
    assert await store.seats.count("standup", NOW) == 2


async def test_lowered_max_participants_refuses_new_claims_but_keeps_existing_seats(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=5))
    for sid in ["s1", "s2", "s3"]:
        assert await claim(store, sid) is ClaimResult.ADMITTED
    await store.rooms.update("standup", RoomUpdate(max_participants=1), NOW)
    assert await claim(store, "s4") is ClaimResult.ROOM_FULL
    assert await store.seats.count("standup", NOW) == 3
    assert await store.seats.release("standup", "s1", NOW) is True
    assert await store.seats.release("standup", "s2", NOW) is True
    assert await claim(store, "s5") is ClaimResult.ROOM_FULL


async def test_room_cap_bounds_seats_whatever_max_participants_says(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=ROOM_CAP + 50))
    results = [await claim(store, f"s{i}") for i in range(ROOM_CAP + 1)]
    assert results.count(ClaimResult.ADMITTED) == ROOM_CAP
    assert results[-1] is ClaimResult.ROOM_FULL


async def test_concurrent_claims_on_k_free_seats_admit_exactly_k(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=12))
    assert await claim(store, "early-1") is ClaimResult.ADMITTED
    assert await claim(store, "early-2") is ClaimResult.ADMITTED
    results = await asyncio.gather(*(claim(store, f"c{i}") for i in range(50)))
    assert results.count(ClaimResult.ADMITTED) == 10
    assert results.count(ClaimResult.ROOM_FULL) == 40
    assert await store.seats.count("standup", NOW) == 12


async def test_concurrent_auto_creating_claims_create_the_room_once(store: Store) -> None:
    template = make_room(max_participants=3, auto_created=True)
    results = await asyncio.gather(*(claim(store, f"c{i}", auto_create=template) for i in range(20)))
    assert results.count(ClaimResult.ADMITTED) == 3
    assert results.count(ClaimResult.ROOM_FULL) == 17
    assert await store.rooms.list() == [template]


# --- leases ------------------------------------------------------------------------------------


async def test_lapsed_seat_frees_its_place(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=1))
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    assert await claim(store, "s2", now=NOW + LEASE - 1) is ClaimResult.ROOM_FULL
    assert await store.seats.get("standup", "s1", NOW + LEASE) is None
    assert await store.seats.count("standup", NOW + LEASE) == 0
    assert await claim(store, "s2", now=NOW + LEASE) is ClaimResult.ADMITTED
    assert [p.sid for p in await store.seats.list("standup", NOW + LEASE)] == ["s2"]


async def test_refresh_keeps_seat_alive(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=1))
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    assert await store.seats.refresh("standup", ["s1"], now=NOW + 20, lease=LEASE) == []
    later = NOW + 45
    assert await store.seats.count("standup", later) == 1
    assert await claim(store, "s2", now=later) is ClaimResult.ROOM_FULL
    assert await store.seats.get("standup", "s1", NOW + 20 + LEASE) is None


async def test_refresh_does_not_revive_a_lapsed_seat(store: Store) -> None:
    await store.rooms.create(make_room())
    assert await claim(store, "old") is ClaimResult.ADMITTED
    assert await claim(store, "new", now=NOW + 20) is ClaimResult.ADMITTED
    lost = await store.seats.refresh("standup", ["old", "new", "new", "ghost"], now=NOW + 40, lease=LEASE)
    assert lost == ["old", "ghost"]
    assert [p.sid for p in await store.seats.list("standup", NOW + 40)] == ["new"]
    assert await store.seats.refresh("missing", ["a", "b", "a"], now=NOW, lease=LEASE) == ["a", "b"]
    assert await store.seats.refresh("standup", [], now=NOW + 40, lease=LEASE) == []


async def test_seat_lapsed_in_an_outage_is_claimed_again_only_within_the_cap(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=2))
    for sid in ("a", "b"):
        assert await claim(store, sid) is ClaimResult.ADMITTED
    await store.rooms.update("standup", RoomUpdate(locked=True), NOW)
    later = NOW + LEASE + 10  # no refresh for longer than the lease: both seats lapsed
    newcomer = seat("c", joined_at=later)
    assert await store.seats.claim(newcomer, now=later, lease=LEASE, bypass_lock=True) is ClaimResult.ADMITTED
    assert await store.seats.refresh("standup", ["a", "b"], now=later, lease=LEASE) == ["a", "b"]
    again = [await store.seats.claim(seat(s), now=later, lease=LEASE, bypass_lock=True) for s in ("a", "b")]
    assert again == [ClaimResult.ADMITTED, ClaimResult.ROOM_FULL]
    assert [p.sid for p in await store.seats.list("standup", later)] == ["a", "c"]
    assert (await store.seats.get("standup", "a", later)) == seat("a")


async def test_release_frees_the_seat_once(store: Store) -> None:
    await store.rooms.create(make_room(max_participants=1))
    assert await claim(store, "s1") is ClaimResult.ADMITTED
    assert await store.seats.release("standup", "s1", NOW + 1) is True
    assert await store.seats.release("standup", "s1", NOW + 1) is False
    assert await store.seats.release("missing", "s1", NOW + 1) is False
    assert await claim(store, "s2", now=NOW + 1) is ClaimResult.ADMITTED


# --- empty timeout -----------------------------------------------------------------------------


async def test_release_of_last_seat_starts_empty_timeout(store: Store) -> None:
    await store.rooms.create(make_room(empty_timeout=60))
    await claim(store, "s1", lease=1000)
    await claim(store, "s2", lease=1000)
    await store.seats.release("standup", "s1", NOW + 10)
    assert await store.rooms.close_expired(NOW + 100) == []
    await store.seats.release("standup", "s2", NOW + 20)
    assert await store.rooms.close_expired(NOW + 79) == []
    assert await store.rooms.close_expired(NOW + 80) == ["standup"]
    assert await store.rooms.get("standup") is None
    assert await store.rooms.close_expired(NOW + 1000) == []


async def test_room_never_joined_is_not_closed(store: Store) -> None:
    await store.rooms.create(make_room(empty_timeout=1))
    await store.rooms.update("standup", RoomUpdate(empty_timeout=2), NOW)
    assert await store.rooms.close_expired(NOW + 10_000) == []
    assert await store.rooms.get("standup") is not None


async def test_room_with_zero_empty_timeout_stays_until_deleted(store: Store) -> None:
    await store.rooms.create(make_room(empty_timeout=0))
    await claim(store, "s1")
    await store.seats.release("standup", "s1", NOW + 1)
    assert await store.rooms.close_expired(NOW + 10_000) == []
    assert await store.rooms.get("standup") is not None


async def test_room_emptied_by_lapse_closes_timeout_after_the_lapse(store: Store) -> None:
    await store.rooms.create(make_room(empty_timeout=60))
    await claim(store, "s1")
    await claim(store, "s2", now=NOW + 10)
    assert await store.rooms.close_expired(NOW + 15) == []
    lapsed_at = NOW + 10 + LEASE
    assert await store.rooms.close_expired(lapsed_at + 59) == []
    assert await store.rooms.close_expired(lapsed_at + 60) == ["standup"]


async def test_occupied_or_rejoined_room_is_not_closed(store: Store) -> None:
    await store.rooms.create(make_room("busy", empty_timeout=60))
    await store.rooms.create(make_room("back", empty_timeout=60))
    await claim(store, "s1", room="busy")
    await claim(store, "s2", room="back")
    await store.seats.release("back", "s2", NOW + 1)
    await claim(store, "s3", room="back", now=NOW + 30)
    await store.seats.refresh("busy", ["s1"], now=NOW + 25, lease=LEASE)
    await store.seats.refresh("back", ["s3"], now=NOW + 50, lease=LEASE)
    assert await store.rooms.close_expired(NOW + 70) == []
    assert {r.name for r in await store.rooms.list()} == {"busy", "back"}


async def test_shortened_empty_timeout_applies_to_an_already_empty_room(store: Store) -> None:
    await store.rooms.create(make_room(empty_timeout=3600))
    await claim(store, "s1")
    await store.seats.release("standup", "s1", NOW + 5)
    await store.rooms.update("standup", RoomUpdate(empty_timeout=10), NOW + 6)
    assert await store.rooms.close_expired(NOW + 14) == []
    assert await store.rooms.close_expired(NOW + 15) == ["standup"]


# --- participants ------------------------------------------------------------------------------


async def test_participant_reads_back_equal(store: Store) -> None:
    await store.rooms.create(make_room())
    p = seat("s1", identity="ana", name="Ana Ñ 🎥", role="host", permissions=("admin", "publish"),
             node="node-7", state={"audio_muted": True, "volume": 0.25})
    assert await store.seats.claim(p, now=NOW, lease=LEASE) is ClaimResult.ADMITTED
    assert await store.seats.get("standup", "s1", NOW) == p
    assert await store.seats.get("standup", "nope", NOW) is None
    assert await store.seats.list("standup", NOW) == [p]


async def test_list_participants_oldest_first(store: Store) -> None:
    await store.rooms.create(make_room())
    for sid, joined in [("c", NOW + 2), ("a", NOW + 3), ("b", NOW + 1), ("d", NOW + 2)]:
        await store.seats.claim(seat(sid, joined_at=joined), now=joined, lease=LEASE)
    listed = await store.seats.list("standup", NOW + 3)
    assert [p.sid for p in listed] == ["b", "c", "d", "a"]
    assert await store.seats.list("missing", NOW) == []


async def test_update_state_merges(store: Store) -> None:
    await store.rooms.create(make_room())
    await store.seats.claim(seat("s1", state={"audio_muted": False, "video_muted": False}),
                            now=NOW, lease=LEASE)
    change = {"audio_muted": True, "hand_raised": True, "label": "ö/\"x\"", "n": [1, {"k": None}]}
    updated = await store.seats.update_state("standup", "s1", change)
    expected_state = {"video_muted": False, **change}
    assert updated is not None and dict(updated.state) == expected_state
    assert updated == seat("s1", state=expected_state)
    got = await store.seats.get("standup", "s1", NOW)
    assert got is not None and dict(got.state) == expected_state
    unchanged = await store.seats.update_state("standup", "s1", {})
    assert unchanged is not None and dict(unchanged.state) == expected_state


async def test_update_state_of_missing_seat_returns_none(store: Store) -> None:
    await store.rooms.create(make_room())
    assert await store.seats.update_state("standup", "nope", {"audio_muted": True}) is None
    assert await store.seats.update_state("missing", "nope", {"audio_muted": True}) is None


# --- revocations and service -------------------------------------------------------------------


async def test_revocation_remembered_until_expiry(store: Store) -> None:
    assert await store.revocations.is_revoked("jti-1", NOW) is False
    await store.revocations.revoke("jti-1", expires_at=NOW + 600, now=NOW)
    assert await store.revocations.is_revoked("jti-1", NOW + 599) is True
    assert await store.revocations.is_revoked("jti-1", NOW + 600) is False
    assert await store.revocations.is_revoked("jti-2", NOW + 1) is False
    await store.revocations.revoke("jti-1", expires_at=NOW + 100, now=NOW)
    assert await store.revocations.is_revoked("jti-1", NOW + 300) is True
    await store.revocations.revoke("jti-3", expires_at=NOW - 1, now=NOW)
    assert await store.revocations.is_revoked("jti-3", NOW - 10) is False


# --- admin keys ----------------------------------------------------------------------------------


def admin_key(key_id: str, *, created_at: float = NOW, **kwargs: Any) -> AdminKey:
    return AdminKey(id=key_id, name=kwargs.pop("name", f"holder of {key_id}"),
                    scopes=kwargs.pop("scopes", ("rooms:read", "tokens:create")), created_at=created_at,
                    **kwargs)


async def test_admin_key_reads_back_equal(store: Store) -> None:
    key = admin_key("AKone", name="Ana Lima — ops", created_at=NOW + 0.25)
    await store.admin_keys.add(key)
    assert await store.admin_keys.get("AKone") == key
    assert await store.admin_keys.get("AKmissing") is None


async def test_admin_key_id_is_taken_once(store: Store) -> None:
    await store.admin_keys.add(admin_key("AKone"))
    with pytest.raises(AdminKeyExistsError):
        await store.admin_keys.add(admin_key("AKone", name="someone else", scopes=("keys:admin",)))
    got = await store.admin_keys.get("AKone")
    assert got is not None and got.scopes == ("rooms:read", "tokens:create")


async def test_admin_keys_listed_oldest_first_revoked_ones_too(store: Store) -> None:
    assert await store.admin_keys.list() == []
    await store.admin_keys.add(admin_key("AKb", created_at=NOW + 2))
    await store.admin_keys.add(admin_key("AKc", created_at=NOW + 1))
    await store.admin_keys.add(admin_key("AKa", created_at=NOW + 2))
    await store.admin_keys.revoke("AKc", NOW + 3)
    keys = await store.admin_keys.list()
    assert [k.id for k in keys] == ["AKc", "AKa", "AKb"]
    assert [k.revoked for k in keys] == [True, False, False]


async def test_admin_key_revocation_is_kept_with_its_first_time(store: Store) -> None:
    await store.admin_keys.add(admin_key("AKone"))
    revoked = await store.admin_keys.revoke("AKone", NOW + 10)
    assert revoked == admin_key("AKone", revoked_at=NOW + 10) and revoked.revoked
    again = await store.admin_keys.revoke("AKone", NOW + 20)
    assert again is not None and again.revoked_at == NOW + 10
    assert await store.admin_keys.get("AKone") == revoked
    assert await store.admin_keys.revoke("AKmissing", NOW) is None
    assert await store.admin_keys.get("AKmissing") is None


async def test_ping_answers(store: Store) -> None:
    assert await store.ping() is True


async def test_state_stays_intact_while_the_store_keeps_its_data(store: Store) -> None:
    assert await store.state_intact(NOW) is True
    await store.rooms.create(make_room())
    assert await store.state_intact(NOW + 1) is True
    assert await store.state_intact(NOW + 2) is True


@pytest.mark.redis
async def test_redis_that_restarted_empty_is_reported_as_state_lost(redis_url: str) -> None:
    prefix = "epoch:"
    node_a = await open_store("redis", redis_url=redis_url, prefix=prefix)
    node_b = await open_store("redis", redis_url=redis_url, prefix=prefix)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await node_a.state_intact(NOW) is True
        assert await node_b.state_intact(NOW + 1) is True  # the same epoch: written once
        await node_a.revocations.revoke("jti-1", expires_at=NOW + 600, now=NOW)
        await client.flushdb()  # what a Redis without persistence holds after a restart
        assert await node_a.state_intact(NOW + 2) is False
        # a node started afterwards writes a new epoch; the nodes that saw the old one stay lost
        node_c = await open_store("redis", redis_url=redis_url, prefix=prefix)
        try:
            assert await node_c.state_intact(NOW + 3) is True
        finally:
            await node_c.close()
        assert await node_a.state_intact(NOW + 4) is False
        assert await node_b.state_intact(NOW + 4) is False
        # the node that revoked the token still refuses it; Redis forgot it
        assert await node_a.revocations.is_revoked("jti-1", NOW + 5) is True
        assert await node_b.revocations.is_revoked("jti-1", NOW + 5) is False
    finally:
        await client.flushdb()
        await client.aclose()
        await node_a.close()
        await node_b.close()


@pytest.mark.redis
async def test_redis_room_written_before_the_e2ee_option_reads_as_not_encrypted(redis_url: str) -> None:
    prefix = f"old:{NOW}:"
    impl = await open_store("redis", redis_url=redis_url, prefix=prefix)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await impl.rooms.create(make_room(e2ee=True))
        await client.hdel(f"{prefix}room:standup", "e2ee")  # as an older server wrote it
        got = await impl.rooms.get("standup")
        assert got is not None and got.e2ee is False and got.max_participants == 10
    finally:
        await client.flushdb()
        await client.aclose()
        await impl.close()


@pytest.mark.redis
async def test_redis_revocation_seen_once_is_remembered_by_the_node(redis_url: str) -> None:
    issuer = await open_store("redis", redis_url=redis_url, prefix="seen:")
    checker = await open_store("redis", redis_url=redis_url, prefix="seen:")
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await issuer.revocations.revoke("jti-1", expires_at=NOW + 600, now=NOW)
        assert await checker.revocations.is_revoked("jti-1", NOW + 1) is True
        await client.flushdb()
        assert await checker.revocations.is_revoked("jti-1", NOW + 2) is True
        assert await checker.revocations.is_revoked("jti-1", NOW + 600) is False
    finally:
        await client.flushdb()
        await client.aclose()
        await issuer.close()
        await checker.close()


async def test_redis_store_unreachable_raises_store_unavailable() -> None:
    unreachable = await open_store("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(unreachable, RedisStore)
    try:
        assert await unreachable.ping() is False
        with pytest.raises(StoreUnavailableError):
            await unreachable.rooms.get("standup")
        with pytest.raises(StoreUnavailableError):
            await unreachable.seats.claim(seat("s1"), now=NOW, lease=LEASE)
    finally:
        await unreachable.close()


@pytest.mark.redis
async def test_redis_leaves_no_room_keys_behind_and_revocations_expire(redis_url: str) -> None:
    store = await open_store("redis", redis_url=redis_url, prefix="hygiene:")
    assert isinstance(store, RedisStore)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await store.rooms.create(make_room(empty_timeout=10))
        await claim(store, "s1")
        await store.seats.update_state("standup", "s1", {"hand_raised": True})
        await store.seats.release("standup", "s1", NOW + 1)
        assert await store.rooms.close_expired(NOW + 11) == ["standup"]
        assert await client.keys("hygiene:*") == []
        await store.revocations.revoke("jti-1", expires_at=NOW + 600, now=NOW)
        ttl_ms = await client.pttl("hygiene:revoked:jti-1")
        assert 600_000 <= ttl_ms <= 660_000
    finally:
        await client.flushdb()
        await client.aclose()
        await store.close()


async def test_open_store_picks_implementation_by_kind() -> None:
    assert isinstance(await open_store("memory"), MemoryStore)
    with pytest.raises(ValueError, match="memory"):
        await open_store("etcd")
