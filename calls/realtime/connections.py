"""Open sockets per user, across every web process: at most
`settings.CALLS_WS_MAX_CONNECTIONS_PER_USER` (events and call sockets together; server tokens,
which have no user, are not counted). Above it a socket is closed with 4009 (docs/limits.md).

With Redis (production, CI): one sorted set per user, one member per connection, scored with
the time its lease ends. A connection takes a lease when it authenticates and renews it every
`RENEW_S` while it is open; leaving removes it. A process that dies without cleaning up leaves
leases that lapse after `LEASE_S`: they stop counting then, so a crash never locks a user out
for longer. Taking a lease is one Lua script (drop lapsed leases, count, add), atomic across
processes, on Redis' clock. Without Redis (the embedded default: one process) the same rule
runs on a dict in memory.

A Redis that cannot be reached does not refuse sockets (the channel layer decides whether they
work at all): the lease is skipped and a warning logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
import weakref
from typing import Any

from django.conf import settings

logger = logging.getLogger("calls.realtime")

LEASE_S = 60.0
RENEW_S = 20.0
KEY_PREFIX = "calls:ws:user:"

# KEYS[1] the user's set; ARGV: connection id, cap, lease (ms). 1 taken or renewed, 0 refused.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


def user_key(user_id: str) -> str:
    return KEY_PREFIX + hashlib.sha256(user_id.encode()).hexdigest()[:40]


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_local: dict[str, set[str]] = {}  # user id -> connection ids (no Redis: one process)


def _client() -> Any:
    """This event loop's Redis client (redis.asyncio clients belong to one loop)."""
    import redis.asyncio as redis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = redis.Redis.from_url(settings.REDIS_URL)
    return client


class Lease:
    """One connection's place among its user's sockets."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.id = uuid.uuid4().hex
        self.renewing: asyncio.Task[None] | None = None

    async def take(self) -> bool:
        """Take (or renew) the place; False when the user has no place left."""
        cap = settings.CALLS_WS_MAX_CONNECTIONS_PER_USER
        if not settings.REDIS_URL:
            mine = _local.setdefault(self.user_id, set())
            if self.id not in mine and len(mine) >= cap:
                return False
            mine.add(self.id)
            return True
        try:
            taken = await _client().eval(
                _TAKE, 1, user_key(self.user_id), self.id, cap, int(LEASE_S * 1000)
            )
        except Exception:
            logger.warning("could not count the user's sockets in Redis", exc_info=True)
            return True
        return bool(taken)

    def keep(self, on_lost: Any) -> None:
        """Renew every RENEW_S while the connection is open; `on_lost()` if it was taken."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(RENEW_S)
                if not await self.take():
                    await on_lost()
                    return

        self.renewing = asyncio.create_task(renew(), name="calls socket lease")

    async def release(self) -> None:
        if self.renewing is not None:
            self.renewing.cancel()
            self.renewing = None
        if not settings.REDIS_URL:
            mine = _local.get(self.user_id)
            if mine is not None:
                mine.discard(self.id)
                if not mine:
                    del _local[self.user_id]
            return
        try:
            await _client().zrem(user_key(self.user_id), self.id)
        except Exception:
            logger.warning("could not release a socket lease (it lapses)", exc_info=True)
