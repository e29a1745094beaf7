"""Real worker and scheduler processes for the end-to-end tests, on the test's own database
(PostgreSQL: a separate process cannot see SQLite's test database) and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[3]


def require_postgres() -> None:
    """Skip where the suite runs on SQLite (the embedded default, no services); CI sets
    DATABASE_URL and REDIS_URL, and a service that is down there fails the run."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: a separate process cannot see SQLite's test database")


def require_postgres_and_redis() -> None:
    require_postgres()
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: the worker gets its tasks through Redis")


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this test's database and Redis, real tasks."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "DB_CONN_MAX_AGE": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",  # the readiness line reaches the log at once
        **extra,
    }


class Process:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], ready: str) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkdtemp(prefix=f"{name}-")) / f"{name}.log"
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, *args],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready = ready

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.ready not in self.log():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the {self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole group: no clean-up, no acknowledgement, as in a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen.wait(5)
        self._log.close()


def purge_tasks() -> int:
    """Drop task messages earlier tests left in the queue (they enqueue without a worker)."""
    from config import celery_app

    return celery_app.control.purge()


def start_worker(
    env: dict[str, str], *, pool: str = "solo", concurrency: int = 1, queues: str = ""
) -> Process:
    """A Celery worker: solo (one task at a time in the main process) or prefork (children in
    the same process group, so `kill()` takes them all, as a crash of the machine would); of
    every queue, or of `queues` (`-Q`)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}@%h"
    args = ["-m", "celery", "-A", "config", "worker", f"--pool={pool}", "-n", name]
    args += [f"--concurrency={concurrency}"]
    if queues:
        args += ["-Q", queues]
    args += ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return Process("worker", args, env, ready="ready.")


def start_scheduler(env: dict[str, str], *, max_sleep: float = 0.2) -> Process:
    args = ["manage.py", "run_scheduler", f"--max-sleep={max_sleep}"]
    return Process("scheduler", args, env, ready="scheduler started")
