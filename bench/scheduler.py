"""Go-live as users see it: calls due at their start, our scheduler against Celery ETA designs.

Run from the repo root:
    .venv/bin/python bench/scheduler.py [--calls 10000] [--window 60] [--designs ...]
        [--no-kill | --only-kill] [--no-burst] [--no-move] [--grace 15] [--json out.json]
        [--timings out.csv]
    .venv/bin/python bench/scheduler.py --quick   # 1,000 across 10 s, ours, with the kill: ~1 min

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created
if missing, as bench/api.py) and REDIS_URL (default redis://127.0.0.1:6379/0): the broker and
the channel layer of the processes it starts. Give it a Redis database no other worker uses:
its workers take the default queue, and it drops the app's task messages left in that
database before and after each pass. Its servers listen on 127.0.0.1, on ports from
BENCH_PORTS (default 18100-18199).

For every call, three things users see, each measured from the call's `starts_at` (the due
time) on this machine's clock:
  database  `live_started_at - starts_at`: the call is live for whoever asks;
  socket    the `call.live_started` event received by a WebSocket client subscribed to the
            clinic's team (`subscribe_team`, as a staff page is) over a real socket of the
            production web process (`bin/web`: uvicorn, config.asgi), relayed by the workers
            through the outbox as deployed;
  push      the go-live push (`call.live_started` → a notify push to the call's patient,
            `calls.outbox.push.dispatch`) accepted by a local Web Push service: the test
            suite's stand-in (tests/calls/push/standins.py `WebPushService`, as bench/push.py
            uses it), which checks VAPID and stores the payload before its 201, as a real
            push service does (it cannot read a payload end-to-end encrypted to the browser).
            After each pass every stored payload is decrypted (RFC 8291) and a push counts,
            at the time it was accepted, for the call its payload names, only if it is this
            bench's `call.live_started` (a payload that does not decrypt is an error of the
            pass). Decrypting in-line cost this process, on the same cores, more than the
            check (bench/push.py);
and a fourth, webhook: the event POSTed to a local receiver registered as the clinic's
webhook endpoint (for `call.live_started`), so a go-live costs its whole fan-out.
Each is reported as p50 / p99 / max, lost (not there by `--grace` seconds after the last due
time) and doubled (a call live twice, an event or push received twice).

Every call (ids `bench-sched-`, type `appointment`, backstage, `go_live_at_start`, the clinic
`bench-sched-clinic`) has a host (the staff user the socket signs in as) and a patient
(`call_member`) with one Web Push device registered. Calls and schedules are bulk-created
once the processes are up, `starts_at` spread evenly over `--window` from a few seconds later.

Designs, each in real processes started here (bench/_procs.py; DEBUG off, as in production),
with the web process and the socket client in every design:
  ours     `--procs` x `manage.py run_scheduler` (DueAction rows, SKIP LOCKED, batches of
           CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE go-lives), one Celery worker (prefork,
           concurrency = CPU count) sending pushes and webhooks and relaying too, one
           relay worker (`-Q relay`, the same) and one webhook worker (`-Q webhooks`, the
           same): the README's production;
  trivial  (a) the scheduling floor: `--procs` x Celery worker (concurrency 1), one
           `apply_async(eta=starts_at)` per call of a task that only notes when it ran
           (bench/scheduler_tasks.py `trivial`; no go-live, so only `database` is measured,
           as "task ran");
  eta      (b) the same per-call work: the same workers, one ETA task per call calling our
           single-call go-live (`call_go_live`, bench/scheduler_tasks.py `go_live`); the
           workers also relay the events, send pushes and webhooks, as one pool would;
  ours-b1  (c) ours with the batching off: CALLS_SCHEDULER_BATCH_SIZE and
           CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE 1.

Passes: per design, without a kill and with one (unless `--no-kill`): in the middle of the
window the first go-live process is SIGKILLed (ours: the first scheduler and the relay
worker, whose events the other worker then relays; ETA: the first worker) and started again
`--restart-after` seconds later. Then two scenarios of ours (the first design of the list
that is ours or ours-b1):
  burst  `--burst-calls` (default `--calls`) due within one second: the time from the first
         due until all are live, all events are on the socket and all pushes accepted; with
         `trivial` among the designs, its burst too (the floor: until all its tasks ran);
  move   `--move-calls` (default 1,000) due across `--move-window` (30) s, each moved
         `--move-by` (10) s later `--move-before` (5) s before its start, through the service
         the API's PATCH uses (`services.calls.call_update`), from `--movers` (4) threads here;
         a call moved before its old start and live before its new start is a violation (it
         went live at the old time). How long before the old start the moves committed is
         printed; a move that came after the old start (the movers fell behind) is not
         counted, and one that failed (an exception: a 5xx from the API) is a MISSES.

CPU: CPU-seconds of the design's processes (schedulers, workers with their children, web),
read from /proc before seeding and at the end of the pass (a killed process is read just
before its kill), per 1,000 go-lives (for `trivial`: per 1,000 task runs).

Targets (issue 17), printed as MEETS / MISSES: ours at 10,000 across 60 s with the kill:
socket p99 <= 1 s, database p99 <= 50 ms, 0 lost and 0 doubled in every measure; 10,000 due
at once: all live <= 2 s, all delivered (socket and push) <= 10 s; CPU per go-live (flip,
sockets, pushes and webhooks) <= 2 ms; none moved goes live at its old time. The exit status is
1 on a process that failed (or, with `--strict`, on a MISSES), else 0: losses and lateness
are what is measured. Everything it writes (users, devices, calls, events, webhook endpoint,
broker messages) is removed before and after. The full run takes about 25 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _procs  # noqa: E402
from bench._procs import BenchFailure, Proc, wait_ready  # noqa: E402
from bench.api import _ensure_database, _percentile  # noqa: E402
from tests.calls.push.standins import WebPushService, vapid_keypair  # noqa: E402

PREFIX = "bench-sched-"
USER = "bench-sched-doctor"
PATIENT = "bench-sched-p"
TEAM = "bench-sched-clinic"
CALL_TYPE = "appointment"
QUEUE = "bench-sched"  # bench.scheduler_tasks.QUEUE, without importing Django first
TASKS = {"eta": "bench.scheduler_tasks.go_live", "trivial": "bench.scheduler_tasks.trivial"}
RAN_KEY, RUNS_KEY = "bench-sched:ran", "bench-sched:runs"  # bench.scheduler_tasks
DESIGNS = ("ours", "trivial", "eta", "ours-b1")
LABELS = {
    "ours": "ours",
    "trivial": "(a) ETA trivial",
    "eta": "(b) ETA go-live",
    "ours-b1": "(c) ours batch 1",
}
MEASURES = ("database", "socket", "push", "webhook")
EVENT = "call.live_started"
VAPID_SUBJECT = "mailto:bench@clinic.example"
TARGET_DB_P99_MS = 50.0
TARGET_SOCKET_P99_MS = 1000.0
TARGET_BURST_LIVE_S = 2.0
TARGET_BURST_DELIVERED_S = 10.0
TARGET_CPU_MS = 2.0


# --- what the users see: a socket client, the push service, a webhook receiver ------------------


class Arrivals:
    """cid → the times (time.time()) something about it arrived; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}

    def add(self, cid: str, at: float) -> None:
        with self.lock:
            self.times.setdefault(cid, []).append(at)

    def reset(self) -> None:
        with self.lock:
            self.times = {}

    def snapshot(self) -> dict[str, list[float]]:
        with self.lock:
            return {k: list(v) for k, v in self.times.items()}

    def count(self) -> int:
        return len(self.times)


