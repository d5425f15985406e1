"""Redis-backed store shared by every node; each write is one Lua script, so it is atomic.

Keys (under ``prefix``): ``rooms`` (ZSET index of names); ``closing`` (ZSET room -> a lower bound of
its close time, re-checked and re-scored by ``close_expired``); per room ``room:N`` (hash of JSON
fields), ``seats:N`` (ZSET sid -> lease expiry), ``seat:N`` (hash sid -> participant JSON),
``state:N`` (hash sid -> presence JSON); ``revoked:J`` per revoked token id (with a TTL);
``adminkeys`` (hash key id -> JSON of id, name, scopes, created_at) and ``adminkeys:revoked`` (hash key
id -> revocation time), kept without a TTL; ``epoch``
(JSON id and creation time, written once: its loss shows that Redis restarted empty). Rooms and
seats get no TTL: rooms live until deleted, a TTL would lose the empty-timeout clock, and the scripts
prune lapsed seats.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.commands.core import AsyncScript

from confserver.store.base import (
    ROOM_CAP,
    AdminKey,
    AdminKeyExistsError,
    AdminKeyStore,
    ClaimResult,
    Participant,
    RevocationStore,
    Room,
    RoomExistsError,
    RoomStore,
    RoomUpdate,
    SeatStore,
    StoreUnavailableError,
)
from confserver.store.memory import MemoryRevocationStore
from confserver.store.rediscodec import (
    decode_admin_key as _decode_admin_key,
)
from confserver.store.rediscodec import (
    decode_participant as _decode_participant,
)
from confserver.store.rediscodec import (
    decode_room as _decode_room,
)
from confserver.store.rediscodec import (
    encode_participant as _encode_participant,
)
from confserver.store.rediscodec import (
    num as _num,
)
from confserver.store.rediscodec import (
    room_pairs as _room_pairs,
)
from confserver.store.rediscodec import (
    text as _text,
)

_REVOCATION_GRACE = 60.0
"""Seconds a revocation key outlives the token, covering clock skew between nodes."""
CLOSE_TIMEOUT = 5.0
"""Seconds closing the connections may take before it is abandoned."""

log = logging.getLogger("confserver.store.redis")

_PRELUDE = """
local room_key, seats_key, info_key, state_key, index_key, closing_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local name = ARGV[1]
local function fmt(x) return string.format('%.17g', x) end
local function timeout_of()
  return tonumber(redis.call('HGET', room_key, 'empty_timeout') or '0') or 0
end
local function mark_empty(since)
  redis.call('HSET', room_key, 'empty_since', since)
  local timeout = timeout_of()
  if timeout > 0 then redis.call('ZADD', closing_key, fmt(tonumber(since) + timeout), name)
  else redis.call('ZREM', closing_key, name) end
