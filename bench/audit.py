"""The audit trail's cost: appends per second with concurrent writers (each append takes the
chain's advisory lock, reads the last row and inserts), and the time `audit_verify` takes.

Run from the repo root:  .venv/bin/python bench/audit.py [--writers 4] [--appends 500]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created if
missing, as bench/api.py). The trail is append-only, so what this writes stays (ids only, the
action "patient.viewed", clinic "bench-audit"). Figures are printed, never asserted; a broken
chain fails the run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import _bootstrap, _ensure_database, _percentile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--appends", type=int, default=500, help="per writer")
    args = parser.parse_args()
    _bootstrap()
    _ensure_database()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from audit.record import Action, Actor, record, verify

    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(args.writers + 1)

    def write(n: int) -> None:
        mine = []
        start.wait()
        for i in range(args.appends):
            t = time.perf_counter()
            record(
                action=Action.PATIENT_VIEWED,
                actor=Actor.staff(n),
                clinic="bench-audit",
                object_type="patient",
                object_id=i,
            )
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)
        connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(args.writers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    total = args.writers * args.appends
    ms = [x * 1000 for x in latencies]
    print(
        f"appends: {total} by {args.writers} writers in {elapsed:.2f} s = {total / elapsed:.0f}/s"
    )
    print(f"append latency ms: p50 {_percentile(ms, 50):.2f}  p99 {_percentile(ms, 99):.2f}")
    began = time.perf_counter()
    checked, broken = verify()
    elapsed = time.perf_counter() - began
    print(f"verify: {checked} rows in {elapsed:.2f} s = {checked / elapsed:.0f} rows/s")
    if broken is not None:
        sys.exit(f"chain broken at row {broken.entry_id}: {broken.reason}")


if __name__ == "__main__":
    main()