class PushArrivals(Arrivals):
    """Pushes accepted with their payloads still encrypted (`WebPushService.defer_decrypt`):
    while a pass runs they are counted by subscription (each patient's one device gets one
    go-live push per pass); after it, `resolve` decrypts every payload and notes each push,
    at the time it was accepted, under the cid it names, if it is this bench's event."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[object, float]] = []

    def accept(self, received, at: float) -> None:
        with self.lock:
            self.pending.append((received, at))

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.pending = []

    def count(self) -> int:
        with self.lock:
            return len(self.times) + len({received.token for received, _ in self.pending})

    def resolve(self, service: WebPushService) -> None:
        service.decrypt_deferred()
        with self.lock:
            pending, self.pending = self.pending, []
        for received, at in pending:
            payload = received.payload if isinstance(received.payload, dict) else {}
            if payload.get("type") == EVENT:
                self.add(payload.get("cid", ""), at)


class TeamSocket:
    """One WebSocket client subscribed to the clinic's team, in a process of its own (so the
    push service's threads here do not hold it back; started as `scheduler.py --socket-client
    FILE`, the URL in BENCH_SOCKET_URL): it appends `cid<TAB>time.time()` to FILE for each
    `call.live_started` frame.
    Like the staff pages (appointments/static/portal/portal.js) it reconnects after a close
    (a slow consumer's 4008 included) a second later, doubling up to 30 s, with the highest
    event id seen as `last_event_id`, so a close makes events late, not lost."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.file = logs / "socket-arrivals.tsv"
        self.file.write_text("")
        self.proc = Proc(
            "socket-client",
            [sys.executable, str(Path(__file__).resolve()), "--socket-client", str(self.file)],
            {**os.environ, "BENCH_SOCKET_URL": url},  # not in argv: the URL has a token
            logs / "socket-client.log",
            ready_line="subscribed",
        )
        self.arrivals = Arrivals()
        self._read = 0
        self.reconnects = 0

    def start(self) -> None:
        self.proc.start()
        wait_ready([self.proc], timeout=30)

    def poll(self) -> None:
        """Read the arrivals written since the last poll."""
        with self.file.open() as f:
            f.seek(self._read)
            chunk = f.read()
        complete = chunk.rfind("\n") + 1
        self._read += len(chunk[:complete].encode())
        for line in chunk[:complete].splitlines():
            cid, at = line.split("\t")
            self.arrivals.add(cid, float(at))

    def stop(self) -> None:
        self.proc.stop()
        self.poll()
        log = self.proc.log.read_text(errors="replace")
        self.reconnects = log.count("reconnecting")

    @property
    def error(self) -> str | None:
        closes = [line for line in self.proc.log.read_text().splitlines() if "closed" in line]
        return "; ".join(closes[:3]) if closes else None


def _socket_client(url: str, out: str) -> None:
    """The socket client's process (see TeamSocket)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def main() -> None:
        last_id = None
        retry = 1.0
        with open(out, "a") as sink:
            while True:
                try:
                    async with connect(url, open_timeout=30, max_queue=None) as conn:
                        connected = json.loads(await conn.recv())
                        if connected.get("type") != "connected":
                            raise RuntimeError(f"not connected: {connected}")
                        sub = {"type": "subscribe_team", "team": TEAM}
                        if last_id is not None:
                            sub["last_event_id"] = last_id
                        await conn.send(json.dumps(sub))
                        async for raw in conn:
                            at = time.time()
                            message = json.loads(raw)
                            kind = message.get("type")
                            if kind == "subscribed":
                                retry = 1.0
                                if last_id is None:
                                    last_id = message.get("last_event_id")
                                print("subscribed", message, flush=True)
                            elif kind == "event":
                                if last_id is None or message["id"] > last_id:
                                    last_id = message["id"]
                                event = message.get("event") or {}
                                if event.get("type") == EVENT:
                                    sink.write(f"{event.get('call_cid', '')}\t{at!r}\n")
                                    sink.flush()
                            elif kind in ("unsubscribed", "error"):
                                print("refused", message, flush=True)
                                return
                except (ConnectionClosed, OSError) as exc:
                    print(f"closed: {exc!r}; reconnecting in {retry:g} s", flush=True)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 30.0)

    asyncio.run(main())


class PushService(WebPushService):
    """The suite's Web Push stand-in, listening on a port of BENCH_PORTS; notes how long it
    takes to answer (so a slow stand-in would show, rather than pass for a slow app)."""

    handled = 0
    handling_s = 0.0

    def handle(self, path: str, headers: dict[str, str], body: bytes):
        started = time.perf_counter()
        try:
            return super().handle(path, headers, body)
        finally:
            with self.lock:
                self.handled += 1
                self.handling_s += time.perf_counter() - started

    def start(self) -> None:
        from tests.calls.push import standins

        handler = type("Handler", (standins._Handler,), {"server_obj": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", _procs.free_port()), handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


class WebhookReceiver:
    """The clinic's webhook endpoint: answers 200 and notes when each event arrived (the
    signature is the webhook tests' business, not this bench's)."""

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                try:
                    event = json.loads(body)
                    if event.get("type") == EVENT:
                        receiver.arrivals.add(event.get("call_cid", ""), at)
                except ValueError:
                    pass
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", _procs.free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Observers:
    push: PushService
    pushes: PushArrivals
    hooks: WebhookReceiver
    subscriptions: list  # one per patient, in patient order


# --- results -------------------------------------------------------------------------------------


@dataclass
class Measure:
    lateness_ms: list[float] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    last_s: float = float("nan")  # last arrival - first due

    def pct(self, p: float) -> float:
        return _percentile(self.lateness_ms, p) if self.lateness_ms else float("nan")

    @property
    def max(self) -> float:
        return max(self.lateness_ms) if self.lateness_ms else float("nan")


@dataclass
class Result:
    design: str
    scenario: str  # spread, burst, move
    kill: bool
    calls: int
    window: float
    measures: dict[str, Measure] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    gone_live: int = 0
    slack_s: float = 0.0  # least time a call's schedule was in place before it was due
    violations: int = 0  # move: moved before the old start, yet live before the new one
    moved: dict[str, float] = field(default_factory=dict)  # call id -> s before the old start
    move_errors: list[str] = field(default_factory=list)
    load: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.scenario == "spread":
            return "kill" if self.kill else "no kill"
        return self.scenario

    @property
    def cpu_per_1000(self) -> float:
        return sum(self.cpu.values()) * 1000 / self.gone_live if self.gone_live else float("nan")

    def as_dict(self) -> dict:
        return {
            "design": self.design,
            "scenario": self.scenario,
            "kill": self.kill,
            "calls": self.calls,
            "window_s": self.window,
            "gone_live": self.gone_live,
            "measures": {
                name: {
                    "p50_ms": m.pct(50),
                    "p99_ms": m.pct(99),
                    "max_ms": m.max,
                    "received": len(m.lateness_ms),
                    "lost": m.lost,
                    "doubled": m.doubled,
                    "all_after_first_due_s": m.last_s,
                }
                for name, m in self.measures.items()
            },
            "cpu_s": self.cpu,
            "cpu_s_per_1000": self.cpu_per_1000,
            "violations": self.violations,
            "moved_in_time": sum(1 for v in self.moved.values() if v > 0),
            "move_errors": len(self.move_errors),
            "load": list(self.load),
            "load_after": list(self.load_after),
            "notes": self.notes,
        }


# --- setup ---------------------------------------------------------------------------------------


def _seed_people(count: int, push: PushService, application_server_key: str) -> list:
    """The staff user (in the clinic's team) and `count` patients, each with one Web Push
    subscription on the push service, registered as its devices are (same rows)."""
    import hashlib

    from calls.capabilities import SERVER
    from calls.models import CallUser, PushDevice
    from calls.services.users import UserSpec, users_upsert

    users_upsert(actor=SERVER, users=[UserSpec(id=USER, teams=[TEAM])])
    patients = CallUser.objects.bulk_create(
        [CallUser(id=f"{PATIENT}{n:05d}") for n in range(count)], batch_size=2000
    )
    subscriptions = [push.subscribe(application_server_key) for _ in range(count)]
    PushDevice.objects.bulk_create(
        [
            PushDevice(
                user=patient,
                kind=PushDevice.Kind.WEBPUSH,
                token=sub.endpoint,
                token_hash=hashlib.sha256(sub.endpoint.encode()).hexdigest(),
                keys=sub.keys,
            )
            for patient, sub in zip(patients, subscriptions, strict=True)
        ],
        batch_size=2000,
    )
    return subscriptions


def _seed_calls(design: str, count: int, t0: datetime, window: float):
    """The calls and the design's schedule; returns (calls, the least time in seconds any
    call's schedule was in place before it was due: negative if the setup overran)."""
    from django.db import transaction
    from django.utils import timezone

    from calls.models import Call, CallMember, DueAction
    from calls.scheduling.due import signal_scheduler

    step = window / count
    with transaction.atomic():
        calls = Call.objects.bulk_create(
            [
                Call(
                    type_id=CALL_TYPE,
                    call_id=f"{PREFIX}{n:05d}",
                    cid=f"{CALL_TYPE}:{PREFIX}{n:05d}",
                    created_by_id=USER,
                    team=TEAM,
                    starts_at=t0 + timedelta(seconds=n * step),
                    backstage=True,
                    go_live_at_start=True,
                )
                for n in range(count)
            ],
            batch_size=2000,
        )
        CallMember.objects.bulk_create(
            [CallMember(call=call, user_id=USER, role="host") for call in calls]
            + [
                CallMember(call=call, user_id=f"{PATIENT}{n:05d}", role="call_member")
                for n, call in enumerate(calls)
            ],
            batch_size=2000,
        )
        if design.startswith("ours"):
            # The rows calls.scheduling.due.due_actions_sync writes for a new call with these
            # fields.
            DueAction.objects.bulk_create(
                [
                    DueAction(call=call, kind=DueAction.Kind.GO_LIVE, key="", due_at=call.starts_at)
                    for call in calls
                ],
                batch_size=2000,
            )
            signal_scheduler()
    if design in TASKS:
        from config.celery import app

        # In starts_at order: each message only has to be in the broker before its own call.
        slack = float("inf")
        with app.producer_or_acquire() as producer:
            for call in calls:
                args = [CALL_TYPE, call.call_id] if design == "eta" else [call.call_id]
                app.send_task(
                    TASKS[design], args=args, eta=call.starts_at, queue=QUEUE, producer=producer
                )
                slack = min(slack, (call.starts_at - timezone.now()).total_seconds())
        return calls, slack
    return calls, (t0 - timezone.now()).total_seconds()


def _processes(design: str, procs: int, logs: Path) -> tuple[list[Proc], list[Proc]]:
    """The design's processes (the web process first), and those the kill pass kills."""
    env = _procs.process_env()
    if design == "ours-b1":
        env["CALLS_SCHEDULER_BATCH_SIZE"] = "1"
        env["CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE"] = "1"
    web = _procs.web(logs, env)
    if design.startswith("ours"):
        schedulers = [_procs.scheduler(f"scheduler-{i}", logs, env) for i in range(procs)]
        worker = _procs.worker("ours-worker", logs, env)
        # The dedicated relay worker of README "Production"; the other worker takes the
        # relay queue too (no -Q), so it relays while this one is down: the one killed.
        relayer = _procs.worker("ours-relay", logs, env, queues="relay")
        # README "Production"'s webhook worker: receivers' answers never hold the processes
        # that send pushes (which the other worker takes before webhooks).
        hooks = _procs.worker("ours-webhooks", logs, env, queues="webhooks")
        return [web, *schedulers, worker, relayer, hooks], [schedulers[0], relayer]
    workers = [
        _procs.worker(
            f"{design}-worker-{i}",
            logs,
            env,
            queues=f"{QUEUE},celery,relay,webhooks",
            concurrency=1,
            include="bench.scheduler_tasks",
        )
        for i in range(procs)
    ]
    return [web, *workers], [workers[0]]


# --- measuring and cleaning up -------------------------------------------------------------------


def _received(design: str, client: TeamSocket, obs: Observers) -> dict[str, dict[str, list]]:
    """measure → cid → arrival times, for the measures other than the database's."""
    if design == "trivial":
        return {}
    client.poll()
    obs.pushes.resolve(obs.push)  # after the pass: every payload decrypted and checked
    return {
        "socket": client.arrivals.snapshot(),
        "push": obs.pushes.snapshot(),
        "webhook": obs.hooks.arrivals.snapshot(),
    }


def _trivial_runs() -> dict[str, tuple[float, int]]:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    ran = client.hgetall(RAN_KEY)
    runs = client.hgetall(RUNS_KEY)
    return {k.decode(): (float(v), int(runs.get(k, 1))) for k, v in ran.items()}


def _done_count(design: str, client: TeamSocket, obs: Observers) -> tuple[int, int]:
    """(database count, least count over the other measures)."""
    from calls.models import Call

    if design == "trivial":
        import redis
        from django.conf import settings

        n = redis.Redis.from_url(settings.REDIS_URL).hlen(RAN_KEY)
        return n, n
    live = Call.objects.filter(call_id__startswith=PREFIX, live_started_at__isnull=False).count()
    client.poll()
    others = min(client.arrivals.count(), obs.pushes.count(), obs.hooks.arrivals.count())
    return live, others


def _write_timings(path: Path, rows: list, received: dict[str, dict[str, list]]) -> None:
    """One CSV line per call (`--timings`), in seconds since the epoch: when it was due, went
    live, its `call.live_started` was committed and relayed (the outbox row), and first
    reached the socket, the push service and the webhook receiver: where a late one waited."""
    from calls.models import CallEvent

    events = {
        cid: (created, relayed)
        for cid, created, relayed in CallEvent.objects.filter(
            call_cid__startswith=f"{CALL_TYPE}:{PREFIX}", type=EVENT
        ).values_list("call_cid", "created_at", "relayed_at")
    }

    def stamp(at) -> str:
        return "" if at is None else f"{at if isinstance(at, float) else at.timestamp():.3f}"

    lines = ["cid,due,live,created,relayed,socket,push,webhook"]
    for cid, _, starts_at, live_started_at in rows:
        created, relayed = events.get(cid, (None, None))
        firsts = [min(received.get(m, {}).get(cid) or [None]) for m in MEASURES[1:]]
        values = [starts_at, live_started_at, created, relayed, *firsts]
        lines.append(",".join([cid, *(stamp(v) for v in values)]))
    path.write_text("\n".join(lines) + "\n")


def _measure(
    result: Result, design: str, client: TeamSocket, obs: Observers, timings: Path | None = None
) -> None:
    from django.db.models import Count

    from calls.models import Call, CallEvent

    rows = list(
        Call.objects.filter(call_id__startswith=PREFIX).values_list(
            "cid", "call_id", "starts_at", "live_started_at"
        )
    )
    due = {cid: starts_at.timestamp() for cid, _, starts_at, _ in rows}
    first_due = min(due.values(), default=0.0)
    db = Measure()
    if design == "trivial":
        runs = _trivial_runs()
        for cid, call_id, _, _ in rows:
            if call_id in runs:
                ran, count = runs[call_id]
                db.lateness_ms.append((ran - due[cid]) * 1000)
                db.doubled += count > 1
            else:
                db.lost += 1
        db.last_s = max(r for r, _ in runs.values()) - first_due if runs else float("nan")
        result.gone_live = len(runs)
    else:
        lives = []
        for cid, _, _, live_started_at in rows:
            if live_started_at is None:
                db.lost += 1
            else:
                lives.append(live_started_at.timestamp())
                db.lateness_ms.append((lives[-1] - due[cid]) * 1000)
        db.last_s = max(lives) - first_due if lives else float("nan")
        db.doubled = (
            CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}", type=EVENT)
            .values("call_cid")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        result.gone_live = len(lives)
    result.measures["database"] = db
    received = _received(design, client, obs)
    if timings is not None:
        _write_timings(timings, rows, received)
    for name, arrivals in received.items():
        m = Measure()
        firsts = []
        for cid, at in due.items():
            times = arrivals.get(cid)
            if not times:
                m.lost += 1
                continue
            firsts.append(min(times))
            m.lateness_ms.append((firsts[-1] - at) * 1000)
            m.doubled += len(times) > 1
        m.last_s = max(firsts) - first_due if firsts else float("nan")
        strangers = set(arrivals) - set(due)
        if strangers:
            result.notes.append(f"{name}: {len(strangers)} arrivals for calls of no pass")
        result.measures[name] = m


_APP_TASKS = (
    *TASKS.values(),
    "calls.outbox.tasks.",
    "calls.tasks.",
    "appointments.",
)


def _is_ours(raw: bytes | str) -> bool:
    """A broker message of this bench or of the app's tasks its passes caused."""
    try:
        message = json.loads(raw)
        message = message[0] if isinstance(message, list) else message  # unacked: [msg, ex, rk]
        task = message.get("headers", {}).get("task") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return False
    return task.startswith(_APP_TASKS)


def _stranded() -> int:
    """Go-live messages left unacknowledged once the processes stopped: a worker stopped
    with SIGTERM gives its reserved messages back, so these were the killed worker's."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    count = 0
    for _, raw in client.hscan_iter("unacked"):
        try:
            message = json.loads(raw)
            message = message[0] if isinstance(message, list) else message
            count += message.get("headers", {}).get("task") in TASKS.values()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
    return count


def _cleanup_broker() -> None:
    """Drop this bench's messages: its queue, the app's task messages in the default queue
    and what killed workers left unacknowledged (kombu hands those out again after the
    visibility timeout, to whoever listens), and the trivial task's notes."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in client.scan_iter(match=f"{QUEUE}*"):
        client.delete(key)
    client.delete(RAN_KEY, RUNS_KEY)
    for tag, raw in client.hscan_iter("unacked"):
        if _is_ours(raw):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    for key in [
        *client.scan_iter(match="celery*", _type="LIST"),
        *client.scan_iter(match="relay*", _type="LIST"),
    ]:
        for raw in client.lrange(key, 0, -1):
            if _is_ours(raw):
                client.lrem(key, 1, raw)


def _cleanup_calls() -> None:
    from calls.models import Call, CallEvent

    CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}").delete()
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    _cleanup_broker()


def _cleanup_all() -> None:
    from calls.models import CallEvent, CallUser, WebhookEndpoint

    _cleanup_calls()
    WebhookEndpoint.objects.filter(team=TEAM).delete()
    CallEvent.objects.filter(type="user.updated", payload__user__id__startswith=PREFIX).delete()
    CallUser.objects.filter(id__startswith=PREFIX).delete()  # their devices go with them


# --- one pass ------------------------------------------------------------------------------------


def _socket_url(port: int) -> str:
    from django.conf import settings

    from calls.tokens import mint_user_token

    token = mint_user_token(USER, expires_in=3600)
    return f"ws://127.0.0.1:{port}/ws/v1/events?api_key={settings.CALLS_API_KEY}&token={token}"


def _mover(calls, move_by: float, before: float, *, result: Result, stop: threading.Event) -> None:
    """Move each call `move_by` seconds later, `before` seconds before its start, through
    the service the API's PATCH uses; notes how long before the old start each move
    committed, and the moves that failed (what the API would answer with a 5xx)."""
    from django.db import connection
    from django.utils import timezone

    from calls.capabilities import SERVER
    from calls.services.calls import call_update

    try:
        for call in sorted(calls, key=lambda c: c.starts_at):
            wait = (call.starts_at - timedelta(seconds=before) - timezone.now()).total_seconds()
            if wait > 0 and stop.wait(wait):
                return
            try:
                call_update(
                    actor=SERVER,
                    type_name=CALL_TYPE,
                    call_id=call.call_id,
                    starts_at=call.starts_at + timedelta(seconds=move_by),
                )
            except Exception as exc:
                result.move_errors.append(f"{call.call_id}: {exc!r}"[:400])
                connection.close()
                continue
            result.moved[call.call_id] = (call.starts_at - timezone.now()).total_seconds()
    finally:
        connection.close()


def _run_pass(
    args: argparse.Namespace,
    design: str,
    scenario: str,
    kill: bool,
    logs: Path,
    obs: Observers,
) -> Result:
    from django.db import connection
    from django.utils import timezone

    calls_n = {"spread": args.calls, "burst": args.burst_calls, "move": args.move_calls}[scenario]
    window = {"spread": args.window, "burst": 1.0, "move": args.move_window}[scenario]
    result = Result(design, scenario, kill, calls_n, window)
    pass_logs = logs / f"{design}-{scenario}-{'kill' if kill else 'no-kill'}"
    pass_logs.mkdir()
    procs, victims = _processes(design, args.procs, pass_logs)
    web = procs[0]
    _cleanup_calls()
    obs.pushes.reset()
    obs.hooks.arrivals.reset()
    client: TeamSocket | None = None
    movers: list[threading.Thread] = []
    stop_mover = threading.Event()
    started = time.perf_counter()
    try:
        for proc in procs:
            proc.start()
        wait_ready(procs)
        client = TeamSocket(_socket_url(web.port), pass_logs)
        client.start()
        result.load = os.getloadavg()
        cpu0 = {p.name: p.cpu() for p in procs}
        lead = args.lead if args.lead is not None else 3 + calls_n / 700
        if scenario == "move":
            lead = max(lead, args.move_before + 1)
        t0 = timezone.now() + timedelta(seconds=lead)
        calls, result.slack_s = _seed_calls(design, calls_n, t0, window)
        if result.slack_s < 0:
            result.notes.append(f"setup overran a call's due time by {-result.slack_s:.1f} s")
        if scenario == "move":
            # Several movers, as several API requests at once: one thread alone falls behind
            # on a loaded machine.
            by_start = sorted(calls, key=lambda c: c.starts_at)
            movers = [
                threading.Thread(
                    target=_mover,
                    args=(by_start[i :: args.movers], args.move_by, args.move_before),
                    kwargs={"result": result, "stop": stop_mover},
                    daemon=True,
                )
                for i in range(args.movers)
            ]
            for mover in movers:
                mover.start()
        connection.close()
        shift = args.move_by if scenario == "move" else 0.0
        last_due = t0 + timedelta(seconds=shift + window * (calls_n - 1) / calls_n)
        kill_at = t0 + timedelta(seconds=window / 2)
        grace = args.burst_grace if scenario == "burst" else args.grace
        deadline = last_due + timedelta(seconds=grace)
        killed_at: datetime | None = None
        restarted = not kill
        while True:
            now = timezone.now()
            if kill and killed_at is None and now >= kill_at:
                for proc in victims:
                    proc.kill()
                killed_at = now
                names = ", ".join(p.name for p in victims)
                result.notes.append(f"SIGKILL {names} at +{(now - t0).total_seconds():.1f} s")
            if (
                not restarted
                and killed_at
                and now >= killed_at + timedelta(seconds=args.restart_after)
            ):
                for proc in victims:
                    proc.start()
                restarted = True
            for proc in procs:
                assert proc.process is not None
                if proc.process.poll() is not None and (proc not in victims or restarted):
                    raise BenchFailure(
                        f"{design}: {proc.name} exited with {proc.process.returncode}:\n"
                        f"{proc.tail()}"
                    )
            if now >= deadline:
                break
            if now >= last_due and restarted:
                live, others = _done_count(design, client, obs)
                if live >= calls_n and others >= calls_n:
                    # Everything arrived; a moment more shows what would arrive twice.
                    time.sleep(1.0)
                    break
            time.sleep(0.5 if now >= last_due else 0.2)
        # At the end of the grace period, with the processes still running.
        result.cpu = {name: p.cpu() - cpu0[name] for p in procs for name in [p.name]}
        result.load_after = os.getloadavg()
        timings = args.timings and args.timings.with_name(
            f"{args.timings.stem}-{design}-{scenario}-{'kill' if kill else 'no-kill'}.csv"
        )
        _measure(result, design, client, obs, timings)
        if scenario == "move":
            stop_mover.set()
            for mover in movers:
                mover.join(30)
            result.violations = _move_violations(result)
            _move_notes(result)
    finally:
        stop_mover.set()
        if client is not None:
            client.stop()
            if client.reconnects:
                result.notes.append(
                    f"the socket client reconnected {client.reconnects} time(s) (with "
                    f"last_event_id, as the staff pages do): {client.error}"
                )
        for proc in procs:
            proc.stop()
        stranded = _stranded() if kill and design in TASKS else 0
        connection.close()
        _cleanup_calls()
    if stranded:
        result.notes.append(
            f"{stranded} ETA tasks reserved by the killed worker wait unacknowledged for the "
            "broker's visibility_timeout (3600 s) before redelivery: their calls are counted "
            "lost, not waited for"
        )
    if obs.push.handled:
        result.notes.append(
            f"the push service answered {obs.push.handled} pushes in "
            f"{obs.push.handling_s * 1000 / obs.push.handled:.1f} ms each on average "
            "(VAPID checked; payloads stored, decrypted after the pass)"
        )
        obs.push.handled, obs.push.handling_s = 0, 0.0
    if obs.push.errors:
        result.notes.append(f"push service errors: {obs.push.errors[:3]}")
        obs.push.errors.clear()
    result.seconds = time.perf_counter() - started
    return result


def _move_violations(result: Result) -> int:
    """Calls moved before their old start that went live before their new start: at the old
    time. (A call the mover reached after its old start, or could not move, is no violation:
    it is reported apart.)"""
    from django.db.models import F

    from calls.models import Call

    in_time = [call_id for call_id, slack in result.moved.items() if slack > 0]
    return Call.objects.filter(call_id__in=in_time, live_started_at__lt=F("starts_at")).count()


def _move_notes(result: Result) -> None:
    """How long before the old start the moves committed, and the moves that failed."""
    slack = list(result.moved.values())
    if slack:
        late = sum(1 for s in slack if s <= 0)
        result.notes.append(
            f"moves committed {min(slack):.2f} s (least) / {_percentile(slack, 50):.2f} s "
            f"(median) before the old start; {len(slack)} of {result.calls} moved"
            + (f", {late} after the old start (the mover fell behind: not counted)" if late else "")
        )
    if result.move_errors:
        result.notes.append(
            f"{len(result.move_errors)} moves failed (call_update raised; the API would answer "
            f"5xx), e.g. {result.move_errors[0]}"
        )


# --- report --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _load(load: tuple[float, ...]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def _verdict(ok: bool) -> str:
    return "MEETS" if ok else "MISSES"


def _report(args: argparse.Namespace, results: list[Result]) -> list[tuple[str, bool]]:
    print()
    print(
        f"{os.cpu_count()} CPUs; {args.procs} scheduler(s) (ours) or ETA worker(s) per design; "
        f"grace {args.grace:g} s (burst {args.burst_grace:g} s); kill restarted after "
        f"{args.restart_after:g} s; times from each call's starts_at, in ms"
    )
    header = (
        f"{'design':<17} {'pass':<8} {'calls':>6} {'measure':<9} {'p50':>8} {'p99':>8} "
        f"{'max':>8} {'all at s':>8} {'lost':>6} {'doubled':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        first = True
        for name in MEASURES:
            m = r.measures.get(name)
            if m is None:
                continue
            label = "task ran" if r.design == "trivial" else name
            head = (
                f"{LABELS[r.design]:<17} {r.label:<8} {r.calls:>6}"
                if first
                else f"{'':<17} {'':<8} {'':>6}"
            )
            last = "-" if m.lost or math.isnan(m.last_s) else f"{m.last_s:.2f}"
            print(
                f"{head} {label:<9} {_ms(m.pct(50)):>8} {_ms(m.pct(99)):>8} {_ms(m.max):>8} "
                f"{last:>8} {m.lost:>6} {m.doubled:>7}"
            )
            first = False
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r.cpu.items())
        extra = (
            f"; violations (live before the new start): {r.violations}"
            if r.scenario == "move"
            else ""
        )
        print(
            f"{'':<17} {'':<8} {'':>6} CPU-s per 1,000 go-lives {r.cpu_per_1000:.1f} "
            f"({cpu}; {r.gone_live} gone live){extra}"
        )
        print(f"{'':<17} {'':<8} {'':>6} load {_load(r.load)} -> {_load(r.load_after)}")
    notes = [(r, n) for r in results for n in r.notes]
    if notes:
        print()
        for r, note in notes:
            print(f"{LABELS[r.design]} / {r.label}: {note}")

    # Ratios against the floor in the same run.
    floor = {r.kill: r for r in results if r.design == "trivial" and r.scenario == "spread"}
    if floor:
        print("\nratios to (a), same pass (database p99 / CPU per go-live):")
        for r in results:
            base = floor.get(r.kill)
            if r.scenario != "spread" or base is None or r is base:
                continue
            db, bdb = r.measures["database"], base.measures["database"]
            print(
                f"  {LABELS[r.design]:<17} {r.label:<8} database p99 "
                f"{db.pct(99) / max(bdb.pct(99), 1e-9):.1f}x, CPU "
                f"{r.cpu_per_1000 / max(base.cpu_per_1000, 1e-9):.1f}x"
            )

    bursts = {r.design: r for r in results if r.scenario == "burst"}
    if "trivial" in bursts and len(bursts) > 1:
        base = bursts["trivial"].measures["database"].last_s
        n = bursts["trivial"].calls
        print(f"\nburst: (a) all {n} tasks ran {base:.2f} s after the first due")
        for design, r in bursts.items():
            if design != "trivial":
                live = r.measures["database"].last_s
                ratio = live / max(base, 1e-9)
                print(f"  {LABELS[design]:<17} all live {live:.2f} s ({ratio:.1f}x)")

    verdicts: list[tuple[str, bool]] = []
    ours = next((d for d in args.designs if d.startswith("ours")), None)
    print("\ntargets (issue 17), ours:")
    for r in results:
        if r.design != ours:
            continue
        ms = r.measures
        lost = sum(m.lost for m in ms.values())
        doubled = sum(m.doubled for m in ms.values())
        zero = not lost and not doubled
        if r.scenario == "spread":
            ok = (
                ms["socket"].pct(99) <= TARGET_SOCKET_P99_MS
                and ms["database"].pct(99) <= TARGET_DB_P99_MS
                and zero
            )
            what = (
                f"{r.calls} across {r.window:g} s, {r.label}: socket p99 <= 1 s "
                f"({_ms(ms['socket'].pct(99))} ms), database p99 <= 50 ms "
                f"({_ms(ms['database'].pct(99))} ms), 0 lost / 0 doubled (lost "
                f"{lost}, doubled {doubled})"
            )
            if r.kill or args.no_kill:
                verdicts.append((what, ok))
            cpu_ms = r.cpu_per_1000  # CPU-seconds per 1,000 = CPU-ms per go-live
            verdicts.append(
                (
                    f"CPU per go-live (flip, sockets, pushes, webhooks) <= 2 ms, {r.label}: "
                    f"{cpu_ms:.2f} ms",
                    cpu_ms <= TARGET_CPU_MS,
                )
            )
        elif r.scenario == "burst":
            live = ms["database"]
            delivered = max(ms["socket"].last_s, ms["push"].last_s)
            all_live = live.last_s if not live.lost else float("inf")
            all_delivered = (
                delivered if not (ms["socket"].lost or ms["push"].lost) else float("inf")
            )
            verdicts.append(
                (
                    f"{r.calls} due at once: all live <= 2 s ({all_live:.2f} s)",
                    all_live <= TARGET_BURST_LIVE_S,
                )
            )
            verdicts.append(
                (
                    f"{r.calls} due at once: all delivered, socket and push, <= 10 s "
                    f"({all_delivered:.2f} s; socket {ms['socket'].last_s:.2f}, push "
                    f"{ms['push'].last_s:.2f}, lost {ms['socket'].lost} / {ms['push'].lost})",
                    all_delivered <= TARGET_BURST_DELIVERED_S,
                )
            )
        elif r.scenario == "move":
            verdicts.append(
                (
                    f"{r.calls} moved {args.move_by:g} s later, {args.move_before:g} s before "
                    f"their start: none live at the old time ({r.violations} violations of "
                    f"{sum(1 for v in r.moved.values() if v > 0)} moved in time), no move "
                    f"failed ({len(r.move_errors)}), 0 lost ({ms['database'].lost})",
                    r.violations == 0 and not r.move_errors and ms["database"].lost == 0,
                )
            )
    for what, ok in verdicts:
        print(f"  {_verdict(ok):<6} {what}")
    return verdicts


def main() -> int:
    if sys.argv[1:2] == ["--socket-client"]:
        _socket_client(os.environ["BENCH_SOCKET_URL"], sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds the calls span")
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--no-kill", action="store_true", help="skip the passes with a kill")
    parser.add_argument("--only-kill", action="store_true", help="skip those without")
    parser.add_argument(
        "--no-spread", action="store_true", help="only the scenarios (burst, move) of ours"
    )
    parser.add_argument("--no-burst", action="store_true", help="skip the burst scenario")
    parser.add_argument("--no-move", action="store_true", help="skip the move scenario")
    parser.add_argument("--burst-calls", type=int, default=None, help="default: --calls")
    parser.add_argument("--burst-grace", type=float, default=60.0)
    parser.add_argument("--move-calls", type=int, default=1000)
    parser.add_argument("--move-window", type=float, default=30.0)
    parser.add_argument("--movers", type=int, default=4, help="threads moving calls")
    parser.add_argument("--move-by", type=float, default=10.0)
    parser.add_argument("--move-before", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=2, help="schedulers / ETA workers")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds after the window")
    parser.add_argument("--restart-after", type=float, default=2.0)
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from setup to the first due call"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 across 10 s, ours, the kill pass only"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--timings", type=Path, default=None, help="per-call CSVs: PATH-<design>-<pass>.csv"
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="the processes' logs")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a MISSES")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.window, args.designs = 1000, 10.0, "ours"
        args.no_burst = args.no_move = args.only_kill = True
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = set(args.designs) - set(DESIGNS)
    if unknown:
        parser.error(f"unknown design(s): {', '.join(sorted(unknown))}")
    args.burst_calls = args.burst_calls or args.calls
    ours = next((d for d in args.designs if d.startswith("ours")), None)

    private_key, application_server_key = vapid_keypair()
    os.environ.update(
        {
            "WEBPUSH_VAPID_PRIVATE_KEY": private_key,
            "WEBPUSH_VAPID_SUBJECT": VAPID_SUBJECT,
            # The push service and the webhook receiver are plain http on 127.0.0.1.
            "WEBPUSH_ALLOW_HTTP_ENDPOINTS": "true",
            "WEBPUSH_ALLOW_PRIVATE_NETWORKS": "true",
            "WEBHOOKS_ALLOW_HTTP": "true",
            "WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
        }
    )
    _procs.bootstrap("config.settings")
    _ensure_database()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from calls.models import WebhookEndpoint

    call_command("migrate", verbosity=0, interactive=False)
    print(
        f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}; "
        f"broker: {settings.CELERY_BROKER_URL}; load {_load(os.getloadavg())}",
        flush=True,
    )
    passes: list[tuple[str, str, bool]] = []
    kills = (True,) if args.only_kill else (False,) if args.no_kill else (False, True)
    for design in args.designs:
        passes += [] if args.no_spread else [(design, "spread", kill) for kill in kills]
    if ours and not args.no_burst:
        passes.append((ours, "burst", False))
        if "trivial" in args.designs:  # the floor of a burst, in the same run
            passes.append(("trivial", "burst", False))
    if ours and not args.no_move:
        passes.append((ours, "move", False))
    people = max(args.calls, args.burst_calls if not args.no_burst else 0, args.move_calls)

    started = time.perf_counter()
    results: list[Result] = []
    push = PushService(defer_decrypt=True)
    push.start()
    pushes = PushArrivals()
    push.on_push = lambda received: pushes.accept(received, time.time())
    hooks = WebhookReceiver()
    hooks.start()
    try:
        _cleanup_all()
        t = time.perf_counter()
        subscriptions = _seed_people(people, push, application_server_key)
        WebhookEndpoint.objects.create(url=hooks.url, team=TEAM, event_types=[EVENT])
        print(f"seeded {people} patients with a Web Push device in {time.perf_counter() - t:.1f} s")
        obs = Observers(push, pushes, hooks, subscriptions)
        with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
            logs = args.keep_logs or Path(tmp)
            logs.mkdir(parents=True, exist_ok=True)
            for design, scenario, kill in passes:
                result = _run_pass(args, design, scenario, kill, logs, obs)
                results.append(result)
                summary = ", ".join(
                    f"{name} p99 {_ms(m.pct(99))} ms lost {m.lost} doubled {m.doubled}"
                    for name, m in result.measures.items()
                )
                print(
                    f"  {LABELS[design]:<17} {result.label:<8}: {summary}; "
                    f"{result.cpu_per_1000:.1f} CPU-s / 1,000 ({result.seconds:.0f} s)",
                    flush=True,
                )
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        push.stop()
        hooks.stop()
        _cleanup_all()
    verdicts = _report(args, results)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load {_load(os.getloadavg())}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [r.as_dict() for r in results],
                    "targets": [{"what": w, "meets": ok} for w, ok in verdicts],
                },
                indent=1,
            )
        )
    return 1 if args.strict and not all(ok for _, ok in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
