"""Local servers that speak each push protocol, for the push tests.

- `WebPushService`: RFC 8030 push service on plain HTTP. Verifies the RFC 8292 VAPID header
  (ES256 JWT checked with `k`, which must be the subscription's application server key; aud,
  exp, sub), checks a `Topic` (at most 32 URL-safe base64 characters) and decrypts the
  RFC 8291 aes128gcm body with the subscription's private key; with `defer_decrypt` it
  stores the body and answers, as a real push service does, and `decrypt_deferred()`
  decrypts them all afterwards.
- `ApnsServer`: APNs over HTTP/2 + TLS (hypercorn). Verifies the provider JWT (ES256, kid,
  iss) and the apns-* headers (an `apns-id` must be a lowercase canonical UUID).
- `FcmServer`: the OAuth2 token endpoint (RS256 jwt-bearer assertion checked with the service
  account's public key) and FCM v1 messages:send (bearer checked).

Each records what it received (`received`: token, headers, decrypted/parsed payload) and any
protocol violation (`errors`, which a test asserts empty). `script(token, [429, 200])` makes
the next answers for a token (`retry_after="7"`: its error answers carry that Retry-After);
without a script every push succeeds. The Web Push service calls
`on_push(received)` (when set) for each accepted push before it answers, e.g. to kill the
sender while it waits for the answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import ipaddress
import json
import re
import secrets
import socket
import socketserver
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import http_ece
import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def vapid_keypair() -> tuple[str, str]:
    """(private key as raw base64url, application server key as base64url)."""
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw), b64url(public)


def ec_keypair_pem() -> tuple[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


@dataclass
class Received:
    token: str
    headers: dict[str, str]
    payload: Any
    # A Web Push body accepted before it was decrypted (`WebPushService.defer_decrypt`):
    # `payload` is None until `decrypt_deferred()`.
    ciphertext: bytes = b""


@dataclass
class _Base:
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    retry_after: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0  # TCP connections accepted (HTTP/1.1 keeps them alive)

    def script(self, token: str, statuses: list[int], *, retry_after: str | None = None) -> None:
        with self.lock:
            self.scripts[token] = list(statuses)
            if retry_after is not None:
                self.retry_after[token] = retry_after

    def error_headers(self, token: str) -> dict[str, str]:
        """The headers of an error answer for a token (its scripted Retry-After)."""
        with self.lock:
            value = self.retry_after.get(token)
        return {"Retry-After": value} if value is not None else {}

    def next_status(self, token: str, default: int) -> int:
        with self.lock:
            queue = self.scripts.get(token)
            return queue.pop(0) if queue else default

    def reset(self) -> None:
        if hasattr(self, "delay"):
            self.delay = 0.0
        with self.lock:
            self.connections = 0
            self.received.clear()
            self.errors.clear()
            self.scripts.clear()
            self.retry_after.clear()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return True
            time.sleep(0.05)
        return len(self.received) >= count


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
MAX_LINE = 64 * 1024


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive, requests answered in order (a client may pipeline them), one
    write per answer. Lean on purpose (http.server's parsing cost more than the push's own
    checks): a request line, headers, a Content-Length body."""

    server_obj: Any = None
    rbufsize = 64 * 1024

    def handle(self):
        with self.server_obj.lock:
            self.server_obj.connections += 1
        while self._one():
            pass

    def _one(self) -> bool:
        line = self.rfile.readline(MAX_LINE)
        while line in (b"\r\n", b"\n"):
            line = self.rfile.readline(MAX_LINE)
        if not line:
            return False
        try:
            method, path, version = line.decode("latin-1").split()
        except ValueError:
            self._write(400, b"", {}, close=True)
            return False
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(MAX_LINE)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        lowered = {k.lower(): v for k, v in headers.items()}
        body = self.rfile.read(int(lowered.get("content-length") or 0))
        close = lowered.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        if method != "POST":
            self._write(405, b"", {}, close=close)
            return not close
        status, answer, extra = self.server_obj.handle(path, headers, body)
        data = json.dumps(answer).encode() if answer is not None else b""
        return self._write(status, data, extra, close=close) and not close

    def _write(self, status: int, data: bytes, extra: dict[str, str], *, close: bool) -> bool:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        head += [f"{name}: {value}" for name, value in extra.items()]
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        if close:
            head.append("Connection: close")
        try:  # the sender may be gone (killed by a fault test)
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        except OSError:
            return False
        return True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _HttpServer:
    def start(self, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"server_obj": self})
        self.httpd = _TcpServer(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- Web Push ---------------------------------------------------------------------------------


@dataclass
class Subscription:
    endpoint: str
    keys: dict[str, str]
    private_key: Any
    auth: bytes
    application_server_key: str


@functools.lru_cache(maxsize=64)
def _public_key(k: str) -> ec.EllipticCurvePublicKey:
    """An application server key (`k`), as a P-256 public key (ValueError if it is not)."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(k))


def _verify_es256(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The claims of a compact ES256 JWT (RFC 7515, RFC 7518 3.4) signed by this key; raises
    ValueError for anything else. Written out (PyJWT costs twice as much per push, and the
    push service's time is the benchmark's: bench/push.py)."""
    try:
        head, body, signature = token.split(".")
        header = json.loads(b64url_decode(head))
        raw = b64url_decode(signature)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a compact JWS") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256" or len(raw) != 64:
        raise ValueError("not ES256")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise ValueError("bad signature") from exc
    claims = json.loads(b64url_decode(body))
    if not isinstance(claims, dict):
        raise ValueError("claims are not an object")
    return claims


class WebPushService(_Base, _HttpServer):
    """A push service: POST /push/<id> with a VAPID header and an aes128gcm body."""

    def __init__(self, *, defer_decrypt: bool = False) -> None:
        _Base.__init__(self)
        self.subscriptions: dict[str, Subscription] = {}
        self.delay = 0.0
        self.on_push: Callable[[Received], None] | None = None
        # As a real push service does (FCM, Mozilla autopush: the payload is end-to-end
        # encrypted to the browser, they cannot read it): check the request and its VAPID
        # token, store the ciphertext and answer 201. Decrypting is then the test's or the
        # benchmark's step (`decrypt_deferred`), out of the timed part: in-line it was this
        # process's largest cost per push, on the same cores as the sender (bench/push.py).
        self.defer_decrypt = defer_decrypt

    def reset(self) -> None:
        super().reset()
        self.on_push = None

    def subscribe(self, application_server_key: str) -> Subscription:
        """What PushManager.subscribe() gives a browser: endpoint, p256dh and auth."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        public = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        auth = secrets.token_bytes(16)
        sub_id = secrets.token_urlsafe(16)
        subscription = Subscription(
            endpoint=f"{self.base_url}/push/{sub_id}",
            keys={"p256dh": b64url(public), "auth": b64url(auth)},
            private_key=private_key,
            auth=auth,
            application_server_key=application_server_key,
        )
        self.subscriptions[sub_id] = subscription
        return subscription

    def handle(self, path: str, headers: dict[str, str], body: bytes):
        if self.delay:
            time.sleep(self.delay)  # a slow push service, to make concurrent sends overlap
        headers = {k.lower(): v for k, v in headers.items()}
        sub_id = path.rsplit("/", 1)[-1]
        subscription = self.subscriptions.get(sub_id)
        if not path.startswith("/push/") or subscription is None:
            return 404, {"error": "no such subscription"}, {}
        problem = self._check_vapid(headers.get("authorization", ""), subscription)
        if problem:
            self.errors.append(problem)
            return 403, {"error": problem}, {}
        if headers.get("content-encoding") != "aes128gcm":
            self.errors.append("content-encoding is not aes128gcm")
            return 400, {"error": "encoding"}, {}
        if "ttl" not in headers:
            self.errors.append("TTL header missing")
            return 400, {"error": "ttl"}, {}
        if "topic" in headers and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", headers["topic"]):
            self.errors.append("Topic is not 1-32 characters of URL-safe base64 (RFC 8030 5.4)")
            return 400, {"error": "topic"}, {}
        payload, ciphertext = None, body
        if not self.defer_decrypt:
            payload, ciphertext = self._decrypt(subscription, body), b""
            if payload is None:
                return 400, {"error": "decrypt"}, {}
        status = self.next_status(sub_id, 201)
        if 200 <= status < 300:
            push = Received(sub_id, headers, payload, ciphertext)
            with self.lock:
                self.received.append(push)
            if self.on_push is not None:
                self.on_push(push)
        answer = {"Location": f"{self.base_url}/message/{secrets.token_hex(4)}"}
        if not 200 <= status < 300:
            answer.update(self.error_headers(sub_id))
        return status, None, answer

    def _decrypt(self, subscription: Subscription, body: bytes) -> Any:
        """The JSON payload of an aes128gcm body (RFC 8291) for this subscription; None (the
        problem in `errors`) if it does not decrypt or is not JSON."""
        try:
            clear = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth,
                version="aes128gcm",
            )
            return json.loads(clear)
        except Exception as exc:
            self.errors.append(f"could not decrypt: {exc!r}")
            return None

    def decrypt_deferred(self) -> int:
        """Decrypt every push accepted undecrypted (`defer_decrypt`), each with its
        subscription's private key, exactly as an in-line decryption would: its payload set,
        or the problem in `errors` (and the payload left None). Returns how many it
        decrypted."""
        with self.lock:
            pending = [push for push in self.received if push.ciphertext]
        for push in pending:
            push.payload = self._decrypt(self.subscriptions[push.token], push.ciphertext)
            push.ciphertext = b""
        return len(pending)

    def _check_vapid(self, authorization: str, subscription: Subscription) -> str:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return "Authorization is not a vapid header"
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        token, k = parts.get("t"), parts.get("k")
        if not token or not k:
            return "vapid header needs t and k"
        if k != subscription.application_server_key:
            return "k is not the subscription's application server key"
        try:
            claims = _verify_es256(token, _public_key(k))
        except ValueError as exc:
            return f"VAPID JWT rejected: {exc}"
        if claims.get("aud") != self.base_url:
            return "VAPID JWT rejected: aud is not the push service's origin"
        if not all(name in claims for name in ("aud", "exp", "sub")):
            return "VAPID JWT rejected: aud, exp and sub are required"
        if not isinstance(claims["exp"], int) or claims["exp"] <= time.time():
            return "VAPID JWT rejected: expired"
        if claims["exp"] > time.time() + 24 * 3600:
            return "VAPID exp more than 24 hours ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return "VAPID sub is not mailto: or https:"
        return ""


# --- FCM --------------------------------------------------------------------------------------


class FcmServer(_Base, _HttpServer):
    """The Google OAuth2 token endpoint and FCM HTTP v1 messages:send."""

    def __init__(self, project_id: str = "demo-project") -> None:
        _Base.__init__(self)
        self.project_id = project_id
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "pusher@demo-project.iam.gserviceaccount.com"
        self.access_tokens: set[str] = set()
        self.token_requests = 0

    def start(self) -> None:
        super().start()
        self.token_url = f"{self.base_url}/token"

    def reset(self) -> None:
        super().reset()
        self.token_requests = 0

    def service_account_json(self) -> str:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": self.project_id,
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": self.client_email,
                "token_uri": self.token_url,
            }
        )

    def handle(self, path: str, headers: dict[str, str], body: bytes):
        headers = {k.lower(): v for k, v in headers.items()}
        if path == "/token":
            return self._token(body)
        if path == f"/v1/projects/{self.project_id}/messages:send":
            return self._send(headers, body)
        return 404, {"error": {"status": "NOT_FOUND"}}, {}

    def _token(self, body: bytes):
        self.token_requests += 1
        form = parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            self.errors.append("bad grant_type")
            return 400, {"error": "unsupported_grant_type"}, {}
        try:
            claims = jwt.decode(
                form["assertion"][0],
                self.key.public_key(),
                algorithms=["RS256"],
                audience=self.token_url,
                issuer=self.client_email,
                options={"require": ["iat", "exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            self.errors.append(f"assertion rejected: {exc}")
            return 400, {"error": "invalid_grant"}, {}
        if "https://www.googleapis.com/auth/firebase.messaging" not in claims.get("scope", ""):
            self.errors.append("assertion scope lacks firebase.messaging")
            return 400, {"error": "invalid_scope"}, {}
        token = secrets.token_urlsafe(24)
        self.access_tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}, {}

    def _send(self, headers: dict[str, str], body: bytes):
        bearer = headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer[7:] not in self.access_tokens:
            self.errors.append("messages:send without a valid bearer")
            return 401, {"error": {"status": "UNAUTHENTICATED"}}, {}
        message = json.loads(body)["message"]
        data = message.get("data", {})
        if not all(isinstance(v, str) for v in data.values()):
            self.errors.append("data values must be strings")
            return 400, {"error": {"status": "INVALID_ARGUMENT"}}, {}
        token = message["token"]
        status = self.next_status(token, 200)
        if status == 200:
            self.received.append(Received(token, headers, message))
            name = f"projects/{self.project_id}/messages/{secrets.token_hex(8)}"
            return 200, {"name": name}, {}
        if status == 404:
            error = {
                "code": 404,
                "status": "NOT_FOUND",
                "message": "Requested entity was not found.",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": "UNREGISTERED",
                    }
                ],
            }
            return 404, {"error": error}, {}
        if status == 401:
            self.access_tokens.discard(bearer[7:])  # revoked
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, {}
        error = {"code": status, "status": "UNAVAILABLE"}
        return status, {"error": error}, self.error_headers(token)


# --- APNs -------------------------------------------------------------------------------------


def self_signed_cert(
    *, common_name: str = "apns-standin", dns_names: tuple[str, ...] = ()
) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (and `dns_names`): (cert PEM path, key PEM
    path), in a directory of its own."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(host) for host in dns_names),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tempfile.mkdtemp(prefix=f"{common_name}-")
    cert_path, key_path = f"{directory}/cert.pem", f"{directory}/key.pem"
    with open(cert_path, "wb") as file:
        file.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as file:
        file.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class ApnsServer(_Base):
    """api.push.apple.com: POST /3/device/<token> over HTTP/2 with TLS."""

    REASONS = {
        400: "BadDeviceToken",
        403: "ExpiredProviderToken",
        410: "Unregistered",
        429: "TooManyRequests",
        500: "InternalServerError",
        503: "ServiceUnavailable",
    }

    def __init__(self, *, key_id: str = "KEY1234567", team_id: str = "TEAM123456"):
        _Base.__init__(self)
        self.key_id, self.team_id = key_id, team_id
        self.topic = "com.example.clinic"
        self.private_key_pem, self.public_key = ec_keypair_pem()
        self.http_versions: set[str] = set()

    async def app(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.http_versions.add(scope["http_version"])
        status, answer, extra = self.handle(scope["method"], scope["path"], headers, body)
        data = json.dumps(answer).encode() if answer is not None else b""
        response_headers = [(b"apns-id", secrets.token_hex(16).encode())]
        response_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        if data:
            response_headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": data})

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes):
        if method != "POST" or not path.startswith("/3/device/"):
            return 404, {"reason": "BadPath"}, {}
        token = path.removeprefix("/3/device/")
        problem = self._check(headers)
        if problem:
            self.errors.append(problem)
            return 403 if "JWT" in problem else 400, {"reason": problem.split(":")[0]}, {}
        payload = json.loads(body)
        status = self.next_status(token, 200)
        if status == 200:
            self.received.append(Received(token, headers, payload))
            return 200, None, {}
        answer = {"reason": self.REASONS.get(status, "InternalServerError")}
        if status == 410:
            answer["timestamp"] = int(time.time() * 1000)
        return status, answer, self.error_headers(token)

    def _check(self, headers: dict[str, str]) -> str:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("bearer "):
            return "MissingProviderToken"
        token = authorization[7:]
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                return "InvalidProviderToken: JWT kid"
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                issuer=self.team_id,
                options={"require": ["iss", "iat"]},
            )
        except jwt.PyJWTError as exc:
            return f"InvalidProviderToken: JWT {exc}"
        if claims["iat"] < time.time() - 3600:
            return "ExpiredProviderToken: JWT too old"
        push_type = headers.get("apns-push-type")
        topic = headers.get("apns-topic")
        if push_type == "voip":
            if topic != f"{self.topic}.voip":
                return "BadTopic: voip push needs the .voip topic"
        elif push_type == "alert":
            if topic != self.topic:
                return "BadTopic"
        else:
            return "InvalidPushType"
        if headers.get("apns-priority") not in ("5", "10"):
            return "BadPriority"
        if not headers.get("apns-expiration", "").isdigit():
            return "BadExpirationDate"
        collapse = headers.get("apns-collapse-id", "")
        if len(collapse.encode()) > 64:
            return "BadCollapseId"
        apns_id = headers.get("apns-id")
        if apns_id is not None and not re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", apns_id
        ):
            return "BadMessageId"
        return ""

    def start(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self.cert_path, key_path = self_signed_cert()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.listen(100)
        self._sock = sock
        config = Config()
        config.bind = [f"fd://{sock.fileno()}"]
        config.certfile, config.keyfile = self.cert_path, key_path
        config.alpn_protocols = ["h2"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.2  # the clients keep their HTTP/2 connections open
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self._loop)

            async def main():
                started.set()
                await serve(self.app, config, shutdown_trigger=self._stop.wait)

            self._loop.run_until_complete(main())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(5)
        time.sleep(0.2)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)
        with contextlib.suppress(OSError):  # hypercorn closes the socket it was given
            self._sock.close()
