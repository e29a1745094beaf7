"""Go-live at start: 10,000 calls due in one minute, our scheduler against the usual designs.

Run from the repo root:  .venv/bin/python bench/scheduler.py [--calls 10000] [--window 60]
    [--designs ours,eta,beat] [--no-kill] [--procs 2] [--grace 10] [--restart-after 2]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created
if missing, as bench/api.py) and REDIS_URL (default redis://127.0.0.1:6379/0), which is also
the Celery broker of the processes it starts: use a Redis database no test run or other
worker uses meanwhile, since its workers take the default queue too. The beat design needs
the `bench` extra (django-celery-beat); its processes run with bench/settings_beat.py, and so
does this driver when `beat` is among the designs (it writes beat's rows and migrates them).

Each design runs in real processes started here (DEBUG off, as in production):
  ours  `--procs` x `manage.py run_scheduler` (DueAction rows, SKIP LOCKED) and one Celery
        worker relaying the events the go-lives write, as deployed (README "Production");
  eta   `--procs` x Celery worker; one `apply_async(eta=starts_at)` per call, enqueued here;
  beat  `celery beat` with django-celery-beat's DatabaseScheduler, one ClockedSchedule and
        one one-off PeriodicTask per call, and `--procs` x Celery worker.
The eta and beat tasks (bench/scheduler_tasks.py) make the check our scheduler makes and call
the same service, `call_go_live`; their workers also relay events, as one worker pool would.
Workers are prefork with one child each, `acks_late` and the broker settings of config.settings.

Per design, two passes: without a kill, then with one: in the middle of the window the first
go-live process (for ours the first scheduler) is SIGKILLed, with the event worker for ours
and the beat process for beat, and started again `--restart-after` seconds later. The calls
(ids `bench-sched-`, appointment type, backstage, `go_live_at_start`, one host member, and
for ours their go-live DueAction rows) are bulk-created once the processes are up, with
`starts_at` spread evenly over the window from a few seconds after that.

Read from the database at the end: lateness = `live_started_at - starts_at`; lost = calls
not live by `--grace` seconds after the window; doubled = calls with more than one
`call.live_started` event. Timings never fail the run (the targets for ours, p99 <= 1 s and
max <= 3 s, are printed beside the figures); a call of ours lost or doubled does, and so does
a process that fails to start. Losses of the other designs are what is measured, not failures.
Everything it writes (calls, events, beat rows, broker messages) is removed before and after.
The defaults take about 11 minutes (six passes; the minute is not compressed).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import DEFAULT_DATABASE_URL, _ensure_database, _percentile  # noqa: E402

PREFIX = "bench-sched-"
USER = "bench-sched-doctor"
TEAM = "bench-sched-clinic"
CALL_TYPE = "appointment"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
QUEUE = "bench-sched"  # bench.scheduler_tasks.QUEUE, without importing Django first
TASK = "bench.scheduler_tasks.go_live"
RELAY_TASK = "calls.outbox.tasks.relay_events"
DESIGNS = ("ours", "eta", "beat")
TARGET_P99_MS = 1000.0
TARGET_MAX_MS = 3000.0
START_TIMEOUT_S = 60.0


class BenchFailure(Exception):
    pass


@dataclass
class Proc:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    ping: str = ""  # Celery node name to ping for readiness; else wait for `ready_line`
    ready_line: str = ""
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes its children too
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Result:
    design: str
    kill: bool
    lateness_ms: list[float] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    slack_s: float = 0.0  # least time a call's schedule was in place before it was due
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "kill" if self.kill else "no kill"

    def pct(self, p: float) -> float:
        return _percentile(self.lateness_ms, p) if self.lateness_ms else float("nan")

    @property
    def max(self) -> float:
        return max(self.lateness_ms) if self.lateness_ms else float("nan")


# --- setup ---------------------------------------------------------------------------------


def _bootstrap(settings_module: str) -> None:
    script_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != script_dir]
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"  # the eta design enqueues for real
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

    import django

    django.setup()


def _env(settings_module: str) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DJANGO_DEBUG": "false",  # as in production: no query log
            # Production must choose an email backend; the benchmark talks plain http locally.
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "SECURE_SSL_REDIRECT": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "CALLS_API_KEY": settings.CALLS_API_KEY,
            "CALLS_API_SECRET": settings.CALLS_API_SECRET,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def _processes(design: str, procs: int, logs: Path) -> tuple[list[Proc], list[Proc]]:
    """The design's processes, and those the kill pass kills."""
    python = sys.executable
    env = _env("config.settings")

    def worker(name: str, queues: str) -> Proc:
        node = f"{name}@bench"
        cmd = [python, "-m", "celery", "-A", "config", "worker", "-n", node, "-Q", queues]
        cmd += ["--include", "bench.scheduler_tasks", "--pool=prefork", "--concurrency=1"]
        cmd += ["--loglevel=WARNING", "--without-heartbeat", "--without-mingle"]
        cmd += ["--without-gossip"]
        return Proc(name, cmd, env, logs / f"{name}.log", ping=node)

    if design == "ours":
        schedulers = [
            Proc(
                f"scheduler-{i}",
                [python, "manage.py", "run_scheduler"],
                env,
                logs / f"scheduler-{i}.log",
                ready_line="scheduler started",
            )
            for i in range(procs)
        ]
        relay = worker("ours-relay-worker", "celery")
        return [*schedulers, relay], [schedulers[0], relay]
    workers = [worker(f"{design}-worker-{i}", f"{QUEUE},celery") for i in range(procs)]
    if design == "eta":
        return workers, [workers[0]]
    beat_cmd = [python, "-m", "celery", "-A", "config", "beat", "--loglevel=WARNING"]
    beat_cmd += ["-S", "django_celery_beat.schedulers:DatabaseScheduler"]
    beat = Proc("beat", beat_cmd, _env("bench.settings_beat"), logs / "beat.log")
    return [beat, *workers], [beat, workers[0]]


