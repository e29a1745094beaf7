"""Hand a job to the workers by its task's name.

Celery tasks (`calls.outbox.tasks`, `calls.tasks`, `appointments.tasks`) import the code they
run; the code that enqueues them names them here instead of importing them, so the imports run
one way (tasks → relay / webhooks / push / services, never back). The tasks are registered
when the apps are ready (their `apps.py`); an unknown name is a KeyError, never a silent send
to nowhere. With `CELERY_TASK_ALWAYS_EAGER` (the embedded default, tests) the task runs
in-process.

An enqueue is a best effort, and never an error: it runs after a commit (the outbox row, the
delivery row or the task row is already the promise), so a broker that is down or unreachable
must not turn the committed request into a 500. The publish is bounded (the CELERY_BROKER_*
and CELERY_TASK_PUBLISH_RETRY_POLICY settings: a short connect timeout, a couple of quick
retries); when it still fails, a warning names the task and the error's type (never the
arguments or the broker's address) and the row waits for its sweep, which the scheduler runs
(`calls.scheduling.scheduler`: relay, push and webhook deliveries, API tasks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import current_app

logger = logging.getLogger("calls.outbox.queue")


# Message priorities (Redis: 0 is taken first; CELERY_TASK_DEFAULT_PRIORITY puts every other
# message behind it). Rings, and the relay of the events that ring, are URGENT: a worker that
# comes back from an outage to a backlog rings the calls starting now before it works through
# the backlog, instead of letting their rings expire behind it. So are the pushes of a call
# going live (`push.dispatch.is_urgent`): a patient is waiting for them now, while webhooks,
# reminders and the other pushes can wait a few seconds behind them.
URGENT = 0


def enqueue(
    task: str, *args: Any, priority: int | None = None, countdown: float | None = None
) -> bool:
    """`task` is the task's full name, e.g. `calls.outbox.tasks.relay_events`. Returns whether
    the broker took it; False (logged) leaves the work to the sweep. `countdown`: run it no
    sooner than that many seconds from now (ignored in-process)."""
    handle = current_app.tasks[task]  # an unknown name is a bug: it raises
    options: dict[str, Any] = {} if priority is None else {"priority": priority}
    if countdown:
        options["countdown"] = countdown
    if handle.app.conf.task_always_eager:
        # In-process: the task's own errors are the caller's, as they always were.
        handle.apply_async(args, **options)
        return True
    try:
        handle.apply_async(args, **options)
    except Exception as exc:
        logger.warning("enqueue of %s failed (%s): left for the sweep", task, type(exc).__name__)
        return False
    return True


def enqueue_each(task: str, ids: Iterable[Any], *, priority: int | None = None) -> int:
    """One `task` per id, stopping at the first that the broker refused (the others would
    each wait as long, and their rows are swept all the same). Returns how many left."""
    sent = 0
    for pk in ids:
        if not enqueue(task, pk, priority=priority):
            break
        sent += 1
    return sent


def enqueue_chunks(task: str, ids: Iterable[Any], *, size: int, priority: int | None = None) -> int:
    """One `task` per chunk of at most `size` ids (its one argument: the list), stopping at
    the first that the broker refused. Returns how many ids left."""
    ids = list(ids)
    sent = 0
    for start in range(0, len(ids), max(size, 1)):
        chunk = ids[start : start + max(size, 1)]
        if not enqueue(task, chunk, priority=priority):
            break
        sent += len(chunk)
    return sent
