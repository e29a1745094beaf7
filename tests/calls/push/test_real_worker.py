"""The whole path with real processes: the scheduler rings a call at its start, a Celery
worker (a subprocess, Redis broker, PostgreSQL) relays the event and sends the Web Push; and
two concurrent sends of one delivery push once.

Needs PostgreSQL (a worker process cannot see SQLite's in-memory test database) and Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone

from calls import scheduler, services
from calls.capabilities import SERVER
from calls.models import PushDelivery
from calls.push import delivery
from calls.services import MemberSpec

from .helpers import events_of, people

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: a separate process cannot see SQLite's test database")


@pytest.fixture
def worker(postgres_only, provider_settings, vapid_keys):
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: the worker gets its tasks through Redis")
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    name = f"push-e2e-{uuid.uuid4().hex[:8]}@%h"
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "DB_CONN_MAX_AGE": "0",
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "WEBPUSH_VAPID_PRIVATE_KEY": vapid_keys[0],
        "WEBPUSH_VAPID_SUBJECT": provider_settings.WEBPUSH_VAPID_SUBJECT,
        "WEBPUSH_ALLOW_HTTP_ENDPOINTS": "true",
    }
    log_path = Path(tempfile.mkdtemp(prefix="push-worker-")) / "worker.log"
    log = log_path.open("w")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "-n",
            name,
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while "ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the worker did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.2)
    yield log_path
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    log.close()


def test_a_call_rings_the_patient_through_the_worker_at_its_start(
    worker, webpush_device, webpush_service
):
    _, patient = people()
    browser = webpush_device(patient)
    stop = threading.Event()

    def run_scheduler():
        try:
            scheduler.run_forever(max_sleep=0.2, stop=stop.is_set)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run_scheduler, daemon=True)
    thread.start()
    try:
        starts_at = timezone.now() + timedelta(seconds=3)
        call = services.call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id="e2e-visit",
            created_by_id="doc-1",
            members=[MemberSpec(user_id="doc-1", role="host"), MemberSpec(user_id="pat-1")],
            starts_at=starts_at,
            ring_at_start=True,
        ).call
        arrived = webpush_service.wait_for(1, timeout=11)
    finally:
        stop.set()
        thread.join(5)
    assert arrived, "no push within 8 s of the start:\n" + worker.read_text()[-3000:]
    assert timezone.now() - starts_at < timedelta(seconds=8)
    [push] = webpush_service.received
    assert push.token == browser.sub_id
    assert push.payload["type"] == "call.ring"
    assert push.payload["cid"] == call.cid
    [event] = events_of(call, "call.ring")
    [row] = PushDelivery.objects.filter(event=event)
    assert (row.state, row.attempts) == ("sent", 1)
    assert "calls.tasks.deliver_push" in worker.read_text()  # sent by the worker, not by us


def test_two_concurrent_sends_of_one_delivery_push_once(
    postgres_only, provider_settings, webpush_device, webpush_service, settings
):
    settings.CALLS_EVENT_CONSUMERS = []  # rows are driven by hand here
    _, patient = people()
    browser = webpush_device(patient)
    call = services.call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id="race",
        created_by_id="doc-1",
        members=[MemberSpec(user_id="doc-1"), MemberSpec(user_id="pat-1")],
        notify=True,
    ).call
    [event] = events_of(call, "call.notification")
    row = PushDelivery.objects.create(event=event, device=browser, purpose="notify")
    webpush_service.delay = 0.3
    barrier = threading.Barrier(4)

    def send():
        try:
            barrier.wait()
            delivery.deliver(row.pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(webpush_service.received) == 1
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sent", 1)
