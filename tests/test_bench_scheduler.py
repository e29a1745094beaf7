"""bench/scheduler.py end to end with tiny numbers: it starts the production processes, measures
every call in every measure and loses nothing. A smoke test of the benchmark, never of its
speed: nothing here is timed (the bench prints MEETS / MISSES; those are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from bench import _procs
from bench.api import maintenance_connection
from tests.calls.private_redis import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the scheduler's processes share due work through PostgreSQL (SKIP LOCKED, "
        "NOTIFY); CI runs it on PostgreSQL",
    ),
]

CALLS = 8


def _bench_database_url() -> tuple[str, str]:
    """A database of the bench's own on the test server (the bench creates and migrates it)."""
    db = settings.DATABASES["default"]
    name = f"{db['NAME']}_schedbench"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{auth}@{host}/{name}", name


def _drop_database(name: str) -> None:
    from psycopg import sql

    with maintenance_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_the_smallest_run_reports_every_measure_and_loses_nothing(tmp_path):
    database_url, name = _bench_database_url()
    redis = PrivateRedis()  # its own broker: the bench's workers take the default queue
    redis.port = _procs.free_port()
    redis.start()
    out = tmp_path / "results.json"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis.url}
    cmd = [sys.executable, "bench/scheduler.py", "--designs", "ours,trivial", "--no-kill"]
    cmd += ["--calls", str(CALLS), "--window", "2", "--procs", "1", "--grace", "60"]
    cmd += ["--burst-calls", str(CALLS), "--burst-grace", "60"]
    cmd += ["--move-calls", "4", "--move-window", "2", "--move-by", "3", "--move-before", "2"]
    cmd += ["--json", str(out)]
    try:
        run = subprocess.run(  # noqa: S603 - this interpreter, the bench, our arguments
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        redis.stop()
        _drop_database(name)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    passes = {(r["design"], r["scenario"]): r for r in report["results"]}
    assert set(passes) == {
        ("ours", "spread"),
        ("trivial", "spread"),
        ("ours", "burst"),
        ("trivial", "burst"),  # the burst's same-run floor
        ("ours", "move"),
    }
    for (design, _), result in passes.items():
        wanted = {"database"} if design == "trivial" else {"database", "socket", "push", "webhook"}
        assert set(result["measures"]) == wanted, result
        for measure in result["measures"].values():
            assert measure["lost"] == 0, result
            assert measure["doubled"] == 0, result
            assert measure["received"] == result["calls"], result
        assert result["gone_live"] == result["calls"], result
        assert result["cpu_s_per_1000"] > 0, result
    assert passes["ours", "move"]["violations"] == 0
    # Each target is reported, MEETS or MISSES; which one is not this test's business.
    assert len(report["targets"]) == 5, report["targets"]
    for line in ("database", "socket", "push", "webhook", "CPU-s per 1,000", "targets"):
        assert line in run.stdout
