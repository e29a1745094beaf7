"""Memory of a web process serving an events socket whose client stops reading.

Run from the repo root:  .venv/bin/python bench/slow_reader.py [--events 1200] [--kib 64]
                                                  [--send-queue N]

Uses DATABASE_URL (default: the local PostgreSQL database `appointment_calls_bench`, created
if missing) and REDIS_URL (default redis://127.0.0.1:6379/0). It starts `bin/web` (uvicorn
with the production flags, bench/_procs.py) in a subprocess, connects one client (small
receive buffer) that subscribes to a call and then reads nothing, and publishes `--events`
outbox events of `--kib` KiB each to the call's group, as the relay does. It prints the
server's resident memory before and after, and how the connection ended. `--send-queue` sets
the server's CALLS_WS_SEND_QUEUE (a very large value shows what an unbounded queue costs).

On a 2-core machine, 1,200 events of 64 KiB: +5 MiB with the default queue (256; the socket is
closed as a slow consumer and its queue freed; +21 MiB since the close is written at once),
+77 MiB with an unbounded one. The 4008 close is written at once behind the data already sent
(calls.realtime.wsprotocol): a client that reads again within 10 s sees the data, then 4008
(tests/calls/test_socket_limits.py); after that the server has reset the connection. This
client reads again only once the publishing ends (over 10 s after the close): it gets what
reached its socket buffer, then no close code (None).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _procs  # noqa: E402
from bench.api import _bootstrap, _ensure_database  # noqa: E402

CALL_ID = "bench-slow-1"
USER = "bench-slow-doctor"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cleanup() -> None:
    from calls.models import Call, CallEvent, CallUser

    CallEvent.objects.filter(call_cid=f"default:{CALL_ID}").delete()
    Call.objects.filter(call_id=CALL_ID).delete()
    CallUser.objects.filter(id=USER).delete()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1200)
    parser.add_argument("--kib", type=int, default=64)
    parser.add_argument("--send-queue", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("REDIS_URL", _procs.DEFAULT_REDIS_URL)
    _bootstrap()
    _ensure_database()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from calls import realtime
    from calls.capabilities import SERVER
    from calls.models import CallEvent
    from calls.services.calls import call_get_or_create
    from calls.services.users import UserSpec, users_upsert
    from calls.tokens import mint_server_token

    call_command("migrate", verbosity=0)
    _cleanup()
    users_upsert(actor=SERVER, users=[UserSpec(id=USER)])
    call = call_get_or_create(
        actor=SERVER, type_name="default", call_id=CALL_ID, created_by_id=USER
    ).call
    env = _procs.process_env(CELERY_TASK_ALWAYS_EAGER="true")
    if args.send_queue is not None:
        env["CALLS_WS_SEND_QUEUE"] = str(args.send_queue)
    # bin/web: uvicorn with the production flags (calls.realtime.wsprotocol, its limits).
    web = _procs.web(Path(tempfile.mkdtemp(prefix="bench-slow-")), env)
    port = web.port
    try:
        web.start()
        _procs.wait_ready([web])
        assert web.process is not None
        server = web.process
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        query = urlencode({"api_key": settings.CALLS_API_KEY, "token": mint_server_token()})
        with connect(f"ws://127.0.0.1:{port}/ws/v1/events?{query}", sock=sock, max_queue=2) as c:
            assert json.loads(c.recv(timeout=10))["type"] == "connected"
            c.send(json.dumps({"type": "subscribe", "cid": call.cid}))
            assert json.loads(c.recv(timeout=10))["type"] == "subscribed"
            time.sleep(1)
            before = _rss_mib(server.pid)
            payload = {
                "type": "custom",
                "call_cid": call.cid,
                "custom": {"x": "x" * 1024 * args.kib},
            }
            for _ in range(args.events):
                event = CallEvent.objects.create(
                    call=call,
                    call_cid=call.cid,
                    type="custom",
                    payload=payload,
                    created_at=timezone.now(),
                )
                realtime.publish(event)
            time.sleep(2)
            after = _rss_mib(server.pid)
            received, code = 0, None
            try:
                while True:
                    c.recv(timeout=10)
                    received += 1
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            except TimeoutError:
                code = "still open"
        print(
            f"{args.events} events of {args.kib} KiB to a client that stopped reading "
            f"(CALLS_WS_SEND_QUEUE={env.get('CALLS_WS_SEND_QUEUE', settings.CALLS_WS_SEND_QUEUE)}):"
        )
        print(f"  server RSS {before:.0f} MiB -> {after:.0f} MiB (+{after - before:.0f} MiB)")
        print(f"  the client then read {received} events; close code {code}")
    finally:
        web.stop()
        _cleanup()


if __name__ == "__main__":
    main()
