"""WebSocket event delivery latency: commit → client, against a plain REST GET of the same call.

Run from the repo root:  .venv/bin/python bench/events.py [--calls 1] [--clients 500]
                                           [--changes 100] [--worker] [--deflate]
                                           [--server-deflate] [--parse-inline]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created
if missing, as bench/api.py) and REDIS_URL (default redis://127.0.0.1:6379/0) for the Redis
channel layer. It migrates, seeds a user and `--calls` calls, starts `bin/web` in a
subprocess as a deployment does (bench/_procs.py: uvicorn, config.asgi, HTTP + WebSockets,
DEBUG off), connects `--clients` WebSocket clients (asyncio, in this process) spread over the
calls, then makes `--changes` call changes through the REST API (PATCH custom), one at a
time, round-robin over the calls. For each change it waits until every subscriber of that
call has the event, then times a REST GET of the same call.

Delivery latency of one client = the time it received the event minus the event's
`created_at` (written by `event_emit` inside the transaction, just before COMMIT: so this
slightly over-counts commit → client). Both clocks are this machine's. Clients stamp each
frame when it arrives and parse it after the run (see `Subscriber`; `--parse-inline` parses
on arrival, as the first version of this script did). The relay runs in the web process
after commit (as in the embedded default), or with `--worker` in a Celery worker subprocess
(prefork, as deployed; the production path: commit → broker → worker → channel layer → web
→ client).

Timings never fail the run (the target, p99 < 100 ms, is printed with the figures); a lost
event or an HTTP error does. Everything it writes has an id starting with `bench-ws-` and is
deleted before and after a run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _procs  # noqa: E402
from bench._procs import BenchFailure  # noqa: E402
from bench.api import _bootstrap, _ensure_database, _percentile  # noqa: E402

PREFIX = "bench-ws-"
USER = "bench-ws-doctor"
TEAM = "bench-ws-clinic"
CALL_TYPE = "default"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TARGET_P99_MS = 100.0
CONNECT_CONCURRENCY = 50
EVENT_TIMEOUT_S = 10.0
WARMUP_CHANGES = 5


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        print(f"raised the open-files limit from {soft} to {target}")
        if target < needed:
            raise BenchFailure(f"open-files hard limit {hard} is below the {needed} needed")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc): a figure the other work on a shared
    machine does not inflate the way it inflates latencies."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cleanup() -> None:
    import redis
    from django.conf import settings

    from calls.models import Call, CallEvent, CallUser
    from calls.realtime.connections import user_key

    # The seeded user's socket leases (calls.realtime.connections) left by a server stopped
    # with its clients connected: they would count against the next run's clients for a minute.
    redis.Redis.from_url(settings.REDIS_URL).delete(user_key(USER))

    CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}").delete()
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    CallEvent.objects.filter(type="user.updated", payload__user__id__startswith=PREFIX).delete()
    CallUser.objects.filter(id__startswith=PREFIX).delete()


def _seed(calls: int) -> list[str]:
    from calls.capabilities import SERVER
    from calls.services.base import MemberSpec
    from calls.services.calls import call_get_or_create
    from calls.services.users import UserSpec, users_upsert

    users_upsert(actor=SERVER, users=[UserSpec(id=USER, teams=[TEAM])])
    ids = [f"{PREFIX}{n}" for n in range(calls)]
    for call_id in ids:
        call_get_or_create(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=call_id,
            created_by_id=USER,
            team=TEAM,
            members=[MemberSpec(user_id=USER, role="host")],
        )
    return ids


class Countdown:
    """Set once every subscriber of a call has received one change's message."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.done = asyncio.Event()

    def tick(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.done.set()


class Subscriber:
    """One client. It stamps each frame on arrival and parses it after the run (or on arrival
    with --parse-inline): the 500 clients share one Python process here, and parsing each
    5 kB event in the reader makes the 500th client's stamp wait for 499 parses (about
    60 ms per change on this machine), a cost real clients, each on its own device, do not
    share. The frames are checked after the run: the n-th frame is the n-th change of the
    call, or the run fails."""

    def __init__(self, cid: str, *, parse_inline: bool = False) -> None:
        self.cid = cid
        self.parse_inline = parse_inline
        self.frames: list[tuple[int, str]] = []  # (receive time ns, raw text)
        self.countdowns: dict[int, Countdown] = {}  # frame number -> its change's countdown
        self.expected = 0
        self.conn: Any = None
        self.reader: asyncio.Task | None = None

    async def open(self, url: str, *, deflate: bool) -> None:
        from websockets.asyncio.client import connect

        compression = "deflate" if deflate else None
        self.conn = await connect(url, open_timeout=30, max_queue=None, compression=compression)
        connected = json.loads(await self.conn.recv())
        if connected.get("type") != "connected":
            raise BenchFailure(f"not connected: {connected}")
        await self.conn.send(json.dumps({"type": "subscribe", "cid": self.cid}))
        answer = json.loads(await self.conn.recv())
        if answer.get("type") != "subscribed":
            raise BenchFailure(f"not subscribed: {answer}")
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.conn:
            received = time.time_ns()
            if self.parse_inline:
                json.loads(raw)
            self.frames.append((received, raw))
            countdown = self.countdowns.pop(len(self.frames), None)
            if countdown is not None:
                countdown.tick()

    def expect(self, countdown: Countdown) -> None:
        """The next frame will be the next change of this call."""
        self.expected += 1
        self.countdowns[self.expected] = countdown

    def latencies_ms(self, seqs: list[str]) -> dict[str, float]:
        """seq -> receive time - the event's created_at; checks every frame is the change."""
        if len(self.frames) != len(seqs):
            raise BenchFailure(f"{self.cid}: {len(self.frames)} frames for {len(seqs)} changes")
        latencies = {}
        for (received, raw), seq in zip(self.frames, seqs, strict=True):
            message = json.loads(raw)
            event = message.get("event") or {}
            marker = (event.get("call") or {}).get("custom", {}).get("seq")
            if message.get("type") != "event" or marker != seq:
                raise BenchFailure(f"{self.cid}: expected the event of change {seq}: {raw[:200]}")
            latencies[seq] = (received - event["created_at"]) / 1e6
        return latencies

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.conn is not None:
            await self.conn.close()


async def _run(
    args: argparse.Namespace, base: str, call_ids: list[str], server_pid: int
) -> dict[str, Any]:
    import httpx
    from django.conf import settings

    from calls.tokens import mint_user_token

    token = mint_user_token(USER, expires_in=3600)
    api = {"api_key": settings.CALLS_API_KEY}
    headers = {"Authorization": token, "stream-auth-type": "jwt"}
    ws_url = f"ws://{base}/ws/v1/events?api_key={settings.CALLS_API_KEY}&token={token}"

    subscribers = [
        Subscriber(f"{CALL_TYPE}:{call_ids[i % len(call_ids)]}", parse_inline=args.parse_inline)
        for i in range(args.clients)
    ]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(sub: Subscriber) -> None:
        async with gate:
            await sub.open(ws_url, deflate=args.deflate)

    started = time.perf_counter()
    await asyncio.gather(*(open_one(s) for s in subscribers))
    print(
        f"  {len(subscribers)} clients connected and subscribed "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    by_call: dict[str, list[Subscriber]] = {}
    for sub in subscribers:
        by_call.setdefault(sub.cid, []).append(sub)

    get_ms: list[float] = []
    patch_ms: list[float] = []
    seqs: dict[str, list[str]] = {cid: [] for cid in by_call}  # the changes of each call
    measured: list[tuple[str, str]] = []  # (cid, seq) after the warm-up
    cpu: dict[str, float | None] = {}
    async with httpx.AsyncClient(base_url=f"http://{base}", headers=headers, params=api) as http:
        for n in range(WARMUP_CHANGES + args.changes):
            if n == WARMUP_CHANGES:
                cpu = {"server": _cpu_seconds(server_pid), "clients": _cpu_seconds(os.getpid())}
            call_id = call_ids[n % len(call_ids)]
            cid = f"{CALL_TYPE}:{call_id}"
            path = f"/api/v2/video/call/{CALL_TYPE}/{call_id}"
            seq = f"{n}"
            countdown = Countdown(len(by_call[cid]))
            for sub in by_call[cid]:
                sub.expect(countdown)
            seqs[cid].append(seq)
            t0 = time.perf_counter()
            response = await http.patch(path, json={"custom": {"seq": seq}})
            patch_elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 201 and response.status_code != 200:
                raise BenchFailure(f"PATCH {path}: HTTP {response.status_code} {response.text}")
            try:
                await asyncio.wait_for(countdown.done.wait(), EVENT_TIMEOUT_S)
            except TimeoutError:
                missing = countdown.remaining
                raise BenchFailure(f"change {n}: {missing} clients never got the event") from None
            t0 = time.perf_counter()
            response = await http.get(path)
            get_elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                raise BenchFailure(f"GET {path}: HTTP {response.status_code}")
            if n >= WARMUP_CHANGES:
                measured.append((cid, seq))
                patch_ms.append(patch_elapsed)
                get_ms.append(get_elapsed)

    for who, start in list(cpu.items()):
        end = _cpu_seconds(server_pid if who == "server" else os.getpid())
        cpu[who] = None if start is None or end is None else (end - start) * 1000 / args.changes
    await asyncio.gather(*(s.close() for s in subscribers))
    latencies = {id(s): s.latencies_ms(seqs[s.cid]) for s in subscribers}
    deliveries = [latencies[id(s)][seq] for cid, seq in measured for s in by_call[cid]]
    # Per change: the first and the last subscriber (pipeline vs fan-out span).
    spans = [[latencies[id(s)][seq] for s in by_call[cid]] for cid, seq in measured]
    return {
        "first_ms": [min(x) for x in spans],
        "last_ms": [max(x) for x in spans],
        "deliveries": deliveries,
        "get_ms": get_ms,
        "patch_ms": patch_ms,
        "cpu": cpu,
    }


def _report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    deliveries, get_ms, patch_ms = result["deliveries"], result["get_ms"], result["patch_ms"]
    d50, d99 = _percentile(deliveries, 50), _percentile(deliveries, 99)
    g50, g99 = _percentile(get_ms, 50), _percentile(get_ms, 99)
    p50, p99 = _percentile(patch_ms, 50), _percentile(patch_ms, 99)
    relay = "Celery worker" if args.worker else "web process (eager)"
    print()
    print(
        f"{args.clients} clients on {args.calls} call(s) "
        f"({args.clients // args.calls} per call), {args.changes} changes, relay in {relay}, "
        f"permessage-deflate: clients {'offer' if args.deflate else 'do not offer'} it, "
        f"server {'accepts' if args.server_deflate else 'declines'}; "
        f"clients parse {'on arrival' if args.parse_inline else 'after the run'}"
    )
    header = f"{'measure':<38} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(header)
    print("-" * len(header))
    for label, samples in (
        ("WS delivery, commit -> client", deliveries),
        ("  first client of each change", result["first_ms"]),
        ("  last client of each change", result["last_ms"]),
        ("REST GET of the same call", get_ms),
        ("REST PATCH (the change itself)", patch_ms),
    ):
        print(
            f"{label:<38} {len(samples):>6} {_percentile(samples, 50):>8.2f} "
            f"{_percentile(samples, 99):>8.2f} {max(samples):>8.2f}"
        )
    print()
    print(f"WS delivery / REST GET: p50 {d50 / g50:.2f}x, p99 {d99 / g99:.2f}x")
    verdict = "MEETS" if d99 < TARGET_P99_MS else "MISSES"
    print(f"Target: delivery p99 < {TARGET_P99_MS:.0f} ms: {verdict} ({d99:.1f} ms)")
    print(f"(PATCH p50 {p50:.2f} ms, p99 {p99:.2f} ms)")
    cpu = result["cpu"]
    if cpu.get("server") is not None:
        print(
            f"CPU per change: server {cpu['server']:.1f} ms (HTTP, relay, fan-out, sends), "
            f"clients {cpu['clients']:.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--worker", action="store_true", help="relay in a Celery worker")
    parser.add_argument(
        "--deflate", action="store_true", help="clients offer permessage-deflate, as browsers do"
    )
    parser.add_argument(
        "--server-deflate",
        action="store_true",
        help="the server accepts permessage-deflate (uvicorn's default; off in production)",
    )
    parser.add_argument(
        "--parse-inline",
        action="store_true",
        help="clients parse each frame on arrival (the old way: later clients wait for parses)",
    )
    args = parser.parse_args()
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    _bootstrap()
    _ensure_database()
    _raise_fd_limit(args.clients * 2 + 256)

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    # The clients keep every frame until the end (parsed after the run): with 500 of them, the
    # collector's full passes over that growing heap would stall all clients at once and be
    # counted as delivery latency. The clients' memory is freed when the run ends.
    gc.disable()
    call_command("migrate", verbosity=0, interactive=False)
    print(
        f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}; "
        f"channel layer: {settings.CHANNEL_LAYERS['default']['BACKEND']}"
    )
    _cleanup()
    call_ids = _seed(args.calls)
    connection.close()
    logs = Path(tempfile.mkdtemp(prefix="bench-events-"))
    # The relay in the web process after commit (the embedded default), or in a worker.
    env = _procs.process_env(
        CELERY_TASK_ALWAYS_EAGER="false" if args.worker else "true",
        # Every client signs in as the one seeded user: lift the per-user socket cap (a
        # deployment keeps it; the bench measures delivery, not that limit).
        CALLS_WS_MAX_CONNECTIONS_PER_USER=str(args.clients),
    )
    if args.server_deflate:  # bin/web turns per-message deflate off, as production does
        port = _procs.free_port()
        cmd = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port)]
        cmd += ["--lifespan", "on", "--log-level", "warning", "--no-access-log"]
        cmd += ["--ws-per-message-deflate", "true"]
        web = _procs.Proc("web", cmd, env, logs / "web.log", port=port)
    else:
        web = _procs.web(logs, env)
    procs = [web]
    if args.worker:
        procs.append(_procs.worker("bench-events", logs, env))
    base = f"127.0.0.1:{web.port}"
    started = time.perf_counter()
    try:
        for proc in procs:
            proc.start()
        _procs.wait_ready(procs)
        assert web.process is not None
        result = asyncio.run(_run(args, base, call_ids, web.process.pid))
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in procs:
            proc.stop()
        _cleanup()
    _report(args, result)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