def _wait_ready(procs: list[Proc]) -> None:
    from config.celery import app

    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(procs)
    while waiting:
        for proc in list(waiting):
            assert proc.process is not None
            if proc.process.poll() is not None:
                raise BenchFailure(
                    f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}"
                )
            if proc.ping:
                if app.control.ping(destination=[proc.ping], timeout=0.5):
                    waiting.remove(proc)
            elif not proc.ready_line or proc.ready_line in proc.log.read_text(errors="replace"):
                waiting.remove(proc)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(p.name for p in waiting)
            raise BenchFailure(f"not ready after {START_TIMEOUT_S:.0f} s: {names}")
        if waiting:
            time.sleep(0.2)


def _seed(design: str, count: int, t0: datetime, window: float) -> float:
    """Write the calls and the design's schedule; returns the least time, in seconds, any call's
    schedule was in place before the call was due (negative: the setup overran)."""
    from django.db import transaction
    from django.utils import timezone

    from calls.capabilities import SERVER
    from calls.models import Call, CallMember, DueAction
    from calls.scheduling.due import signal_scheduler
    from calls.services.users import UserSpec, users_upsert

    users_upsert(actor=SERVER, users=[UserSpec(id=USER, teams=[TEAM])])
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
            [CallMember(call=call, user_id=USER, role="host") for call in calls], batch_size=2000
        )
        if design == "ours":
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
    if design == "eta":
        from config.celery import app

        # In starts_at order: each message only has to be in the broker before its own call.
        slack = float("inf")
        with app.producer_or_acquire() as producer:
            for call in calls:
                app.send_task(
                    TASK,
                    args=[CALL_TYPE, call.call_id],
                    eta=call.starts_at,
                    queue=QUEUE,
                    producer=producer,
                )
                slack = min(slack, (call.starts_at - timezone.now()).total_seconds())
        return slack
    if design == "beat":
        from django_celery_beat.models import ClockedSchedule, PeriodicTask, PeriodicTasks

        with transaction.atomic():
            clocks = ClockedSchedule.objects.bulk_create(
                [ClockedSchedule(clocked_time=call.starts_at) for call in calls], batch_size=2000
            )
            PeriodicTask.objects.bulk_create(
                [
                    PeriodicTask(
                        name=call.call_id,
                        task=TASK,
                        clocked=clock,
                        one_off=True,
                        args=json.dumps([CALL_TYPE, call.call_id]),
                        queue=QUEUE,
                    )
                    for call, clock in zip(calls, clocks, strict=True)
                ],
                batch_size=2000,
            )
            PeriodicTasks.update_changed()  # bulk_create sends no signal: tell beat to reload
    return (t0 - timezone.now()).total_seconds()


