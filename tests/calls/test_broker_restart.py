"""Workers survive broker restarts (issue 14): the operator's worker exited for good on the
second loss of Redis ("Unrecoverable error: AttributeError 'NoneType' ... 'hostname'"). Here a
real Celery worker runs against a private redis-server (never the shared one), which is killed
and started again twice; the worker must still be running and deliver a task afterwards.

Needs PostgreSQL (the worker relays an event of the test's database) and redis-server."""

from __future__ import annotations

import time
import uuid

import pytest

from calls.capabilities import SERVER
from calls.models import CallEvent
from calls.services.calls import call_get_or_create
from tests.calls.push.processes import Process, process_env, require_postgres
from tests.factories import CallUserFactory

from .private_redis import celery_broker, running_redis

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RESTARTS = 2
DOWN_FOR = 2.0  # seconds without a broker, each time: the worker's reconnects fail meanwhile


def _production_worker(env) -> Process:
    """The worker as production runs it (`celery -A config worker`): prefork, with gossip,
    mingle and heartbeats, which the other end-to-end tests turn off."""
    name = f"restart-{uuid.uuid4().hex[:8]}@%h"
    args = ["-m", "celery", "-A", "config", "worker", "-n", name, "--concurrency=2"]
    return Process("worker", [*args, "--loglevel=INFO"], env, ready="ready.")


def _wait(condition, what: str, worker, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; worker log:\n{worker.log()[-4000:]}")
        time.sleep(0.1)


def test_a_worker_survives_two_broker_restarts_and_delivers_afterwards():
    require_postgres()
    CallUserFactory(id="doc")
    with running_redis() as redis, celery_broker(redis.url):
        worker = _production_worker(process_env(REDIS_URL=redis.url))
        try:
            worker.wait_ready()
            for restart in range(1, RESTARTS + 1):
                connected = worker.log().count("Connected to redis")
                redis.stop()
                time.sleep(DOWN_FOR)
                redis.start()
                _wait(
                    lambda c=connected: worker.log().count("Connected to redis") > c,
                    f"the worker did not reconnect after restart {restart}",
                    worker,
                )
            assert worker.popen.poll() is None, worker.log()[-4000:]

            # Committed here, relayed by the worker (this process only publishes).
            call = call_get_or_create(
                actor=SERVER, type_name="default", call_id="after-restarts", created_by_id="doc"
            ).call
            [event] = CallEvent.objects.filter(call=call)
            _wait(
                lambda: CallEvent.objects.filter(pk=event.pk, relayed_at__isnull=False).exists(),
                "the worker did not deliver a task after the restarts",
                worker,
            )
            assert worker.popen.poll() is None
            assert "Unrecoverable error" not in worker.log()
        finally:
            worker.stop()
