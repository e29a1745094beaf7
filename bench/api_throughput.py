"""Throughput of GetCall against the minimal DRF endpoint, through a real uvicorn server.

Run from the repo root:  .venv/bin/python bench/api_throughput.py [--clients 50] [--seconds 4]

Starts `bin/web` (the production command line: one worker, lifespan on, the app's logging,
DEBUG off, the database pool) serving `bench.asgi` (the production app plus the yardstick of
bench/api.py), seeds what bench/api.py seeds, then runs `--clients` concurrent clients (one
keep-alive connection each, aiohttp) for `--seconds` per case, cases interleaved round by
round (baseline, GET call with 1, 10 and 100 members) so that load from anything else on the
machine hits every case alike. Prints req/s per case per round, and the median over rounds
of each case's req/s as a ratio to the baseline's in the same round, with MEETS / MISSES
against the latency targets of bench/api.py turned into throughput (GET call at 1 member
>= 1/1.5 of the baseline's req/s, at 100 members >= 1/2.5). The clients share the machine's
two cores with the server: they cost the same per request for every case, so the ratio stays
fair, while the absolute req/s understate what the server does alone. Any non-200 answer
fails the run. Uses DATABASE_URL (default as bench/api.py); the server listens on a free port of
BENCH_PORTS (bench/_procs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import api as bench_api
from bench._procs import free_port, process_env

ROOT = bench_api.ROOT
TARGETS = {1: 1 / 1.5, 10: 1 / 2.5, 100: 1 / 2.5}  # GET call req/s / baseline req/s, at least


class BenchFailure(Exception):
    pass


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _server_env(port: int) -> dict[str, str]:
    """The production web process's environment (`_procs.process_env`), serving bench.asgi
    (the app plus the minimal endpoint) on `port`."""
    return process_env(
        WEB_APP="bench.asgi:application",
        WEB_HOST="127.0.0.1",
        PORT=str(port),
        PYTHON=sys.executable,
    )


async def _wait_for_http(base: str, server: subprocess.Popen) -> None:
    import aiohttp

    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise BenchFailure(f"the server exited with {server.returncode}")
            try:
                async with session.get(f"{base}/bench/minimal/bench-m1") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise BenchFailure("the server did not answer within 60 s")


async def _drive(url: str, headers: dict[str, str], clients: int, seconds: float) -> float:
    """`clients` loops, each on its own keep-alive connection; returns requests per second."""
    import aiohttp

    done = 0
    failures: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            while time.perf_counter() < stop_at:
                async with session.get(url) as response:
                    body = await response.read()
                    if response.status != 200:
                        failures.append(f"HTTP {response.status}: {body[:200]!r}")
                        return
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    if failures:
        raise BenchFailure(f"{url}: {failures[0]}")
    return done / elapsed


async def _run(base: str, args: argparse.Namespace) -> dict[str, list[float]]:
    from django.conf import settings

    from calls.tokens import mint_server_token

    headers = {"authorization": mint_server_token(), "stream-auth-type": "jwt"}
    key = settings.CALLS_API_KEY
    cases = {"baseline GET (1 row)": f"{base}/bench/minimal/bench-m1"}
    for count in bench_api.MEMBER_COUNTS:
        cases[f"GET call {count}"] = (
            f"{base}/api/v2/video/call/{bench_api.CALL_TYPE}/bench-m{count}?api_key={key}"
        )
    for url in cases.values():  # warm-up: imports, the pool, the call type cache
        await _drive(url, headers, args.clients, 0.5)
    results: dict[str, list[float]] = {name: [] for name in cases}
    for round_no in range(1, args.rounds + 1):
        for name, url in cases.items():
            results[name].append(await _drive(url, headers, args.clients, args.seconds))
        row = "  ".join(f"{n}: {r[-1]:.0f}/s" for n, r in results.items())
        print(f"  round {round_no}/{args.rounds} ({_load()}): {row}", flush=True)
    return results


def _report(results: dict[str, list[float]], args: argparse.Namespace) -> bool:
    base = results["baseline GET (1 row)"]
    print()
    header = f"{'case':<22} {'req/s (median)':>15} {'ratio to baseline (median)':>27}  target"
    print(header)
    print("-" * (len(header) + 18))
    ok = True
    print(f"{'baseline GET (1 row)':<22} {statistics.median(base):>15.0f} {1.0:>27.2f}")
    for count in bench_api.MEMBER_COUNTS:
        name = f"GET call {count}"
        ratios = [r / b for r, b in zip(results[name], base, strict=True)]
        ratio = statistics.median(ratios)
        verdict = "MEETS" if ratio >= TARGETS[count] else "MISSES"
        ok &= verdict == "MEETS"
        print(
            f"{name:<22} {statistics.median(results[name]):>15.0f} {ratio:>27.2f}  "
            f">= {TARGETS[count]:.2f}: {verdict}  (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
        )
    print(f"\n{args.clients} clients, {args.seconds:g} s per case per round, {args.rounds} rounds")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--port", type=int, default=0, help="the server's port (default: a free one in BENCH_PORTS)"
    )
    args = parser.parse_args()

    bench_api._bootstrap()
    bench_api._ensure_database()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    print(f"database: {connection.vendor}; {_load()}")
    bench_api._cleanup(users=True)
    bench_api._seed()
    connection.close()
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="bench-web-", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen(  # noqa: S603 - our own bin/web
        [str(ROOT / "bin" / "web")],
        cwd=ROOT,
        env=_server_env(port),
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        asyncio.run(_wait_for_http(base, server))
        results = asyncio.run(_run(base, args))
    except BenchFailure as exc:
        print(f"FAILED: {exc} (server log: {log.name})", file=sys.stderr)
        return 1
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        bench_api._cleanup(users=True)
    Path(log.name).unlink(missing_ok=True)
    _report(results, args)
    print(_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
