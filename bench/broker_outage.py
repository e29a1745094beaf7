"""The broker-outage fault test as a benchmark: booking through a Redis restart and a worker
SIGKILL (tests/calls/test_broker_fault.py, which see), with its figures as a table: booked /
told failed / lost / phantom / live-once / doubled / rung on time / rung-late / ring failed →
notify + alert / not rung, not told, and the final states of the ring pushes.

Run from the repo root:  .venv/bin/python bench/broker_outage.py [--runs 3]

Uses DATABASE_URL and REDIS_URL like the test suite (PostgreSQL is required: the scheduler and
the worker are separate processes). The broker of the run is a private redis-server on a free
port, started and killed by the test; REDIS_URL itself is only the test process's cache.
About a minute per run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/calls/test_broker_fault.py"


def run_once() -> tuple[int, str]:
    result = subprocess.run(  # noqa: S603 - our interpreter, our test
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    match = re.search(r"(broker fault test .*?:\n(?:  .*\n)+)", output)
    if match is None:
        match = re.search(r"(not settled:\n(?:E?\s+\S.*\n)+)", output)
    return result.returncode, match.group(1) if match else output[-3000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    failed = 0
    for n in range(1, args.runs + 1):
        code, table = run_once()
        failed += code != 0
        print(f"run {n}/{args.runs}: {'passed' if code == 0 else 'FAILED'}\n{table}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