end
local function forget(sid) redis.call('HDEL', info_key, sid); redis.call('HDEL', state_key, sid) end
local function prune(now)
  local gone = redis.call('ZRANGEBYSCORE', seats_key, '-inf', now, 'WITHSCORES')
  if #gone == 0 then return end
  for i = 1, #gone, 2 do forget(gone[i]) end
  redis.call('ZREMRANGEBYSCORE', seats_key, '-inf', now)
  if redis.call('ZCARD', seats_key) == 0 then mark_empty(gone[#gone]) end
end
local function drop_room()
  local existed = redis.call('DEL', room_key)
  redis.call('DEL', seats_key, info_key, state_key)
  redis.call('ZREM', index_key, name)
  redis.call('ZREM', closing_key, name)
  return existed
end
"""

# ARGV: name, now, expiry, sid, participant JSON, state JSON, bypass lock ('1'/'0'),
#       [room field/value pairs to auto-create]
_CLAIM = f"""
local now, expiry, sid = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', room_key) == 0 then
  if #ARGV < 8 then return 'room_not_found' end
  redis.call('HSET', room_key, unpack(ARGV, 8))
  redis.call('ZADD', index_key, 0, name)
end
prune(now)
if redis.call('ZSCORE', seats_key, sid) then return 'duplicate' end
if ARGV[7] ~= '1' and redis.call('HGET', room_key, 'locked') == 'true' then return 'room_locked' end
local limit = math.min(tonumber(redis.call('HGET', room_key, 'max_participants')) or 0, {ROOM_CAP})
if redis.call('ZCARD', seats_key) >= limit then return 'room_full' end
redis.call('ZADD', seats_key, expiry, sid)
redis.call('HSET', info_key, sid, ARGV[5])
redis.call('HSET', state_key, sid, ARGV[6])
redis.call('HDEL', room_key, 'empty_since')
local timeout = timeout_of()
if timeout > 0 then redis.call('ZADD', closing_key, 'LT', fmt(tonumber(expiry) + timeout), name) end
return 'admitted'
"""

# ARGV: name, now, sid
_RELEASE = """
if redis.call('EXISTS', room_key) == 0 then return 0 end
prune(ARGV[2])
if redis.call('ZREM', seats_key, ARGV[3]) == 0 then return 0 end
forget(ARGV[3])
if redis.call('ZCARD', seats_key) == 0 then mark_empty(ARGV[2]) end
return 1
"""

# ARGV: name, now, new expiry, sids... Returns the sids that hold no seat.
_REFRESH = """
local lost = {}
local exists = redis.call('EXISTS', room_key) == 1
if exists then prune(ARGV[2]) end
for i = 4, #ARGV do
  if exists and redis.call('ZSCORE', seats_key, ARGV[i]) then
    redis.call('ZADD', seats_key, 'XX', 'GT', ARGV[3], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# ARGV: name, sid, key/value pairs (each value JSON-encoded; the stored object maps key -> JSON text)
_UPDATE_STATE = """
local current = redis.call('HGET', state_key, ARGV[2])
if not current then return false end
if #ARGV > 2 then
  local state = cjson.decode(current)
  for i = 3, #ARGV, 2 do state[ARGV[i]] = ARGV[i + 1] end
  current = cjson.encode(state)
  redis.call('HSET', state_key, ARGV[2], current)
end
return {redis.call('HGET', info_key, ARGV[2]), current}
"""

# ARGV: name, now, [sid]. Live seats (only ``sid`` if given) as flat detail/state pairs.
_LIST_SEATS = """
local sids = ARGV[3] and {ARGV[3]} or redis.call('ZRANGEBYSCORE', seats_key, '(' .. ARGV[2], '+inf')
local out = {}
for _, sid in ipairs(sids) do
  local score = redis.call('ZSCORE', seats_key, sid)
  if score and tonumber(score) > tonumber(ARGV[2]) then
    out[#out + 1] = redis.call('HGET', info_key, sid)
    out[#out + 1] = redis.call('HGET', state_key, sid)
  end
end
return out
"""

# ARGV: name, field/value pairs
_CREATE = """
if redis.call('EXISTS', room_key) == 1 then return 0 end
redis.call('HSET', room_key, unpack(ARGV, 2))
redis.call('ZADD', index_key, 0, name)
return 1
"""

# ARGV: name, new empty_timeout or '', field/value pairs
_UPDATE = """
if redis.call('EXISTS', room_key) == 0 then return false end
redis.call('HSET', room_key, unpack(ARGV, 3))
if ARGV[2] == '' then -- empty_timeout unchanged
elseif tonumber(ARGV[2]) > 0 then redis.call('ZADD', closing_key, '-inf', name) -- re-check soon
else redis.call('ZREM', closing_key, name) end
return redis.call('HGETALL', room_key)
"""

_DELETE = "return drop_room()"

# ARGV: name, now. Re-checks one candidate of the closing index; 1 if the room was closed.
_CLOSE = """
if redis.call('EXISTS', room_key) == 0 then redis.call('ZREM', closing_key, name) return 0 end
local timeout = timeout_of()
if timeout <= 0 then redis.call('ZREM', closing_key, name) return 0 end
prune(ARGV[2])
local first = redis.call('ZRANGE', seats_key, 0, 0, 'WITHSCORES')
if #first > 0 then redis.call('ZADD', closing_key, fmt(tonumber(first[2]) + timeout), name) return 0 end
local since = redis.call('HGET', room_key, 'empty_since')
if not since then redis.call('ZREM', closing_key, name) return 0 end
local deadline = tonumber(since) + timeout
if deadline <= tonumber(ARGV[2]) then drop_room() return 1 end
redis.call('ZADD', closing_key, fmt(deadline), name)
return 0
"""

# KEYS: revoked key. ARGV: expires_at, ttl in ms
_REVOKE = """
local old = redis.call('GET', KEYS[1])
if old and tonumber(old) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailableError(str(exc) or type(exc).__name__) from exc


# KEYS: keys hash, revoked hash. ARGV: key id, now. Returns 0 if there is no such key.
_REVOKE_ADMIN_KEY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


class _Backend:
    """The client, key names and registered scripts shared by the three stores."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.index = f"{prefix}rooms"
        self.closing = f"{prefix}closing"

        def room_script(body: str) -> AsyncScript:
            return client.register_script(_PRELUDE + body)

        self.claim = room_script(_CLAIM)
        self.release = room_script(_RELEASE)
        self.refresh = room_script(_REFRESH)
        self.update_state = room_script(_UPDATE_STATE)
        self.list_seats = room_script(_LIST_SEATS)
        self.create = room_script(_CREATE)
        self.update = room_script(_UPDATE)
        self.delete = room_script(_DELETE)
        self.close = room_script(_CLOSE)
        self.revoke = client.register_script(_REVOKE)
        self.revoke_admin_key = client.register_script(_REVOKE_ADMIN_KEY)

    def keys(self, name: str) -> list[str]:
        """The KEYS of a room script: room, seats, seat details, seat states, index, closing."""
        p = self.prefix
        return [
            f"{p}room:{name}",
            f"{p}seats:{name}",
            f"{p}seat:{name}",
            f"{p}state:{name}",
            self.index,
            self.closing,
        ]


class _Part:
    def __init__(self, backend: _Backend) -> None:
        self._b = backend


class RedisRoomStore(_Part):
    async def create(self, room: Room) -> None:
        with _translate_errors():
            created = await self._b.create(self._b.keys(room.name), [room.name, *_room_pairs(room)])
        if not int(created):
            raise RoomExistsError(room.name)

    async def get(self, name: str) -> Room | None:
        with _translate_errors():
            raw = await self._b.client.hgetall(self._b.keys(name)[0])
        return _decode_room(raw)

    async def list(self) -> list[Room]:
        with _translate_errors():
            names = [_text(n) for n in await self._b.client.zrange(self._b.index, 0, -1)]
            async with self._b.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._b.keys(name)[0])
                replies = await pipe.execute()
        rooms = [_decode_room(raw) for raw in replies]
        return sorted((r for r in rooms if r is not None), key=lambda r: r.name)

    async def update(self, name: str, changes: RoomUpdate, now: float) -> Room | None:
        given = {
            "max_participants": changes.max_participants,
            "empty_timeout": changes.empty_timeout,
            "metadata": None if changes.metadata is None else dict(changes.metadata),
            "locked": changes.locked,
            "lobby": changes.lobby,
            "password_hash": changes.password_hash,
            "allow": None if changes.allow is None else dict(changes.allow),
            "e2ee": changes.e2ee,
        }
        pairs = ["updated_at", json.dumps(float(now))]
        pairs += [x for key, value in given.items() if value is not None for x in (key, json.dumps(value))]
        timeout = "" if changes.empty_timeout is None else str(int(changes.empty_timeout))
        with _translate_errors():
            raw = await self._b.update(self._b.keys(name), [name, timeout, *pairs])
        return None if raw is None else _decode_room(raw)

    async def delete(self, name: str) -> bool:
        with _translate_errors():
            return bool(int(await self._b.delete(self._b.keys(name), [name])))

    async def close_expired(self, now: float) -> builtins.list[str]:
        closed: list[str] = []
        with _translate_errors():
            due = await self._b.client.zrangebyscore(self._b.closing, "-inf", _num(now))
            for name in (_text(n) for n in due):
                if int(await self._b.close(self._b.keys(name), [name, _num(now)])):
                    closed.append(name)
        return sorted(closed)


class RedisSeatStore(_Part):
    async def claim(
        self,
        participant: Participant,
        *,
        now: float,
        lease: float,
        auto_create: Room | None = None,
        bypass_lock: bool = False,
    ) -> ClaimResult:
        name = participant.room
        args = [
            name,
            _num(now),
            _num(now + lease),
            participant.sid,
            *_encode_participant(participant),
            "1" if bypass_lock else "0",
        ]
        if auto_create is not None:
            if auto_create.name != name:
                raise ValueError("auto_create.name must equal participant.room")
            args += _room_pairs(auto_create)
        with _translate_errors():
            reply = await self._b.claim(self._b.keys(name), args)
        return ClaimResult(_text(reply))

    async def release(self, room: str, sid: str, now: float) -> bool:
        with _translate_errors():
            return bool(int(await self._b.release(self._b.keys(room), [room, _num(now), sid])))

    async def refresh(
        self, room: str, sids: Sequence[str], *, now: float, lease: float
    ) -> builtins.list[str]:
        unique = list(dict.fromkeys(sids))
        if not unique:
            return []
        args = [room, _num(now), _num(now + lease), *unique]
        with _translate_errors():
            reply = await self._b.refresh(self._b.keys(room), args)
        return [_text(sid) for sid in reply]

    async def update_state(self, room: str, sid: str, state: Mapping[str, Any]) -> Participant | None:
        args = [room, sid]
        for key, value in state.items():
            args += [str(key), json.dumps(value)]
        with _translate_errors():
            reply = await self._b.update_state(self._b.keys(room), args)
        return None if reply is None else _decode_participant(reply[0], reply[1])

    async def _seats(self, room: str, now: float, *sid: str) -> builtins.list[Participant]:
        with _translate_errors():
            reply = await self._b.list_seats(self._b.keys(room), [room, _num(now), *sid])
        return [_decode_participant(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]

    async def get(self, room: str, sid: str, now: float) -> Participant | None:
        found = await self._seats(room, now, sid)
        return found[0] if found else None

    async def list(self, room: str, now: float) -> list[Participant]:
        return sorted(await self._seats(room, now), key=lambda p: (p.joined_at, p.sid))

    async def count(self, room: str, now: float) -> int:
        with _translate_errors():
            return int(await self._b.client.zcount(self._b.keys(room)[1], f"({_num(now)}", "+inf"))


class RedisRevocationStore(_Part):
    """Revocations in Redis, and a copy in this process of every one this node made or saw, so a
    Redis that lost its data (restarted without persistence) does not un-revoke a token here."""

    def __init__(self, backend: _Backend) -> None:
        super().__init__(backend)
        self._seen = MemoryRevocationStore()

    def _key(self, jti: str) -> str:
        return f"{self._b.prefix}revoked:{jti}"

    async def revoke(self, jti: str, *, expires_at: float, now: float) -> None:
        if expires_at <= now:
            return
        ttl_ms = math.ceil((expires_at - now + _REVOCATION_GRACE) * 1000)
        with _translate_errors():
            await self._b.revoke([self._key(jti)], [_num(expires_at), str(ttl_ms)])
        await self._seen.revoke(jti, expires_at=expires_at, now=now)

    async def is_revoked(self, jti: str, now: float) -> bool:
        if await self._seen.is_revoked(jti, now):
            return True
        with _translate_errors():
            value = await self._b.client.get(self._key(jti))
        if value is None:
            return False
        expires_at = float(_text(value))
        await self._seen.revoke(jti, expires_at=expires_at, now=now)
        return expires_at > now


class RedisAdminKeyStore(_Part):
    def __init__(self, backend: _Backend) -> None:
        super().__init__(backend)
        self._keys = f"{backend.prefix}adminkeys"
        self._revoked = f"{backend.prefix}adminkeys:revoked"

    async def add(self, key: AdminKey) -> None:
        info = {
            "id": key.id,
            "name": key.name,
            "scopes": list(key.scopes),
            "created_at": float(key.created_at),
        }
        with _translate_errors():
            added = await self._b.client.hsetnx(self._keys, key.id, json.dumps(info))
            if int(added) and key.revoked_at is not None:
                await self._b.client.hset(self._revoked, key.id, _num(key.revoked_at))
        if not int(added):
            raise AdminKeyExistsError(key.id)

    async def get(self, key_id: str) -> AdminKey | None:
        with _translate_errors():
            async with self._b.client.pipeline(transaction=True) as pipe:
                pipe.hget(self._keys, key_id)
                pipe.hget(self._revoked, key_id)
                raw, revoked_at = await pipe.execute()
        return None if raw is None else _decode_admin_key(raw, revoked_at)

    async def list(self) -> list[AdminKey]:
        with _translate_errors():
            async with self._b.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._keys)
                pipe.hgetall(self._revoked)
                raw, revoked = await pipe.execute()
        times = {_text(k): v for k, v in revoked.items()}
        keys = [_decode_admin_key(v, times.get(_text(k))) for k, v in raw.items()]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    async def revoke(self, key_id: str, now: float) -> AdminKey | None:
        with _translate_errors():
            found = await self._b.revoke_admin_key([self._keys, self._revoked], [key_id, _num(now)])
        return await self.get(key_id) if int(found) else None


class RedisStore:
    """Rooms, seats, revocations and admin keys in Redis; the store owns ``client`` and closes it."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "conf:") -> None:
        self._client = client
        self._epoch_key = f"{prefix}epoch"
        self._epoch: str | None = None
        """The epoch this store object first saw; ``None`` until ``state_intact`` is called."""
        self._lost = False
        backend = _Backend(client, prefix)
        self.rooms: RoomStore = RedisRoomStore(backend)
        self.seats: SeatStore = RedisSeatStore(backend)
        self.revocations: RevocationStore = RedisRevocationStore(backend)
        self.admin_keys: AdminKeyStore = RedisAdminKeyStore(backend)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "conf:", max_connections: int = 64) -> RedisStore:
        """A store on a new pooled client for ``url`` (connects lazily). A burst (a join storm)
        waits up to 5 s for one of ``max_connections`` connections rather than failing."""
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        return cls(redis.asyncio.Redis(connection_pool=pool), prefix=prefix)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False

    async def state_intact(self, now: float) -> bool:
        """Compare the store's epoch with the one seen first. The epoch is written once, when a
        node first meets an empty Redis, and never expires; if it is gone or replaced, Redis
        restarted without its data (no ``appendonly``/RDB persistence), so rooms with their
        settings and the revocations are lost. Logged once as an error; stays lost."""
        if self._lost:
            return False
        with _translate_errors():
            if self._epoch is None:
                fresh = json.dumps({"id": secrets.token_hex(16), "created_at": float(now)})
                await self._client.set(self._epoch_key, fresh, nx=True)
            current = await self._client.get(self._epoch_key)
        if self._epoch is None and current is not None:
            self._epoch = _text(current)
            return True
        if current is not None and _text(current) == self._epoch:
            return True
        self._lost = True
        log.error(
            "the store lost its state: Redis restarted without its data, so rooms, their settings "
            "and revoked tokens are gone. Configure Redis to persist (appendonly yes) and restart "
            "this node once the rooms are recreated",
            extra={"epoch_seen": self._epoch, "epoch_now": None if current is None else _text(current)},
        )
        return False

    async def close(self) -> None:
        """Close the connections. redis-py can wait forever for a socket to finish closing
        (redis/redis-py#3941): after ``CLOSE_TIMEOUT`` seconds the close is abandoned, so a
        stopping server never hangs on it."""
        try:
            await asyncio.wait_for(self._close(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("closing the Redis connections took over %s s: abandoned", CLOSE_TIMEOUT)

    async def _close(self) -> None:
        await self._client.aclose()
        await self._client.connection_pool.disconnect()
