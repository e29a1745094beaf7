"""A FHIR rest-hook receiver as an EHR runs one: a real HTTP server in a thread (on a port of
18500-18599) that keeps every notification it gets and answers 200, or the statuses it is told
to give first. Each body is parsed back with `fhir.resources` (R4B)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.subscriptionstatus import SubscriptionStatus

PORTS = range(18500, 18600)


class FhirReceiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answers to give next, then `default`
        self.default = 200
        self._lock = threading.Lock()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        for port in PORTS:
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 18500-18599")
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.default = 200

    def notifications(self) -> list[tuple[dict, SubscriptionStatus, dict]]:
        """Each request's (headers, its SubscriptionStatus, the raw Bundle), validated with the
        R4B models."""
        out = []
        for headers, body in self.requests:
            raw = json.loads(body)
            Bundle.model_validate(raw)
            assert raw["type"] == "history"
            status = SubscriptionStatus.model_validate(raw["entry"][0]["resource"])
            out.append((headers, status, raw))
        return out
