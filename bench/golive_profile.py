"""Where a go-live's CPU goes, stage by stage, in one process: the scheduler's claim and flip
(`run_due`, which writes the `call.live_started` events), then the relay of those events
(`calls.outbox.relay.relay`) with each consumer timed on its own: WebSocket groups
(`realtime.publish`: the channel layer, Redis), push delivery rows, webhook delivery rows, the
appointment following its call.

Run from the repo root:  .venv/bin/python bench/golive_profile.py [--calls 2000]
                                 [--batch N] [--profile scheduler|relay] [--top 25]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`) and
REDIS_URL (default redis://127.0.0.1:6379/0: the channel layer and the broker, whose queue
this run fills with the push and webhook tasks and then purges: give it a Redis database no
worker uses). Every call is an appointment's (type `appointment`, a clinic's team, its
patient a `call_member` with one Web Push device, a host), its go-live due now, and the team
has a webhook endpoint: each go-live makes one event, one push row and one webhook row.

CPU is this process's (`time.process_time`), not PostgreSQL's; the web process's share of
the socket fan-out is bench/relay.py's. The relay runs here as a worker runs it, in batches
of RELAY_BATCH. Target (issue 17): <= 2 ms CPU per go-live from the flip to the sockets,
pushes and webhooks, printed MEETS / MISSES. Everything it writes starts with
`bench-golive-` and is deleted before and after.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._procs import bootstrap as _bootstrap  # noqa: E402
from bench._procs import production_env  # noqa: E402
from bench.api import _ensure_database  # noqa: E402

PREFIX = "bench-golive-"
CLINIC = "bench-golive-clinic"
DOCTOR = "bench-golive-doctor"
PATIENT = "bench-golive-patient"
TARGET_MS = 2.0


def _cleanup() -> None:
    from appointments.models import Appointment, Clinic, Patient
    from calls.models import Call, CallEvent, CallUser, WebhookEndpoint

    CallEvent.objects.filter(call_cid__startswith=f"appointment:{PREFIX}").delete()
    Appointment.objects.filter(id__startswith="bg").delete()
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    Call.objects.filter(team=CLINIC).delete()
    Patient.objects.filter(clinic__slug=CLINIC).delete()
    Clinic.objects.filter(slug=CLINIC).delete()
    WebhookEndpoint.objects.filter(team=CLINIC).delete()
    CallUser.objects.filter(id__startswith=PREFIX).delete()


def _seed(count: int):
    from django.db import transaction
    from django.utils import timezone

    from appointments.models import Appointment, Clinic, Patient
    from calls.capabilities import SERVER
    from calls.models import Call, CallMember, CallUser, DueAction, PushDevice, WebhookEndpoint
    from calls.services.users import UserSpec, users_upsert

    users_upsert(actor=SERVER, users=[UserSpec(id=DOCTOR, teams=[CLINIC])])
    users_upsert(actor=SERVER, users=[UserSpec(id=PATIENT)])
    now = timezone.now()
    with transaction.atomic():
        clinic = Clinic.objects.create(slug=CLINIC, name="Bench clinic")
        patient = Patient.objects.create(
            clinic=clinic, call_user=CallUser.objects.get(id=PATIENT), name="P"
        )
        token = f"https://push.invalid/{PREFIX}device"
        PushDevice.objects.create(
            user_id=PATIENT,
            kind=PushDevice.Kind.WEBPUSH,
            token=token,
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            keys={"p256dh": "x", "auth": "y"},
        )
        WebhookEndpoint.objects.create(url="https://hooks.invalid/bench", team=CLINIC)
        ids = [f"bg{n:06d}" for n in range(count)]
        Appointment.objects.bulk_create(
            [
                Appointment(
                    id=pk,
                    clinic=clinic,
                    patient=patient,
                    starts_at=now,
                    ends_at=now + timedelta(minutes=20),
                )
                for pk in ids
            ],
            batch_size=2000,
        )
        calls = Call.objects.bulk_create(
            [
                Call(
                    type_id="appointment",
                    call_id=pk,
                    cid=f"appointment:{pk}",
                    created_by_id=DOCTOR,
                    team=CLINIC,
                    starts_at=now,
                    backstage=True,
                    go_live_at_start=True,
                )
                for pk in ids
            ],
            batch_size=2000,
        )
        CallMember.objects.bulk_create(
            [CallMember(call=c, user_id=DOCTOR, role="host") for c in calls]
            + [CallMember(call=c, user_id=PATIENT, role="call_member") for c in calls],
            batch_size=4000,
        )
        DueAction.objects.bulk_create(
            [DueAction(call=c, kind=DueAction.Kind.GO_LIVE, key="", due_at=now) for c in calls],
            batch_size=2000,
        )
    return [c.pk for c in calls]


class Timed:
    """A relay consumer wrapped to add its CPU time to a stage."""

    def __init__(self, name: str, consumer, cpu: dict[str, float]) -> None:
        self.name, self.consumer, self.cpu = name, consumer, cpu
        inner = getattr(consumer, "many", None)
        if inner is not None:
            self.many = self._timed(inner)

    def _timed(self, fn):
        def run(arg):
            start = time.process_time()
            try:
                fn(arg)
            finally:
                self.cpu[self.name] = self.cpu.get(self.name, 0.0) + time.process_time() - start

        return run

    def __call__(self, event) -> None:
        self._timed(self.consumer)(event)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=None, help="go-lives claimed at once")
    parser.add_argument("--profile", choices=["scheduler", "relay"], default=None)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "false")
    production_env("golive")
    _bootstrap("config.settings")
    _ensure_database()
    from django.conf import settings
    from django.core.management import call_command

    from calls.models import CallEvent, DueAction
    from calls.outbox import relay
    from calls.scheduling import scheduler
    from config.celery import app

    assert not settings.CELERY_TASK_ALWAYS_EAGER, "needs a broker (REDIS_URL)"
    call_command("migrate", verbosity=0)
    _cleanup()
    app.control.purge()
    call_pks = _seed(args.calls)
    batch = args.batch or scheduler.GO_LIVE_BATCH_SIZE
    load = os.getloadavg()
    print(
        f"{args.calls} go-lives due now; scheduler go-live batch {batch}, relay batch "
        f"{relay.RELAY_BATCH}; load {' / '.join(f'{x:.2f}' for x in load)}"
    )
    cpu: dict[str, float] = {}
    try:
        profilers = {args.profile: cProfile.Profile()} if args.profile else {}
        profiler = profilers.get("scheduler")
        start, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        while scheduler.run_due(go_live_limit=batch) > 0:
            pass
        if profiler:
            profiler.disable()
        cpu["scheduler: claim, flip, event rows"] = time.process_time() - start
        flip_wall = time.perf_counter() - wall
        pending = DueAction.objects.filter(call_id__in=call_pks, state="pending").count()
        ids = list(
            CallEvent.objects.filter(
                call_id__in=call_pks, type="call.live_started", relayed_at__isnull=True
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )

        names = {
            "calls.realtime.publish": "relay: sockets (channel layer)",
            "calls.outbox.push.dispatch.on_event": "relay: push rows",
            "calls.outbox.webhooks.on_event": "relay: webhook rows",
            "appointments.events.on_event": "relay: appointment follows",
        }
        real = relay.consumers()
        wrapped = [
            Timed(names.get(path, path), consumer, cpu)
            for path, consumer in zip(settings.CALLS_EVENT_CONSUMERS, real, strict=True)
        ]
        relay.consumers = lambda: wrapped
        profiler = profilers.get("relay")
        start, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for n in range(0, len(ids), relay.RELAY_BATCH):
            relay.relay(ids[n : n + relay.RELAY_BATCH])
        if profiler:
            profiler.disable()
        relay_total = time.process_time() - start
        relay_wall = time.perf_counter() - wall
        consumers_cpu = sum(v for k, v in cpu.items() if k.startswith("relay: "))
        cpu["relay: claim, mark relayed, hand-off"] = relay_total - consumers_cpu
        live = CallEvent.objects.filter(call_id__in=call_pks, type="call.live_started").count()
        unrelayed = CallEvent.objects.filter(call_id__in=call_pks, relayed_at__isnull=True).count()
    finally:
        app.control.purge()
        _cleanup()

    print(
        f"live_started events: {live} (calls {args.calls}); left pending {pending}; "
        f"not relayed {unrelayed}"
    )
    print(f"wall: scheduler {flip_wall:.2f} s, relay {relay_wall:.2f} s")
    print("CPU per go-live, this process:")
    total = 0.0
    for name, seconds in cpu.items():
        total += seconds
        print(f"  {name:45s} {seconds * 1000 / args.calls:7.3f} ms")
    per = total * 1000 / args.calls
    print(f"  {'total':45s} {per:7.3f} ms")
    print(f"load after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"target (<= {TARGET_MS} ms per go-live): {'MEETS' if per <= TARGET_MS else 'MISSES'}")
    if args.profile:
        print(f"\ncProfile of the {args.profile}, by cumulative time:")
        stats = pstats.Stats(profilers[args.profile])
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    ok = live == args.calls and not pending and not unrelayed
    return 0 if ok and per <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
