"""Ring fan-out: one ring to N Web Push devices, against a sequential pywebpush loop.

Run from the repo root:  .venv/bin/python bench/push.py [--devices 1000] [--concurrency N]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created
if missing, as bench/api.py) and REDIS_URL (default redis://127.0.0.1:6379/0; the worker takes
the default queue, so give the run a Redis database no other worker uses).

The push service is the test suite's stand-in (tests/calls/push/standins.py
`WebPushService`), in this process on 127.0.0.1, as a real push service works: for every POST
it checks the VAPID header (RFC 8292: the ES256 signature with `k`, aud, exp, sub), the
content encoding and the TTL and Topic headers, stores the aes128gcm body and answers 201. A
push counts as accepted just before that answer. A real push service (FCM, Mozilla autopush)
cannot decrypt a payload, which is end-to-end encrypted to the browser; the stand-in used to
decrypt each one in-line, and that decryption, on the same two cores as the sender, was the
largest part of the time measured for ours (bench/push.py's profile). So `defer_decrypt`: after
each design's timed part, in the same run, every stored payload is decrypted (RFC 8291, with
the subscription's private key, `WebPushService.decrypt_deferred`) and checked as below; a
payload that does not decrypt is a failure of that design, as it was in-line.

Ours (the production path): N patients, each with one Web Push subscription registered through
`services.devices.device_register`, are members of one call (services, PostgreSQL); a Celery
worker runs in a subprocess as deployed (`celery -A config worker`, prefork, its default
concurrency = CPU count unless `--concurrency`), on Redis. The clock starts just before
`services.ringing.call_ring` (the doctor rings every member); the ring event is relayed by the
worker (`relay_events`), the push consumer writes one PushDelivery per device and enqueues them
in `deliver_pushes` tasks (`dispatch.batch_size`: one per worker process, at most
PUSH_BATCH_SIZE rows), whose pushes are encrypted one by one and leave as they are made,
pipelined over at most WEBPUSH_CONNECTIONS kept-alive connections (PUSH_PIPELINE_DEPTH
requests ahead on each); the clock stops when the push service has accepted the Nth push.
The processes are started through bench/_procs.py; the push service listens on a port of
BENCH_PORTS.

Baseline, in the same run: a sequential loop of pywebpush `webpush()` calls (its default HTTP
client, one request at a time) sending the same N payloads, with the same VAPID key, TTL and
headers, to the same subscriptions on the same push service.

Every payload (decrypted after the timed part, above) must be the expected JSON (cid, type
call.ring, call_type, call_id, title, body, tag; strings only) and carry no patient data (no
patient name, id or the call's custom data); each device must get exactly one push, and every
delivery row end `sent` in one attempt.
Target (issue 17, item 4): ours at least 5x faster than the loop, every payload valid; printed
as MEETS / MISSES (exit status 1 on MISSES). Everything it writes has an id starting with
`bench-push-` and is deleted before and after a run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _procs  # noqa: E402
from bench._procs import BenchFailure, Proc, wait_ready  # noqa: E402
from bench.api import _ensure_database, _percentile  # noqa: E402
from tests.calls.push.standins import WebPushService, vapid_keypair  # noqa: E402

PREFIX = "bench-push-"
DOCTOR = "bench-push-doctor"
CALL_TYPE = "default"
SUBJECT = "mailto:bench@clinic.example"
PATIENT_NAME = "Zelda Quistbrook"  # + a number: must never reach a push
REASON = "bench-push follow-up for chest pain"
PAYLOAD_KEYS = {"cid", "type", "call_type", "call_id", "title", "body", "tag"}
TARGET_RATIO = 5.0
BATCH = 100  # members per request (services.base.MAX_MEMBERS_PER_REQUEST)
TIMEOUT_S = 300.0
WARM_UP = 8  # devices rung once before the measured ring


# --- measuring ---------------------------------------------------------------------------------


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Arrivals:
    """When the push service accepted each push (after decrypting it, before answering)."""

    def __init__(self, service: WebPushService) -> None:
        self.service = service
        self.times: list[float] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        self.service.reset()
        self.times = []
        self.service.on_push = self._on_push

    def _on_push(self, _received) -> None:
        with self.lock:
            self.times.append(time.perf_counter())

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.times) >= count:
                return True
            time.sleep(0.005)
        return len(self.times) >= count


def _check_payloads(service: WebPushService, subscriptions, cid: str, tag: str) -> list[str]:
    """Problems with what the push service received: an error it saw, a device without its one
    push, a payload not of the expected shape, or patient data in it."""
    service.decrypt_deferred()  # after the timed part: every payload, each design's
    problems = [f"push service: {e}" for e in service.errors[:5]]
    wanted = {s.endpoint.rsplit("/", 1)[-1] for s in subscriptions}
    counts: dict[str, int] = {}
    forbidden = [PATIENT_NAME, REASON, "Quistbrook", f"{PREFIX}p"]
    for push in service.received:
        counts[push.token] = counts.get(push.token, 0) + 1
        payload = push.payload
        text = json.dumps(payload)
        if not isinstance(payload, dict) or set(payload) != PAYLOAD_KEYS:
            problems.append(f"unexpected payload keys: {text[:200]}")
            continue
        if not all(isinstance(v, str) for v in payload.values()):
            problems.append(f"non-string payload value: {text[:200]}")
        expected = {"cid": cid, "type": "call.ring", "tag": tag}
        if any(payload[k] != v for k, v in expected.items()):
            problems.append(f"payload not of this ring: {text[:200]}")
        leaked = [word for word in forbidden if word in text]
        if leaked:
            problems.append(f"patient data {leaked} in a payload: {text[:200]}")
        if push.headers.get("urgency") != "high" or push.headers.get("ttl") != "0":
            problems.append(f"headers: urgency {push.headers.get('urgency')!r}, ttl ...")
    missing = wanted - set(counts)
    doubled = [t for t, n in counts.items() if n > 1]
    strangers = set(counts) - wanted
    if missing:
        problems.append(f"{len(missing)} devices got no push")
    if doubled:
        problems.append(f"{len(doubled)} devices got more than one push")
    if strangers:
        problems.append(f"{len(strangers)} pushes to unknown subscriptions")
    return problems


# --- setup ---------------------------------------------------------------------------------------


def _cleanup() -> None:
    from calls.models import Call, CallEvent, CallUser

    CallEvent.objects.filter(call_cid__startswith=f"{CALL_TYPE}:{PREFIX}").delete()
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    CallEvent.objects.filter(payload__user__id__startswith=PREFIX).delete()
    CallUser.objects.filter(id__startswith=PREFIX).delete()  # their devices go with them


def _seed(service: WebPushService, application_server_key: str, count: int):
    """The doctor and `count` patients, each with one browser subscription registered, all
    members of one call; returns (call_id, subscriptions)."""
    from calls.capabilities import SERVER
    from calls.services.base import MemberSpec
    from calls.services.calls import call_get_or_create, call_members_update
    from calls.services.devices import device_register
    from calls.services.users import UserSpec, users_upsert

    patients = [f"{PREFIX}p{i:05d}" for i in range(count)]
    users_upsert(actor=SERVER, users=[UserSpec(id=DOCTOR, name="Dr Bench")])
    for i in range(0, count, BATCH):
        chunk = patients[i : i + BATCH]
        users_upsert(
            actor=SERVER, users=[UserSpec(id=u, name=f"{PATIENT_NAME} {u[-5:]}") for u in chunk]
        )
    subscriptions = []
    for user_id in patients:
        subscription = service.subscribe(application_server_key)
        device_register(
            user_id=user_id, kind="webpush", token=subscription.endpoint, keys=subscription.keys
        )
        subscriptions.append(subscription)
    call_id = f"{PREFIX}{uuid.uuid4().hex[:10]}"
    call_get_or_create(
        actor=SERVER,
        type_name=CALL_TYPE,
        call_id=call_id,
        created_by_id=DOCTOR,
        members=[MemberSpec(user_id=DOCTOR, role="host")],
        custom={"reason": REASON, "patient_name": PATIENT_NAME},
    )
    for i in range(0, count, BATCH):
        call_members_update(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=call_id,
            update_members=[MemberSpec(user_id=u) for u in patients[i : i + BATCH]],
        )
    return call_id, subscriptions


def _warm_up(service: WebPushService, application_server_key: str, arrivals: Arrivals) -> None:
    """Ring WARM_UP other patients once, so every worker process has loaded the providers and
    opened its connections before the measured ring (as a running worker would have)."""
    from calls.capabilities import SERVER
    from calls.services.base import MemberSpec
    from calls.services.calls import call_get_or_create
    from calls.services.devices import device_register
    from calls.services.users import UserSpec, users_upsert

    users = [f"{PREFIX}warm{i}" for i in range(WARM_UP)]
    users_upsert(actor=SERVER, users=[UserSpec(id=u, name="Warm Up") for u in users])
    for user_id in users:
        subscription = service.subscribe(application_server_key)
        device_register(
            user_id=user_id, kind="webpush", token=subscription.endpoint, keys=subscription.keys
        )
    arrivals.start()
    call_get_or_create(
        actor=SERVER,
        type_name=CALL_TYPE,
        call_id=f"{PREFIX}warm-{uuid.uuid4().hex[:6]}",
        created_by_id=DOCTOR,
        members=[MemberSpec(user_id=DOCTOR, role="host"), *(MemberSpec(user_id=u) for u in users)],
        ring=True,
    )
    if not arrivals.wait(WARM_UP, 60) or service.errors:
        raise BenchFailure(f"warm-up ring failed: {service.errors[:3]}")


def _wait_relayed(timeout: float) -> None:
    """Wait until the worker has relayed the seeding's events, so the ring runs alone."""
    from calls.models import CallEvent

    deadline = time.monotonic() + timeout
    while CallEvent.objects.filter(
        call_cid__startswith=f"{CALL_TYPE}:{PREFIX}", relayed_at__isnull=True
    ).exists():
        if time.monotonic() > deadline:
            raise BenchFailure("the worker did not relay the seeding's events")
        time.sleep(0.2)


