"""Process-local fan-out of the event groups to the WebSocket connections of this process.

With one channel-layer channel per connection, a `group_send` to a call with 500 subscribers
in one web process is 500 messages through the layer (Redis pushes, 500 pops and decodes)
and 500 dispatches through Channels' consumer loop (each one a `close_old_connections`
thread hop). Instead the process has one channel of its own (per event loop and layer),
which joins each call / team / user group that has members in this process, and one reader
task that hands each `calls.event` to the local members of the event's groups, in memory.

What a group is does not change: other consumers (their own channel, `group_add` as usual,
like WebRTC signaling) still get every `group_send` through the layer, and each web process
joins with its own channel, so every process receives every event of the groups it has
members in. Messages of other types that reach the process channel are ignored.

- A relay batch reaches the process as one layer message per group (`calls.events`, the
  group's events in id order), handed out at once as the single events it carries; each
  event's client message is already rendered (`frame`, publish.frame), the same bytes for
  every connection.
- One message per event and member: an event goes to a call's and a team's group, so the
  process channel may get it twice; the first copy goes to the members of all the event's
  groups (`publish.message_groups`), later copies of the same event id are dropped.
- A member (`deliver(message)`, which must return at once: `EventsConsumer` queues it) is
  in a group once `add` returns, and the process joins a group before the first `add`
  returns, so "join, then read the outbox" leaves no gap.
- The last member leaving discards the process channel from the group; an `add` meanwhile
  waits for that to finish, so the layer never ends up without the channel while members
  are registered.
- Group membership in the layer expires (`group_expiry`, a day by default): the process
  re-adds its channel to its groups every `REFRESH_S`.
- The reader is never cancelled while the loop runs (cancelling a blocked channels-redis
  receive is fragile); it ends with the loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from typing import Any, Protocol

from .publish import EVENT_MESSAGE, EVENTS_MESSAGE, message_groups

logger = logging.getLogger("calls.realtime")

REFRESH_S = 3600.0
RETRY_S = 1.0
SEEN_KEEP = 1024  # event ids remembered to drop second copies


class Member(Protocol):
    def deliver(self, message: dict[str, Any]) -> None: ...


class Fanout:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel = ""
        self.members: dict[str, set[Member]] = {}  # group -> local members
        self.joining: dict[str, asyncio.Future[None]] = {}  # group -> its group_add
        self.leaving: dict[str, asyncio.Future[None]] = {}  # group -> its group_discard
        self.seen: OrderedDict[int, None] = OrderedDict()
        self.tasks: list[asyncio.Task[None]] = []
        self.ready: asyncio.Future[str] | None = None

    async def _channel(self) -> str:
        """The process channel, and its reader, made on first use."""
        if self.ready is None:
            self.ready = asyncio.get_running_loop().create_future()
            try:
                channel = await self.layer.new_channel()
            except BaseException as exc:
                self.ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                self.ready.exception()
                self.ready = None
                raise
            self.channel = channel
            self.tasks = [
                asyncio.create_task(self._read(), name="calls fan-out reader"),
                asyncio.create_task(self._refresh(), name="calls fan-out refresh"),
            ]
            self.ready.set_result(channel)
        return await asyncio.shield(self.ready)

    async def add(self, name: str, member: Member) -> None:
        """Make `member` receive the group's events; returns once the process is in it."""
        channel = await self._channel()
        while name in self.leaving:
            await asyncio.shield(self.leaving[name])
        members = self.members.setdefault(name, set())
        members.add(member)
        joining = self.joining.get(name)
        if joining is None:
            joining = self.joining[name] = asyncio.get_running_loop().create_future()
            try:
                await self.layer.group_add(name, channel)
            except BaseException as exc:
                members.discard(member)
                if not members:
                    self.members.pop(name, None)
                self.joining.pop(name, None)
                joining.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                joining.exception()  # retrieved here; members waiting for it re-raise it
                raise
            joining.set_result(None)
        else:
            await asyncio.shield(joining)

    async def discard(self, name: str, member: Member) -> None:
        members = self.members.get(name)
        if members is None or member not in members:
            return
        members.discard(member)
        if members:
            return
        # The last local member: the process leaves the group.
        del self.members[name]
        joining = self.joining.pop(name, None)
        leaving = self.leaving[name] = asyncio.get_running_loop().create_future()
        try:
            if joining is not None:
                await asyncio.wait([joining])
            await self.layer.group_discard(name, self.channel)
        except Exception:
            # It expires on its own (group_expiry); until then its messages are ignored.
            logger.warning("could not leave channel-layer group %s", name, exc_info=True)
        finally:
            del self.leaving[name]
            leaving.set_result(None)

    def local_members(self, name: str) -> set[Member]:
        return set(self.members.get(name, ()))

    def dispatch(self, message: dict[str, Any]) -> int:
        """Hand one message from the layer to the local members of its groups; how many.
        A relay batch (publish.EVENTS_MESSAGE) is its events, one after another."""
        if message.get("type") == EVENTS_MESSAGE:
            return sum(self.dispatch(event) for event in message.get("events") or ())
        if message.get("type") != EVENT_MESSAGE:
            return 0
        event_id = message.get("id")
        if event_id in self.seen:
            return 0  # the same event through another of its groups (or relayed twice)
        self.seen[event_id] = None
        if len(self.seen) > SEEN_KEEP:
            self.seen.popitem(last=False)
        targets: dict[int, Member] = {}
        for name in message_groups(message):
            for member in self.members.get(name, ()):
                targets.setdefault(id(member), member)
        for member in targets.values():
            try:
                member.deliver(message)
            except Exception:
                logger.exception("delivering event %s failed", event_id)
        return len(targets)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:
                logger.exception("reading the fan-out channel failed")
                await asyncio.sleep(RETRY_S)
                continue
            # A relay batch is handed out whole: each member queues its events and writes
            # what it has queued in one go (`EventsConsumer._drain`), so a burst costs a
            # member one write, not one per event.
            self.dispatch(message)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            for name, joining in list(self.joining.items()):
                if joining.done() and joining.exception() is None:
                    try:
                        await self.layer.group_add(name, self.channel)
                    except Exception:
                        logger.warning("could not re-add group %s", name, exc_info=True)


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Fanout] = weakref.WeakKeyDictionary()


def for_layer(layer: Any) -> Fanout:
    """This event loop's fan-out over `layer` (made on first use)."""
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None or fanout.layer is not layer:
        fanout = _fanouts[loop] = Fanout(layer)
    return fanout