# --- measuring and cleaning up -------------------------------------------------------------


def _live_count() -> int:
    from calls.models import Call

    return Call.objects.filter(call_id__startswith=PREFIX, live_started_at__isnull=False).count()


def _measure(result: Result) -> None:
    from django.db.models import Count

    from calls.models import Call, CallEvent

    rows = Call.objects.filter(call_id__startswith=PREFIX).values_list(
        "starts_at", "live_started_at"
    )
    for starts_at, live_started_at in rows:
        if live_started_at is None:
            result.lost += 1
        else:
            result.lateness_ms.append((live_started_at - starts_at).total_seconds() * 1000)
    result.doubled = (
        CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}")
        .filter(type="call.live_started")
        .values("call_cid")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )


def _is_ours(raw: bytes | str, event_ids: set[int]) -> bool:
    """A broker message this benchmark sent: a go-live task, or a relay of its events."""
    try:
        message = json.loads(raw)
        message = message[0] if isinstance(message, list) else message  # unacked: [msg, ex, rk]
        task = message.get("headers", {}).get("task")
        if task == TASK:
            return True
        if task == RELAY_TASK:
            args = json.loads(base64.b64decode(message["body"]))[0]
            return bool(args[0]) and set(args[0]) <= event_ids
    except (ValueError, KeyError, IndexError, TypeError):
        return False
    return False


def _cleanup_broker(event_ids: set[int]) -> None:
    """Drop this benchmark's messages: its queue, and what killed workers left unacknowledged
    (kombu would hand those out again after the visibility timeout, to whoever listens)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in client.scan_iter(match=f"{QUEUE}*"):
        client.delete(key)
    for tag, raw in client.hscan_iter("unacked"):
        if _is_ours(raw, event_ids):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    # The default queue, in each of its priority lists (`celery`, `celery\x06\x163`, ...).
    for key in client.scan_iter(match="celery*", _type="LIST"):
        for raw in client.lrange(key, 0, -1):
            if _is_ours(raw, event_ids):
                client.lrem(key, 1, raw)


def _cleanup(*, beat: bool) -> None:
    from django.db import connection

    from calls.models import Call, CallEvent, CallUser

    events = CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}")
    _cleanup_broker(set(events.values_list("pk", flat=True)))
    events.delete()
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    CallEvent.objects.filter(type="user.updated", payload__user__id__startswith=PREFIX).delete()
    CallUser.objects.filter(id__startswith=PREFIX).delete()
    if beat:
        from django_celery_beat.models import ClockedSchedule, PeriodicTask, PeriodicTasks

        tasks = PeriodicTask.objects.filter(name__startswith=PREFIX)
        clocks = list(tasks.values_list("clocked_id", flat=True))
        if clocks:
            # Plain DELETEs: beat's per-row delete signal would make 10,000 of them one by one.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {PeriodicTask._meta.db_table} WHERE name LIKE %s",  # noqa: S608
                    [f"{PREFIX}%"],
                )
                cursor.execute(
                    f"DELETE FROM {ClockedSchedule._meta.db_table} WHERE id = ANY(%s)",  # noqa: S608
                    [clocks],
                )
            PeriodicTasks.update_changed()


# --- one pass ------------------------------------------------------------------------------


def _run_pass(args: argparse.Namespace, design: str, kill: bool, logs: Path) -> Result:
    from django.db import connection
    from django.utils import timezone

    result = Result(design, kill)
    pass_logs = logs / f"{design}-{'kill' if kill else 'no-kill'}"
    pass_logs.mkdir()
    procs, victims = _processes(design, args.procs, pass_logs)
    _cleanup(beat="beat" in args.designs)
    try:
        for proc in procs:
            proc.start()
        _wait_ready(procs)
        lead = args.lead if args.lead is not None else 3 + args.calls / 700
        t0 = timezone.now() + timedelta(seconds=lead)
        result.slack_s = _seed(design, args.calls, t0, args.window)
        if result.slack_s < 0:
            result.notes.append(f"setup overran a call's due time by {-result.slack_s:.1f} s")
        connection.close()
        last_due = t0 + timedelta(seconds=args.window * (args.calls - 1) / args.calls)
        kill_at = t0 + timedelta(seconds=args.window / 2)
        deadline = last_due + timedelta(seconds=args.grace)
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
            if now >= last_due and restarted and _live_count() == args.calls:
                break
            time.sleep(0.5 if now >= last_due else 0.2)
        _measure(result)  # at the end of the grace period, with the processes still running
    finally:
        for proc in procs:
            proc.stop()
        stranded = _stranded() if design == "eta" and kill else 0
        connection.close()
        _cleanup(beat="beat" in args.designs)
    if stranded:
        result.notes.append(
            f"{stranded} ETA tasks reserved by the killed worker wait unacknowledged for the "
            "broker's visibility_timeout (3600 s) before redelivery: their calls are counted "
            "lost, not waited for"
        )
    return result


def _stranded() -> int:
    """Go-live messages left unacknowledged once the design's processes have stopped: a worker
    stopped with SIGTERM gives its reserved messages back, so these were the killed worker's."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(1 for _, raw in client.hscan_iter("unacked") if _is_ours(raw, set()))


