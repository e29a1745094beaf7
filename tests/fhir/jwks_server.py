"""A local server publishing a JWK set, as an EHR does at its JWKS URL: http or https (a
throwaway certificate for 127.0.0.1), on a port of 18600-18699. What it publishes, its
Cache-Control and its status can change between requests; it counts the GETs."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORTS = range(18600, 18700)


class JwksServer:
    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.body: bytes | None = None  # sent as is instead of `document`
        self.status = 200
        self.cache_control = ""
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def gets(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self, *, ssl_context: ssl.SSLContext | None = None) -> JwksServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet test output
                pass

            def do_GET(self):
                with server._lock:
                    server.requests.append(dict(self.headers))
                body = server.body if server.body is not None else json.dumps(server.document)
                body = body if isinstance(body, bytes) else body.encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                if server.cache_control:
                    self.send_header("Cache-Control", server.cache_control)
                self.end_headers()
                self.wfile.write(body)

        last: OSError | None = None
        for port in PORTS:
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError as exc:  # taken: the next one
                last = exc
        else:
            raise RuntimeError(f"no free port in 18600-18699: {last}")
        self.port = self.httpd.server_address[1]
        scheme = "http"
        if ssl_context is not None:
            scheme = "https"
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{scheme}://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