# --- the two designs ----------------------------------------------------------------------------


def _run_ours(call_id: str, count: int, arrivals: Arrivals, worker: Proc) -> dict:
    from django.utils import timezone

    from calls.capabilities import SERVER
    from calls.models import CallEvent, PushDelivery
    from calls.services.ringing import call_ring

    arrivals.start()
    load = os.getloadavg()
    cpu_worker, cpu_self = worker.cpu(), _self_cpu()
    wall0 = timezone.now()
    t0 = time.perf_counter()
    rung = call_ring(actor=SERVER, type_name=CALL_TYPE, call_id=call_id)
    t_ring = time.perf_counter()
    done = arrivals.wait(count, TIMEOUT_S)
    t_end = time.perf_counter()
    [event] = CallEvent.objects.filter(call_cid=f"{CALL_TYPE}:{call_id}", type="call.ring")
    # The worker records each row after the push service answered: let the last ones land.
    deadline = time.monotonic() + 30
    while (
        PushDelivery.objects.filter(event=event, state__in=["queued", "sending"]).exists()
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    cpu_worker = worker.cpu() - cpu_worker
    cpu_self = _self_cpu() - cpu_self
    if len(rung) != count:
        raise BenchFailure(f"call_ring rang {len(rung)} members, not {count}")
    rows = list(
        PushDelivery.objects.filter(event=event).values_list(
            "state", "attempts", "claimed_at", "sent_at"
        )
    )
    not_sent = sum(1 for state, attempts, *_ in rows if state != "sent" or attempts != 1)
    sends = [(sent - claimed).total_seconds() for _, _, claimed, sent in rows if sent and claimed]
    since = lambda at: (at - wall0).total_seconds() if at else float("nan")  # noqa: E731
    phases = {
        "ring committed": since(event.created_at),
        "event relayed, rows written": since(event.relayed_at),
        "first claimed": since(min((c for _, _, c, _ in rows if c), default=None)),
        "first accepted": min(arrivals.times, default=t0) - t0,
        "last claimed": since(max((c for _, _, c, _ in rows if c), default=None)),
        "last accepted": max(arrivals.times, default=t0) - t0,
        "last recorded": since(max((t for *_, t in rows if t), default=None)),
    }
    return {
        "done": done,
        "accepted": len(arrivals.times),
        "latencies": [t - t0 for t in arrivals.times],
        "total": (max(arrivals.times) - t0) if done else t_end - t0,
        "ring_call_s": t_ring - t0,
        "rows": len(rows),
        "rows_not_sent_once": not_sent,
        "send_s": sends,  # claim -> recorded, per delivery, in the worker
        "phases": phases,
        "cpu": {"worker": cpu_worker, "this process (push service, ring)": cpu_self},
        "load": load,
        "tag": f"ring-{event.pk}",
        "event_bytes": len(json.dumps(event.payload)),
        "cid": event.call_cid,
    }


def _run_baseline(
    subscriptions, payload: dict, private_key: str, arrivals: Arrivals, *, keep_alive: bool
) -> dict:
    """pywebpush's `webpush()` for each subscription in turn. As documented and commonly
    written: the key as a string, a new requests call (so a new connection) each time; or,
    `keep_alive`, the best a sequential loop does: one `requests.Session` (kept-alive
    connection) and the key parsed once."""
    import requests
    from py_vapid import Vapid
    from pywebpush import webpush

    from calls.outbox.push.webpush import topic

    data = json.dumps(payload)
    headers = {"Urgency": "high", "Topic": topic(payload["tag"])}
    session = requests.Session() if keep_alive else None
    key = Vapid.from_string(private_key) if keep_alive else private_key
    arrivals.start()
    load = os.getloadavg()
    cpu_self = _self_cpu()
    rtts = []
    t0 = time.perf_counter()
    for subscription in subscriptions:
        t = time.perf_counter()
        response = webpush(
            subscription_info={"endpoint": subscription.endpoint, "keys": subscription.keys},
            data=data,
            vapid_private_key=key,
            vapid_claims={"sub": SUBJECT},
            ttl=0,
            headers=dict(headers),
            timeout=10,
            requests_session=session,
        )
        rtts.append(time.perf_counter() - t)
        if response.status_code != 201:
            raise BenchFailure(f"baseline push answered {response.status_code}")
    t_end = time.perf_counter()
    cpu_self = _self_cpu() - cpu_self
    if session is not None:
        session.close()
    return {
        "done": len(arrivals.times) == len(subscriptions),
        "accepted": len(arrivals.times),
        "latencies": [t - t0 for t in arrivals.times],
        "total": t_end - t0,
        "send_s": rtts,  # one webpush() call: encrypt, sign, POST, answer
        "cpu": {"this process (loop + push service)": cpu_self},
        "load": load,
    }


def _profile(call_id: str, count: int, arrivals: Arrivals) -> None:
    """Where a push's CPU goes in the worker: the measured ring's rows are queued again (their
    event made fresh, so the ring is not expired) and `count` of them sent in this process in
    batches of `dispatch.batch_size` (`delivery.deliver_many`, the worker's code path without
    Celery) under cProfile timed by this thread's CPU clock, on one connection and a batch
    in one window (so its pipeline runs in this thread; the push service's threads, in this
    process too, are not counted)."""
    import cProfile
    import pstats

    from django.conf import settings
    from django.utils import timezone

    from calls.models import CallEvent, PushDelivery
    from calls.outbox.push import delivery, dispatch

    [event] = CallEvent.objects.filter(call_cid=f"{CALL_TYPE}:{call_id}", type="call.ring")
    CallEvent.objects.filter(pk=event.pk).update(created_at=timezone.now())
    ids = list(PushDelivery.objects.filter(event=event).order_by("pk").values_list("pk", flat=True))
    ids = ids[:count]
    PushDelivery.objects.filter(pk__in=ids).update(state="queued", attempts=0)
    size = dispatch.batch_size(len(ids))
    concurrency, depth = settings.WEBPUSH_CONNECTIONS, settings.PUSH_PIPELINE_DEPTH
    # One connection and a batch in one window: its pipeline runs in this thread.
    settings.WEBPUSH_CONNECTIONS, settings.PUSH_PIPELINE_DEPTH = 1, size
    delivery.deliver(ids.pop())  # warm: the provider is built once per process
    arrivals.start()
    profiler = cProfile.Profile(time.thread_time)
    cpu, wall = time.thread_time(), time.perf_counter()
    profiler.enable()
    for start in range(0, len(ids), size):
        delivery.deliver_many(ids[start : start + size])
    profiler.disable()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    settings.WEBPUSH_CONNECTIONS, settings.PUSH_PIPELINE_DEPTH = concurrency, depth
    n = len(ids)
    stats = pstats.Stats(profiler)

    def per(path: str, func: str) -> str:
        # The largest cumulative time of a function of that name in that file (a subclass
        # calling its parent's method of the same name is not counted twice); C functions
        # ("~") by a part of their name.
        found = [
            entry[3]
            for (file, _line, name), entry in stats.stats.items()
            if (name == func and file.endswith(path)) or (file == "~" == path and func in name)
        ]
        return f"{max(found, default=0.0) * 1000 / n:6.3f} ms"

    print(
        f"\nprofile: {n} deliveries sent in batches of {size} by `delivery.deliver_many` in this "
        f"process (cProfile on, this thread's CPU: {cpu * 1000 / n:.3f} ms per delivery; "
        f"wall {wall * 1000 / n:.2f} ms, with the push service in this process)"
    )
    print("  CPU per delivery, cumulative (each includes those indented below it):")
    rows = [
        ("delivery.deliver_many", "outbox/push/delivery.py", "deliver_many"),
        ("  claim (rows, devices, events)", "outbox/push/delivery.py", "_claim"),
        ("  other reads (ORM)", "django/db/models/query.py", "_fetch_all"),
        ("  provider_for", "outbox/push/delivery.py", "provider_for"),
        ("  push_texts (once per language)", "outbox/push/dispatch.py", "push_texts"),
        ("  message_of (once per event)", "outbox/push/dispatch.py", "message_of"),
        ("  WebPushProvider.send_many", "outbox/push/webpush.py", "send_many"),
        ("    encrypt (RFC 8291 aes128gcm)", "outbox/push/webpush.py", "encrypt"),
        ("      ephemeral P-256 key", "~", "generate_private_key"),
        ("      ECDH", "~", "'exchange'"),
        ("      AES-128-GCM", "~", "'encrypt' of"),
        ("    VAPID header (one per origin)", "outbox/push/webpush.py", "vapid_headers"),
        ("    netguard.post_many", "calls/netguard.py", "post_many"),
        ("      check_url (once per origin)", "calls/netguard.py", "check_url"),
        ("      request lines", "calls/netguard.py", "_request_line"),
        ("      socket writes", "~", "'sendall'"),
        ("      read answers", "calls/netguard.py", "_read_answer"),
        ("  record (UPDATEs by outcome)", "outbox/push/delivery.py", "_record_all"),
        ("  SQL (CursorWrapper.execute)", "db/backends/utils.py", "execute"),
    ]
    for label, name, func in rows:
        print(f"  {label:<38}{per(name, func)}")
    print("  top 12 by own time:")
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:12]
    for (file, line, func), entry in top:
        where = f"{Path(file).name}:{line} {func}"
        print(f"    {entry[2] * 1000 / n:6.3f} ms  {where}")


