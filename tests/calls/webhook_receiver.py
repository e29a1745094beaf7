"""A local webhook receiver as an integrator writes one, and helpers shared by the webhook
tests (the `receiver` and `hook_settings` fixtures are in conftest)."""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import time_machine
from getstream.webhook import verify_signature

from calls.capabilities import SERVER
from calls.models import WebhookDelivery
from calls.outbox import webhooks
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.factories import CallUserFactory

PATIENT_NAME = "Alice Quigleyford"
REASON = "follow-up for chest pain"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that stops reading a long answer (netguard's cap) closes on us: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """A webhook receiver as an integrator writes one: checks the signature with the SDK's
    helper and the API secret, answers 2xx, and processes each X-Webhook-Id once."""

    def __init__(self) -> None:
        self.secret = ""
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.processed: list[dict] = []
        self.errors: list[str] = []
        self.statuses: list[int] = []  # answers to give next, then 200
        self.body = b""  # what those answers say (the 200s say nothing)
        self.headers: dict[str, str] = {}  # and the header fields they carry (Retry-After)
        self.connections = 0  # TCP connections accepted (kept-alive ones count once)
        self.delay = 0.0  # seconds before answering (processed first, like a slow receiver)
        self.server_names: list[str | None] = []  # TLS SNI of each handshake (https only)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def start(self, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on 127.0.0.1; `host` is the name the URL uses; https with `ssl_context`."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet test output
                pass

            def setup(self):
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.handle(dict(self.headers), body)
                if receiver.delay:
                    time.sleep(receiver.delay)
                answer = b"" if status == 200 else receiver.body
                self.send_response(status)
                for name, value in ({} if status == 200 else receiver.headers).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        scheme = "http"
        if ssl_context is not None:
            scheme = "https"
            ssl_context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{scheme}://{host}:{self.port}/hooks/stream"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self, secret: str) -> None:
        with self._lock:
            self.secret = secret
            self.requests.clear()
            self.processed.clear()
            self.errors.clear()
            self.statuses.clear()
            self.server_names.clear()
            self._seen.clear()
            self.delay = 0.0
            self.body = b""
            self.headers = {}
            self.connections = 0

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.requests.append((headers, body))
            if not verify_signature(body, headers.get("X-Signature", ""), self.secret):
                self.errors.append("bad signature")
                return 401
            if self.statuses:
                return self.statuses.pop(0)
            webhook_id = headers["X-Webhook-Id"]
            if webhook_id not in self._seen:  # dedupe: a retry of a processed delivery
                self._seen.add(webhook_id)
                self.processed.append(json.loads(body))
            return 200

    def ids(self) -> list[str]:
        return [h["X-Webhook-Id"] for h, _ in self.requests]

    def attempts(self) -> list[str]:
        return [h["X-Webhook-Attempt"] for h, _ in self.requests]


def create_call(call_id: str = "visit-1", team: str | None = None):
    """The doctor creates a call for the patient (committed, so it is relayed at once)."""
    CallUserFactory(id="doc", teams=[team] if team else [])
    CallUserFactory(id="pat", name=PATIENT_NAME, teams=[team] if team else [])
    return call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id=call_id,
        created_by_id="doc",
        team=team,
        members=[MemberSpec(user_id="doc", role="host"), MemberSpec("pat")],
        custom={"reason": REASON, "patient_name": PATIENT_NAME},
    ).call


def sweep_at(start, seconds: float) -> int:
    with time_machine.travel(start + timedelta(seconds=seconds), tick=False):
        return webhooks.sweep()


def only_delivery() -> WebhookDelivery:
    (delivery,) = WebhookDelivery.objects.all()
    return delivery
