"""Relay throughput: committed events → Celery relay → channel layer → a WebSocket client.

Run from the repo root:  .venv/bin/python bench/relay.py [--events 5000] [--per-commit 10]
                                          [--calls 50] [--concurrency N]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created
if missing, as bench/api.py) and REDIS_URL (default redis://127.0.0.1:6379/0: the broker and
the channel layer; the worker takes the default queue, so give the run a Redis database no
other worker uses).

After a warm-up (one event per call, so the connection has checked each call once), the
production shape, started as a deployment starts it (bench/_procs.py): `bin/web` (uvicorn,
config.asgi) and a Celery worker (`celery -A config worker`, prefork, concurrency = CPU
count unless `--concurrency`), each in a subprocess, one WebSocket client in this process
(asyncio thread) subscribed to the clinic's team (`subscribe_team`, as a staff page is) over
`--calls` calls.

- ours: `--events` events committed in transactions of `--per-commit` (as the scheduler's
  go-live batches commit: `events_emit_for_calls`, one INSERT, the outbox hand-off at commit:
  one `relay_events` task per transaction), one transaction after another, as fast as this
  process commits them; the worker relays (`calls.outbox.relay`, every consumer of
  CALLS_EVENT_CONSUMERS), the web process fans them out to the client.
- baseline (same run, other calls of the same team): the same number of events written
  already relayed, and their channel-layer messages (`realtime.publish.event_messages`) sent
  by this process with `group_send`, `--per-commit` at a time: the channel layer and the web
  process without the relay.

Throughput = events / (first commit or send → last event received by the client). Latency of
one event = received - its transaction's commit (ours) or the start of its group_send round
(baseline); both clocks are this machine's. Every event must reach the client exactly once
(a lost or doubled event fails the run). Target (issue 17, item 3): ours ≥ 1,000 events/s,
printed as MEETS / MISSES (exit status 1 on MISSES). Everything it writes has an id starting
with `bench-relay-` and is deleted before and after a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _procs  # noqa: E402
from bench._procs import BenchFailure, Proc  # noqa: E402
from bench.api import _ensure_database, _percentile  # noqa: E402

PREFIX = "bench-relay-"
USER = "bench-relay-doctor"
TEAM = "bench-relay-clinic"
CALL_TYPE = "default"
TARGET_EVENTS_PER_S = 1000.0
TIMEOUT_S = 60.0


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cleanup() -> None:
    from calls.models import Call, CallEvent, CallUser

    CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}").delete()
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    CallEvent.objects.filter(type="user.updated", payload__user__id__startswith=PREFIX).delete()
    CallUser.objects.filter(id__startswith=PREFIX).delete()


def _seed(calls: int):
    from calls.capabilities import SERVER
    from calls.models import Call
    from calls.services.base import MemberSpec
    from calls.services.calls import call_get_or_create
    from calls.services.users import UserSpec, users_upsert

    users_upsert(actor=SERVER, users=[UserSpec(id=USER, teams=[TEAM])])
    sets = {}
    for name in ("ours", "base"):
        ids = [f"{PREFIX}{name}-{n}" for n in range(calls)]
        for call_id in ids:
            call_get_or_create(
                actor=SERVER,
                type_name=CALL_TYPE,
                call_id=call_id,
                created_by_id=USER,
                team=TEAM,
                members=[MemberSpec(user_id=USER, role="host")],
            )
        sets[name] = list(Call.objects.filter(call_id__in=ids).order_by("pk"))
    return sets


def _wait_relayed(timeout: float) -> None:
    from calls.models import CallEvent

    deadline = time.monotonic() + timeout
    while CallEvent.objects.filter(
        call_cid__startswith=f"{CALL_TYPE}:{PREFIX}", relayed_at__isnull=True
    ).exists():
        if time.monotonic() > deadline:
            raise BenchFailure("the worker did not relay the seeding's events")
        time.sleep(0.2)


class Client:
    """One WebSocket client subscribed to the team, in its own thread: records when each
    event frame arrived (time.time()) and parses them after the run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[tuple[float, str]] = []
        self.seen: dict[int, list[float]] = {}
        self.parsed = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise BenchFailure(f"the client did not subscribe: {self.error!r}")

    def _run(self) -> None:
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect

        try:
            self.conn = await connect(self.url, open_timeout=30, max_queue=None)
            connected = json.loads(await self.conn.recv())
            if connected.get("type") != "connected":
                raise BenchFailure(f"not connected: {connected}")
            await self.conn.send(json.dumps({"type": "subscribe_team", "team": TEAM}))
            answer = json.loads(await self.conn.recv())
            if answer.get("type") != "subscribed":
                raise BenchFailure(f"not subscribed: {answer}")
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            async for raw in self.conn:
                self.frames.append((time.time(), raw))
        except Exception as exc:  # closed by the server: reported by the checks
            self.error = exc

    def received(self) -> dict[int, list[float]]:
        """event id → the times it arrived (more than one: doubled); frames are parsed once
        (parsing them all again every poll would starve the client's own reader)."""
        frames = self.frames[self.parsed :]
        for at, raw in frames:
            message = json.loads(raw)
            if message.get("type") == "event":
                self.seen.setdefault(int(message["id"]), []).append(at)
        self.parsed += len(frames)
        return self.seen

    def wait_for(self, ids: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= self.received().keys():
                return True
            time.sleep(0.1)
        return ids <= set(self.received())

    def stop(self) -> None:
        if hasattr(self, "conn"):
            try:
                asyncio.run_coroutine_threadsafe(self.conn.close(), self.loop).result(10)
            except Exception as exc:
                print(f"(the client's close: {exc!r})")
        self.thread.join(10)


def _result(client: Client, started: dict[int, float], t0: float, extra: dict) -> dict:
    ids = set(started)
    done = client.wait_for(ids, TIMEOUT_S)
    seen = client.received()
    arrivals = {pk: times for pk, times in seen.items() if pk in ids}
    lost = len(ids - set(arrivals))
    doubled = sum(1 for times in arrivals.values() if len(times) > 1)
    latencies = [times[0] - started[pk] for pk, times in arrivals.items()]
    last = max((times[0] for times in arrivals.values()), default=time.time())
    return {
        "done": done,
        "events": len(ids),
        "lost": lost,
        "doubled": doubled,
        "latencies": latencies,
        "elapsed": last - t0,
        **extra,
    }


def _warm_up(sets, client: Client) -> None:
    """One event per call, relayed and received, before the runs: the client's connection
    checks once per call that the user may read it (a query); the runs measure the steady
    state, not those first checks."""
    from django.db import transaction

    from calls.outbox.events import events_emit_for_calls

    ids = set()
    for calls in sets.values():
        with transaction.atomic():
            events = events_emit_for_calls(
                type="custom", fields=[(call, {"custom": {"warm": True}}) for call in calls]
            )
        ids |= {event.pk for event in events}
    if not client.wait_for(ids, 60):
        raise BenchFailure("the warm-up events did not reach the client")


def _run_baseline(calls, count: int, per_commit: int, client: Client) -> dict:
    """The channel layer and the web process without the relay: the same kind of events,
    written already relayed, their messages sent with group_send by this process."""
    from channels.layers import get_channel_layer
    from django.utils import timezone

    from calls.models import CallEvent
    from calls.outbox.events import _row
    from calls.realtime.publish import _group_sends, event_messages

    layer = get_channel_layer()
    now = timezone.now()
    rows = []
    for n in range(count):
        call = calls[n % len(calls)]
        row = _row("custom", call, call.cid, {"custom": {"seq": n}}, now)
        row.relayed_at = now
        rows.append(row)
    events = CallEvent.objects.bulk_create(rows)
    messages = event_messages(events)  # prev and team as the relay computes them
    started: dict[int, float] = {}

    async def send_all() -> None:
        for start in range(0, len(messages), per_commit):
            chunk = messages[start : start + per_commit]
            at = time.time()
            for message, _ in chunk:
                started[message["id"]] = at
            await _group_sends(layer, chunk)

    load = os.getloadavg()
    cpu = _self_cpu()
    t0 = time.time()
    asyncio.run(send_all())
    sent_s = time.time() - t0
    result = _result(client, started, t0, {"load": load, "offered_s": sent_s})
    result["cpu"] = {"this process (group_send)": _self_cpu() - cpu}
    return result


def _run_ours(calls, count: int, per_commit: int, client: Client, worker: Proc) -> dict:
    from django.db import transaction

    from calls.models import CallEvent
    from calls.outbox.events import events_emit_for_calls

    assert worker.process is not None
    started: dict[int, float] = {}
    load = os.getloadavg()
    cpu_worker, cpu_self = worker.cpu(), _self_cpu()
    t0 = time.time()
    for start in range(0, count, per_commit):
        fields = [
            (calls[n % len(calls)], {"custom": {"seq": n}})
            for n in range(start, min(start + per_commit, count))
        ]
        with transaction.atomic():
            events = events_emit_for_calls(type="custom", fields=fields)
        at = time.time()  # committed (the hand-off to the broker ran at commit)
        for event in events:
            started[event.pk] = at
    offered_s = time.time() - t0
    result = _result(client, started, t0, {"load": load, "offered_s": offered_s})
    deadline = time.monotonic() + 30
    while (
        CallEvent.objects.filter(pk__in=list(started), relayed_at__isnull=True).exists()
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    result["cpu"] = {
        "worker": worker.cpu() - cpu_worker,
        "this process (commits)": _self_cpu() - cpu_self,
    }
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def _print(name: str, result: dict, web_cpu: float) -> float:
    lat = result["latencies"]
    rate = result["events"] / result["elapsed"] if result["elapsed"] > 0 else float("nan")
    print(f"\n{name}")
    print(f"  load before (1/5/15 min): {' / '.join(f'{x:.2f}' for x in result['load'])}")
    print(
        f"  received: {result['events'] - result['lost']} / {result['events']}, "
        f"lost {result['lost']}, doubled {result['doubled']}"
    )
    print(
        f"  offered: all {'committed' if 'worker' in result['cpu'] else 'sent'} in "
        f"{result['offered_s']:.2f} s ({result['events'] / result['offered_s']:,.0f}/s)"
    )
    print(f"  first -> last received: {result['elapsed']:.2f} s = {rate:,.0f} events/s")
    if lat:
        print(
            f"  commit/send -> socket: p50 {_ms(_percentile(lat, 50))}, "
            f"p99 {_ms(_percentile(lat, 99))}, max {_ms(max(lat))}"
        )
    cpu = {**result["cpu"], "web": web_cpu}
    print(
        "  CPU-seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        + f"; {sum(cpu.values()) * 1000 / result['events']:.2f} ms per event"
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--per-commit", type=int, default=10)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="worker processes (default: CPU count)"
    )
    args = parser.parse_args()

    _procs.bootstrap("config.settings")
    _ensure_database()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from calls.tokens import mint_user_token
    from config.celery import app

    call_command("migrate", verbosity=0)
    _cleanup()
    app.control.purge()
    print(
        f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}; "
        f"redis: {settings.REDIS_URL}; {os.cpu_count()} CPUs; events: {args.events} in "
        f"transactions of {args.per_commit}, over {args.calls} calls of one team"
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    env = _procs.process_env("config.settings")
    # The production processes (bench/_procs.py): bin/web (uvicorn, config.asgi) and a
    # prefork Celery worker.
    web = _procs.web(logs, env)
    worker = _procs.worker("bench-relay", logs, env, concurrency=args.concurrency)
    client = None
    failures: list[str] = []
    try:
        web.start()
        worker.start()
        _procs.wait_ready([web, worker])
        sets = _seed(args.calls)
        _wait_relayed(120)
        token = mint_user_token(USER, expires_in=3600)
        client = Client(
            f"ws://127.0.0.1:{web.port}/ws/v1/events?api_key={settings.CALLS_API_KEY}&token={token}"
        )
        client.start()
        _warm_up(sets, client)
        cpu_web = web.cpu()
        base = _run_baseline(sets["base"], args.events, args.per_commit, client)
        cpu_web_base = web.cpu() - cpu_web
        cpu_web = web.cpu()
        ours = _run_ours(sets["ours"], args.events, args.per_commit, client, worker)
        cpu_web_ours = web.cpu() - cpu_web
        load_after = os.getloadavg()
    finally:
        try:
            if client is not None:
                client.stop()
        finally:
            web.stop()
            worker.stop()
            _cleanup()

    others = [raw[:300] for _, raw in client.frames if json.loads(raw).get("type") != "event"]
    if others or client.error is not None:
        print(f"the client's other frames: {others[:5]}; its error: {client.error!r}")
    for name, result in (("baseline", base), ("ours", ours)):
        if not result["done"] or result["lost"] or result["doubled"]:
            failures.append(f"{name}: {result['lost']} lost, {result['doubled']} doubled")
    print(f"\n{args.events} events to one WebSocket client subscribed to the team")
    base_rate = _print(
        "baseline: group_send of the same messages from this process, no relay",
        base,
        cpu_web_base,
    )
    conc = args.concurrency or os.cpu_count()
    ours_rate = _print(
        f"ours: commit -> relay_events on a Celery worker (prefork, concurrency {conc}, "
        f"Redis) -> channel layer -> web",
        ours,
        cpu_web_ours,
    )
    print(f"\nload after (1/5/15 min): {' / '.join(f'{x:.2f}' for x in load_after)}")
    print(f"ours / baseline events/s: {ours_rate / base_rate:.2f}")
    for failure in failures:
        print(f"  FAILED: {failure}")
    meets = not failures and ours_rate >= TARGET_EVENTS_PER_S
    print(
        f"target (>= {TARGET_EVENTS_PER_S:,.0f} events/s through the relay, none lost or "
        f"doubled): {'MEETS' if meets else 'MISSES'}"
    )
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(main())