# --- report --------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def _print_design(name: str, result: dict, count: int) -> None:
    lat = result["latencies"]
    print(f"\n{name}")
    print(f"  load before (1/5/15 min): {' / '.join(f'{x:.2f}' for x in result['load'])}")
    print(f"  accepted (VAPID checked; decrypted after): {result['accepted']} / {count}")
    if lat:
        print(
            f"  start -> push accepted: p50 {_ms(_percentile(lat, 50))}, "
            f"p99 {_ms(_percentile(lat, 99))}, max {_ms(max(lat))}"
        )
    sends = result["send_s"]
    if sends:
        label = "one send in the worker (claim -> recorded)" if "rows" in result else "one call"
        print(f"  {label}: p50 {_ms(_percentile(sends, 50))}, p99 {_ms(_percentile(sends, 99))}")
    print(f"  total: {result['total']:.2f} s ({count / result['total']:,.0f} pushes/s)")
    cpu = result["cpu"]
    print(
        "  CPU-seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        + f"; {sum(cpu.values()) * 1000 / count:.2f} ms per push"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="worker processes (default: CPU count)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="the push service's port (default: a free one in BENCH_PORTS)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=200,
        metavar="N",
        help="after the runs, profile N deliveries in-process (0: skip)",
    )
    args = parser.parse_args()
    count = args.devices

    private_key, application_server_key = vapid_keypair()
    os.environ.update(
        {
            "WEBPUSH_VAPID_PRIVATE_KEY": private_key,
            "WEBPUSH_VAPID_SUBJECT": SUBJECT,
            # The push service is plain http on 127.0.0.1 (the worker inherits these).
            "WEBPUSH_ALLOW_HTTP_ENDPOINTS": "true",
            "WEBPUSH_ALLOW_PRIVATE_NETWORKS": "true",
        }
    )
    _procs.bootstrap("config.settings")
    _ensure_database()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from calls.outbox.push.dispatch import batch_size
    from config.celery import app

    call_command("migrate", verbosity=0)
    _cleanup()
    app.control.purge()
    print(
        f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}; "
        f"broker: {settings.REDIS_URL}; {os.cpu_count()} CPUs; devices: {count}"
    )

    service = WebPushService(defer_decrypt=True)  # decrypted after each timed part
    service.start(args.port or _procs.free_port())
    logs = Path(tempfile.mkdtemp(prefix="bench-push-"))
    worker = _procs.worker("bench-push", logs, _procs.process_env(), concurrency=args.concurrency)
    failures: list[str] = []
    profile_out = io.StringIO()
    try:
        worker.start()
        wait_ready([worker])
        t = time.perf_counter()
        call_id, subscriptions = _seed(service, application_server_key, count)
        arrivals = Arrivals(service)
        _warm_up(service, application_server_key, arrivals)
        _wait_relayed(120)
        print(f"seeded {count} patients, devices and members in {time.perf_counter() - t:.1f} s")

        ours = _run_ours(call_id, count, arrivals, worker)
        if not ours["done"]:
            failures.append(f"ours: {ours['accepted']} of {count} accepted in {TIMEOUT_S:.0f} s")
        if ours["rows"] != count or ours["rows_not_sent_once"]:
            failures.append(
                f"ours: {ours['rows']} delivery rows, {ours['rows_not_sent_once']} not sent "
                "in exactly one attempt"
            )
        failures += [
            f"ours: {p}" for p in _check_payloads(service, subscriptions, ours["cid"], ours["tag"])
        ]
        payload = next(iter(service.received)).payload

        base = _run_baseline(subscriptions, payload, private_key, arrivals, keep_alive=False)
        failures += [
            f"baseline: {p}"
            for p in _check_payloads(service, subscriptions, ours["cid"], ours["tag"])
        ]
        kept = _run_baseline(subscriptions, payload, private_key, arrivals, keep_alive=True)
        failures += [
            f"kept-alive loop: {p}"
            for p in _check_payloads(service, subscriptions, ours["cid"], ours["tag"])
        ]
        load_after = os.getloadavg()
        if args.profile:
            worker.stop()
            with contextlib.redirect_stdout(profile_out):
                _profile(call_id, args.profile, arrivals)
    finally:
        service.on_push = None
        worker.stop()
        service.stop()
        _cleanup()

    print(
        f"\nOne ring to {count} Web Push devices; push service: local, VAPID checked in-line, "
        "every RFC 8291 aes128gcm payload decrypted and checked after each design's timed part"
    )
    conc = args.concurrency or os.cpu_count()
    _print_design(
        f"ours: call_ring -> Celery worker (prefork, concurrency {conc}, Redis) -> "
        f"relay -> PushDelivery rows -> deliver_pushes ({batch_size(count)} rows a task, "
        f"pipelined {settings.PUSH_PIPELINE_DEPTH} deep over at most "
        f"{settings.WEBPUSH_CONNECTIONS} connections)",
        ours,
        count,
    )
    print(f"  call_ring (the service call, until commit): {_ms(ours['ring_call_s'])}")
    print(
        "  timeline from the ring: "
        + ", ".join(f"{name} {_ms(at)}" for name, at in ours["phases"].items())
    )
    print(
        f"  the call.ring event's payload (read back by each delivery): "
        f"{ours['event_bytes'] / 1024:,.0f} KiB"
    )
    _print_design("baseline: sequential pywebpush webpush() loop, same payloads", base, count)
    _print_design(
        "for comparison: the same loop with one requests.Session (kept alive), key parsed once",
        kept,
        count,
    )
    print(f"\nload after (1/5/15 min): {' / '.join(f'{x:.2f}' for x in load_after)}")
    ratio = base["total"] / ours["total"]
    print(f"ours / baseline total time: {ours['total'] / base['total']:.3f} ({ratio:.2f}x faster)")
    print(
        f"ours / kept-alive loop total time: {ours['total'] / kept['total']:.3f} "
        f"({kept['total'] / ours['total']:.2f}x faster)"
    )
    valid = not failures
    print(f"every payload valid, one per device: {'yes' if valid else 'NO'}")
    for failure in failures[:20]:
        print(f"  {failure}")
    print(profile_out.getvalue(), end="")
    meets = valid and ratio >= TARGET_RATIO
    print(
        f"target (>= {TARGET_RATIO:.0f}x faster than the sequential loop, every payload "
        f"valid): {'MEETS' if meets else 'MISSES'}"
    )
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(main())
