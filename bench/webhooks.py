"""The worker's time per webhook: go-lives' `call.live_started` webhook deliveries POSTed by
`calls.outbox.webhooks.deliver_many` in the relay's tasks of `webhooks.BATCH`, as a worker
runs them, to a local receiver in a process of its own (HTTP/1.1, keep-alive, answers 200).

Run from the repo root:  .venv/bin/python bench/webhooks.py [--calls 2000] [--endpoints 1]
                                 [--profile] [--top 25]

The deliveries are made the production way: bench/golive_profile.py's calls (a clinic, its
webhook endpoint), the scheduler's go-live and the relay, untimed. Then only the delivery is
timed: CPU of this process (`time.process_time`, its threads included; not PostgreSQL's nor the
receiver's) and wall time, per webhook, with the connections the receiver accepted. Same-run
floor: the same bodies POSTed by a bare `http.client` loop over one kept-alive connection (no
database, no signature, no guard). Uses DATABASE_URL and REDIS_URL as golive_profile does (the
relay enqueues delivery tasks, purged before and after: a Redis database no worker uses);
BENCH_PORTS for the receiver.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _procs  # noqa: E402
from bench._procs import bootstrap as _bootstrap  # noqa: E402
from bench.api import _ensure_database  # noqa: E402
from bench.golive_profile import CLINIC, _cleanup, _seed  # noqa: E402

# The receiver: answers every POST 200 (no body) on kept-alive connections; GET /stats says
# how many connections it accepted and requests it answered.
RECEIVER = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
counts = {"connections": 0, "requests": 0}
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def setup(self):
        super().setup()
        with lock:
            counts["connections"] += 1
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            counts["requests"] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        body = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
"""


def _stats(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _floor(port: int, bodies: list[bytes]) -> tuple[float, float]:
    """CPU and wall seconds of a bare kept-alive POST loop of these bodies."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    cpu, wall = time.process_time(), time.perf_counter()
    for body in bodies:
        conn.request("POST", "/hook", body=body, headers={"Content-Type": "application/json"})
        conn.getresponse().read()
    conn.close()
    return time.process_time() - cpu, time.perf_counter() - wall


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=1, help="the clinic's endpoints")
    parser.add_argument("--profile", action="store_true", help="cProfile the delivery")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    _procs.production_env("webhooks")
    os.environ["WEBHOOKS_ALLOW_HTTP"] = "true"
    os.environ["WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "true"
    _bootstrap("config.settings")
    _ensure_database()
    from django.core.management import call_command

    from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint
    from calls.outbox import relay, webhooks
    from calls.scheduling import scheduler
    from config.celery import app

    call_command("migrate", verbosity=0)
    _cleanup()
    app.control.purge()
    port = _procs.free_port()
    receiver = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        call_pks = _seed(args.calls)
        WebhookEndpoint.objects.filter(team=CLINIC).update(url=f"http://127.0.0.1:{port}/hook")
        for n in range(1, args.endpoints):
            WebhookEndpoint.objects.create(url=f"http://127.0.0.1:{port}/hook/{n}", team=CLINIC)
        while scheduler.run_due() > 0:
            pass
        events = list(
            CallEvent.objects.filter(call_id__in=call_pks, type="call.live_started")
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for n in range(0, len(events), relay.RELAY_BATCH):
            relay.relay(events[n : n + relay.RELAY_BATCH])
        app.control.purge()  # the relay's delivery tasks: this process sends them instead
        ids = list(
            WebhookDelivery.objects.filter(event_id__in=events)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        print(
            f"{len(ids)} webhook deliveries ({args.calls} go-lives x {args.endpoints} "
            f"endpoint(s)) in tasks of {webhooks.BATCH}; load {_load()}"
        )
        profiler = cProfile.Profile()
        cpu, wall = time.process_time(), time.perf_counter()
        with profiler if args.profile else contextlib.nullcontext():
            for n in range(0, len(ids), webhooks.BATCH):
                webhooks.deliver_many(ids[n : n + webhooks.BATCH])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        delivered = WebhookDelivery.objects.filter(pk__in=ids, state="delivered").count()
        seen = _stats(port)
        bodies = [
            webhooks.body_of(event)
            for event in CallEvent.objects.filter(pk__in=events).order_by("pk")
        ] * args.endpoints
        floor_cpu, floor_wall = _floor(port, bodies)
    finally:
        receiver.terminate()
        receiver.wait()
        app.control.purge()
        _cleanup()

    count = len(ids)
    print(
        f"delivered {delivered} of {count}; the receiver accepted {seen['connections'] - 1} "
        f"connections for {seen['requests']} requests"
    )
    print(f"{'per webhook':28s} {'CPU ms':>8s} {'wall ms':>8s}")
    print(f"{'deliver_many':28s} {cpu * 1000 / count:8.3f} {wall * 1000 / count:8.3f}")
    print(
        f"{'floor: http.client loop':28s} {floor_cpu * 1000 / count:8.3f} "
        f"{floor_wall * 1000 / count:8.3f}"
    )
    print(f"ratio (CPU) {cpu / floor_cpu:.1f}x; load after {_load()}")
    if args.profile:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0 if delivered == count else 1


if __name__ == "__main__":
    sys.exit(main())