# --- report --------------------------------------------------------------------------------


def _report(args: argparse.Namespace, results: list[Result]) -> None:
    ours = {r.kill: r for r in results if r.design == "ours"}
    print()
    print(
        f"{args.calls} calls due across {args.window:g} s, {args.procs} go-live process(es) per "
        f"design, grace {args.grace:g} s, kill restarted after {args.restart_after:g} s"
    )
    header = (
        f"{'design':<6} {'pass':<8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>6} "
        f"{'doubled':>7} {'p99/ours':>9} {'max/ours':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        base = ours.get(r.kill)
        ratio_p99 = ratio_max = "-"
        if base is not None and base.lateness_ms and r.lateness_ms:
            ratio_p99 = f"{r.pct(99) / max(base.pct(99), 1e-9):.1f}x"
            ratio_max = f"{r.max / max(base.max, 1e-9):.1f}x"
        line = (
            f"{r.design:<6} {r.label:<8} {r.pct(50):>8.0f} {r.pct(99):>8.0f} {r.max:>8.0f} "
            f"{r.lost:>6} {r.doubled:>7} {ratio_p99:>9} {ratio_max:>9}"
        )
        if r.design == "ours":
            meets = (
                r.pct(99) <= TARGET_P99_MS
                and r.max <= TARGET_MAX_MS
                and not r.lost
                and not r.doubled
            )
            line += f"   target p99<=1000 max<=3000 0/0: {'MEETS' if meets else 'MISSES'}"
        print(line)
    notes = [(r, n) for r in results for n in r.notes]
    if notes:
        print()
        for r, note in notes:
            print(f"{r.design} / {r.label}: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds the calls span")
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--no-kill", action="store_true", help="skip the passes with a kill")
    parser.add_argument("--procs", type=int, default=2, help="go-live processes per design")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds after the window")
    parser.add_argument("--restart-after", type=float, default=2.0)
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from setup to the first due call"
    )
    args = parser.parse_args()
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = set(args.designs) - set(DESIGNS)
    if unknown:
        parser.error(f"unknown design(s): {', '.join(sorted(unknown))}")
    _bootstrap("bench.settings_beat" if "beat" in args.designs else "config.settings")
    _ensure_database()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    print(
        f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}; "
        f"broker: {settings.CELERY_BROKER_URL}"
    )
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        logs = Path(tmp)
        try:
            for design in args.designs:
                for kill in (False,) if args.no_kill else (False, True):
                    pass_started = time.perf_counter()
                    result = _run_pass(args, design, kill, logs)
                    results.append(result)
                    print(
                        f"  {design:<4} {result.label:<7}: p50 {result.pct(50):.0f} ms, "
                        f"p99 {result.pct(99):.0f} ms, max {result.max:.0f} ms, "
                        f"lost {result.lost}, doubled {result.doubled} "
                        f"(setup slack {result.slack_s:.1f} s, "
                        f"{time.perf_counter() - pass_started:.0f} s)",
                        flush=True,
                    )
        except BenchFailure as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    _report(args, results)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    bad = [r for r in results if r.design == "ours" and (r.lost or r.doubled)]
    if bad:
        print("FAILED: our scheduler lost or doubled calls", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
