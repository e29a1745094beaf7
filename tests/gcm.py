"""Google's push service for Chromium, on this machine: what a browser test needs to subscribe
with `PushManager` and receive a push, with no internet.

Chromium's push messages travel through its GCM client (chromium `google_apis/gcm`), which
talks to three Google services; Chromium's switches point each one here:

- checkin (`--gcm-checkin-url`): POST of a protobuf `AndroidCheckinRequest`, answered with an
  `AndroidCheckinResponse` carrying a new device's `android_id` and `security_token`;
- registration (`--gcm-registration-url`): an Instance ID token request, a form POST
  (`app`, `X-subtype`, `device`, `sender`, ...; `Authorization: AidLogin <id>:<token>`)
  answered `token=<registration token>`. Chromium makes the subscription's endpoint
  `https://jmt17.google.com/fcm/send/<token>` of it (older versions: fcm.googleapis.com);
- MCS (`--gcm-mcs-endpoint`): a TLS socket. The client sends the version byte (41) and a
  `LoginRequest`; the server answers its version byte and a `LoginResponse`; then both send
  tagged, length-prefixed (varint) protobufs: heartbeat ping / ack, IQ stanzas (acks) and,
  from the server, `DataMessageStanza`s: a web push is one whose `raw_data` is the encrypted
  body and whose `app_data` carries `subtype` (the registration's app) and the crypto headers
  (`content-encoding: aes128gcm`), which Chromium's `GCMEncryptionProvider` decrypts.

And the push service's HTTP side (RFC 8030, as those hosts serve it): the app server
POSTs `/fcm/send/<token>` with a VAPID header (RFC 8292; `k` must be the key the subscription
was made with, the JWT's `aud` the endpoint's origin) and an aes128gcm body, which is
forwarded over the device's MCS connection. It listens on port 443 of a loopback address
(another port, `push_port`, when it may not bind 443) with a certificate for those names; the
test resolves them there and trusts the certificate (`cert_path`). Chromium accepts the MCS
server's certificate by its SPKI hash (`--ignore-certificate-errors-spki-list`, honoured with
a `--user-data-dir`; without it, Chromium refuses the handshake).

The messages are defined with protobuf's descriptor API (the field numbers and types of
chromium's `mcs.proto` and `checkin.proto`, only the fields used here; unknown fields are
kept by the parser). Protocol violations go to `errors`, which a test asserts empty.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from tests.calls.push.standins import self_signed_cert

# The push service's hosts: Chromium makes subscriptions' endpoints at jmt17.google.com
# (older versions: fcm.googleapis.com).
PUSH_HOSTS = ("jmt17.google.com", "fcm.googleapis.com")
MCS_VERSION = 41

# --- the protocol's messages -------------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REQUIRED, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REQUIRED, _F.LABEL_REPEATED
_TYPES = {
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
    "fixed64": _F.TYPE_FIXED64,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}


def _schema() -> dict[str, type]:
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/gcm_standin.proto", package="gcm_standin", syntax="proto2"
    )

    def message(name: str, *fields: tuple[int, str, str, int]) -> None:
        proto = file.message_type.add(name=name)
        for number, field_name, kind, label in fields:
            spec = proto.field.add(name=field_name, number=number, label=label)
            if kind in _TYPES:
                spec.type = _TYPES[kind]
            else:
                spec.type = _F.TYPE_MESSAGE
                spec.type_name = f".gcm_standin.{kind}"

    # checkin.proto (AndroidCheckinProto, field 4, is kept as bytes: its fields are not used).
    message(
        "AndroidCheckinRequest",
        (2, "id", "int64", _OPTIONAL),
        (3, "digest", "string", _OPTIONAL),
        (4, "checkin", "bytes", _REQUIRED),
        (6, "locale", "string", _OPTIONAL),
        (13, "security_token", "fixed64", _OPTIONAL),
        (14, "version", "int32", _OPTIONAL),
        (22, "user_serial_number", "int32", _OPTIONAL),
    )
    message("GservicesSetting", (1, "name", "bytes", _REQUIRED), (2, "value", "bytes", _REQUIRED))
    message(
        "AndroidCheckinResponse",
        (1, "stats_ok", "bool", _REQUIRED),
        (3, "time_msec", "int64", _OPTIONAL),
        (4, "digest", "string", _OPTIONAL),
        (5, "setting", "GservicesSetting", _REPEATED),
        (7, "android_id", "fixed64", _OPTIONAL),
        (8, "security_token", "fixed64", _OPTIONAL),
        (9, "settings_diff", "bool", _OPTIONAL),
    )
    # mcs.proto
    heartbeat = (
        (1, "stream_id", "int32", _OPTIONAL),
        (2, "last_stream_id_received", "int32", _OPTIONAL),
        (3, "status", "int64", _OPTIONAL),
    )
    message("HeartbeatPing", *heartbeat)
    message("HeartbeatAck", *heartbeat)
    message("Setting", (1, "name", "string", _REQUIRED), (2, "value", "string", _REQUIRED))
    message("ErrorInfo", (1, "code", "int32", _REQUIRED), (2, "message", "string", _OPTIONAL))
    message(
        "LoginRequest",
        (1, "id", "string", _REQUIRED),
        (2, "domain", "string", _REQUIRED),
        (3, "user", "string", _REQUIRED),
        (4, "resource", "string", _REQUIRED),
        (5, "auth_token", "string", _REQUIRED),
        (6, "device_id", "string", _OPTIONAL),
        (8, "setting", "Setting", _REPEATED),
        (10, "received_persistent_id", "string", _REPEATED),
        (14, "use_rmq2", "bool", _OPTIONAL),
        (16, "auth_service", "int32", _OPTIONAL),
    )
    message(
        "LoginResponse",
        (1, "id", "string", _REQUIRED),
        (3, "error", "ErrorInfo", _OPTIONAL),
        (4, "setting", "Setting", _REPEATED),
        (5, "stream_id", "int32", _OPTIONAL),
        (6, "last_stream_id_received", "int32", _OPTIONAL),
        (8, "server_timestamp", "int64", _OPTIONAL),
    )
    message("Close")
    message("Extension", (1, "id", "int32", _REQUIRED), (2, "data", "bytes", _REQUIRED))
    message(
        "IqStanza",
        (1, "rmq_id", "int64", _OPTIONAL),
        (2, "type", "int32", _REQUIRED),
        (3, "id", "string", _REQUIRED),
        (7, "extension", "Extension", _OPTIONAL),
        (8, "persistent_id", "string", _OPTIONAL),
        (9, "stream_id", "int32", _OPTIONAL),
        (10, "last_stream_id_received", "int32", _OPTIONAL),
    )
    message("SelectiveAck", (1, "id", "string", _REPEATED))
    message("AppData", (1, "key", "string", _REQUIRED), (2, "value", "string", _REQUIRED))
    message(
        "DataMessageStanza",
        (2, "id", "string", _OPTIONAL),
        (3, "from", "string", _REQUIRED),
        (4, "to", "string", _OPTIONAL),
        (5, "category", "string", _REQUIRED),
        (6, "token", "string", _OPTIONAL),
        (7, "app_data", "AppData", _REPEATED),
        (9, "persistent_id", "string", _OPTIONAL),
        (10, "stream_id", "int32", _OPTIONAL),
        (11, "last_stream_id_received", "int32", _OPTIONAL),
        (17, "ttl", "int32", _OPTIONAL),
        (18, "sent", "int64", _OPTIONAL),
        (21, "raw_data", "bytes", _OPTIONAL),
        (24, "immediate_ack", "bool", _OPTIONAL),
    )
    classes = message_factory.GetMessages([file], pool=descriptor_pool.DescriptorPool())
    return {name.rsplit(".", 1)[-1]: cls for name, cls in classes.items()}


PB = _schema()
# The tag byte before each MCS message (mcs.proto's "TAG:" comments).
TAGS = {
    0: "HeartbeatPing",
    1: "HeartbeatAck",
    2: "LoginRequest",
    3: "LoginResponse",
    4: "Close",
    7: "IqStanza",
    8: "DataMessageStanza",
}
TAG_OF = {name: tag for tag, name in TAGS.items()}


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(message) -> bytes:
    body = message.SerializeToString()
    return bytes([TAG_OF[type(message).DESCRIPTOR.name]]) + varint(len(body)) + body


# --- certificates --------------------------------------------------------------------------------


def _certificate() -> tuple[str, str, str]:
    """A self-signed certificate for the push hosts, localhost and 127.0.0.1: (cert path,
    key path, the base64 SHA-256 of its SubjectPublicKeyInfo, as Chromium's SPKI list wants)."""
    cert_path, key_path = self_signed_cert(
        common_name="gcm-standin", dns_names=(*PUSH_HOSTS, "localhost")
    )
    with open(cert_path, "rb") as file:
        cert = x509.load_pem_x509_certificate(file.read())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode()


# --- the service -------------------------------------------------------------------------------


@dataclass
class Registration:
    token: str
    app: str  # the category Chromium registers under ("org.chromium.linux")
    subtype: str  # Chromium's app id of the subscription
    sender: str  # the authorized entity: the application server key (VAPID), base64url
    android_id: int


@dataclass
class Push:
    """A push the app server sent (as received) and whether it went out on a connection."""

    token: str
    headers: dict[str, str]
    body: bytes
    forwarded: bool = False


@dataclass
class _Connection:
    android_id: int
    sock: ssl.SSLSocket
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[str] = field(default_factory=list)


class _LockedReader:
    """Reads an MCS socket while a push may be written to it from another thread: an SSL
    object must not be read and written at once (OpenSSL), so each read runs under the
    connection's lock, taken only once data is there (`select`, or what TLS has buffered)."""

    def __init__(self, sock: ssl.SSLSocket, lock: threading.Lock, stopping) -> None:
        self.sock, self.lock, self.stopping = sock, lock, stopping

    def read(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            if not self.sock.pending():
                ready, _, _ = select.select([self.sock], [], [], 0.5)
                if not ready:
                    if self.stopping():
                        return bytes(data)
                    continue
            with self.lock:
                chunk = self.sock.recv(size - len(data))
            if not chunk:
                return bytes(data)  # the end of the stream
            data += chunk
        return bytes(data)


def _b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class GcmService:
    """Checkin, registration, MCS and the push endpoint. `start()`, then launch Chromium with
    `chromium_args()`; `stop()` at the end."""

    def __init__(self, *, push_address: str = "127.0.0.1") -> None:
        self.cert_path, self.key_path, self.spki = _certificate()
        self.push_address = push_address  # where the push hosts resolve in the test
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.devices: dict[int, int] = {}  # android_id -> security_token
        self.registrations: dict[str, Registration] = {}
        self.connections: dict[int, _Connection] = {}
        self.checkins = 0
        self.logins = 0
        self.pushes: list[Push] = []
        # As the real service: a message stays until the device acks it, and goes again on
        # its next login (a browser that reconnected its MCS socket meanwhile still gets it).
        self.unacked: dict[int, dict[str, bytes]] = {}
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -- lifecycle

    def _tls(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def start(self) -> None:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet test output
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, content_type, answer, extra = service.handle(
                    self.path, dict(self.headers), body
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer)

        # checkin and registration (plain http: Chromium takes any URL its switches give)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_url = f"http://127.0.0.1:{self.http.server_address[1]}"
        # the push endpoint, as https://<push host> (port 443)
        try:
            self.push_http = ThreadingHTTPServer((self.push_address, 443), Handler)
        except PermissionError:  # not root: another port, which the test sends to instead
            self.push_http = ThreadingHTTPServer((self.push_address, 0), Handler)
        self.push_port = self.push_http.server_address[1]
        self.push_http.socket = self._tls().wrap_socket(self.push_http.socket, server_side=True)
        # MCS
        self.mcs = socket.create_server(("127.0.0.1", 0))
        self.mcs_port = self.mcs.getsockname()[1]
        for target in (self.http.serve_forever, self.push_http.serve_forever, self._accept):
            thread = threading.Thread(target=target, daemon=True, name="gcm-standin")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping = True
        self.http.shutdown()
        self.http.server_close()
        self.push_http.shutdown()
        self.push_http.server_close()
        self.mcs.close()
        with self.lock:
            connections = list(self.connections.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.close()

    def chromium_args(self) -> list[str]:
        return [
            f"--gcm-checkin-url={self.http_url}/checkin",
            f"--gcm-registration-url={self.http_url}/c2dm/register3",
            f"--gcm-mcs-endpoint=https://127.0.0.1:{self.mcs_port}",
            f"--ignore-certificate-errors-spki-list={self.spki}",
        ]

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    # -- HTTP: checkin, registration, the push endpoint

    def handle(self, path: str, headers: dict[str, str], body: bytes):
        headers = {k.lower(): v for k, v in headers.items()}
        if path == "/checkin":
            return self._checkin(headers, body)
        if path == "/c2dm/register3":
            return self._register(headers, body)
        if path.startswith("/fcm/send/"):
            return self._push(path.removeprefix("/fcm/send/"), headers, body)
        self.errors.append(f"unexpected POST {path}")
        return 404, "text/plain", b"not found", {}

    def _checkin(self, headers: dict[str, str], body: bytes):
        if headers.get("content-type") != "application/x-protobuf":
            self.errors.append(f"checkin content type {headers.get('content-type')!r}")
        request = PB["AndroidCheckinRequest"]()
        try:
            request.ParseFromString(body)
        except Exception as exc:
            self.errors.append(f"checkin request does not parse: {exc}")
            return 400, "text/plain", b"bad request", {}
        with self.changed:
            self.checkins += 1
            android_id = request.id
            if android_id and self.devices.get(android_id) != request.security_token:
                self.errors.append("checkin of a known id with a wrong security token")
                return 403, "text/plain", b"forbidden", {}
            if not android_id:
                android_id = secrets.randbits(62) | 1
                self.devices[android_id] = secrets.randbits(62) | 1
            self.changed.notify_all()
        response = PB["AndroidCheckinResponse"](
            stats_ok=True,
            time_msec=int(time.time() * 1000),
            android_id=android_id,
            security_token=self.devices[android_id],
        )
        return 200, "application/x-protobuf", response.SerializeToString(), {}

    def _device(self, authorization: str) -> int | None:
        scheme, _, credentials = authorization.partition(" ")
        android_id, _, token = credentials.partition(":")
        if scheme != "AidLogin" or not android_id.isdigit() or not token.isdigit():
            return None
        with self.lock:
            if self.devices.get(int(android_id)) != int(token):
                return None
        return int(android_id)

    def _register(self, headers: dict[str, str], body: bytes):
        android_id = self._device(headers.get("authorization", ""))
        if android_id is None:
            self.errors.append("registration without a checked-in device's AidLogin")
            return 401, "text/plain", b"Error=AUTHENTICATION_FAILED", {}
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        # Web push registrations carry X-subtype (Chromium's app id of the subscription);
        # Chromium's own GCM registrations (app com.google.android.gms) do not.
        missing = [key for key in ("app", "device", "sender") if not form.get(key)]
        if missing or form["device"] != str(android_id):
            self.errors.append(f"registration form: missing {missing} or another device: {form}")
            return 200, "text/plain", b"Error=INVALID_PARAMETERS", {}
        if form.get("delete"):  # an unsubscribe
            with self.changed:
                for token, registration in list(self.registrations.items()):
                    if (registration.app, registration.subtype) == (
                        form["app"],
                        form.get("X-subtype", ""),
                    ):
                        del self.registrations[token]
                self.changed.notify_all()
            return 200, "text/plain", f"deleted={form['app']}".encode(), {}
        token = f"{secrets.token_urlsafe(8)}:{secrets.token_urlsafe(100)}"
        with self.changed:
            self.registrations[token] = Registration(
                token=token,
                app=form["app"],
                subtype=form.get("X-subtype", ""),
                sender=form["sender"],
                android_id=android_id,
            )
            self.changed.notify_all()
        return 200, "text/plain", f"token={token}".encode(), {}

    def _push(self, token: str, headers: dict[str, str], body: bytes):
        with self.lock:
            registration = self.registrations.get(token)
        if registration is None:
            return 404, "text/plain", b"no such subscription", {}
        host = headers.get("host", "").split(":")[0]
        problem = "" if host in PUSH_HOSTS else f"push to host {host!r}"
        problem = problem or self._check_vapid(headers.get("authorization", ""), registration, host)
        if headers.get("content-encoding") != "aes128gcm":
            problem = problem or "content-encoding is not aes128gcm"
        if "ttl" not in headers:
            problem = problem or "TTL header missing"
        if problem:
            self.errors.append(problem)
            return 400, "text/plain", problem.encode(), {}
        push = Push(token=token, headers=headers, body=body)
        with self.changed:
            self.pushes.append(push)
            connection = self.connections.get(registration.android_id)
        if connection is not None:
            stanza = PB["DataMessageStanza"](
                id=secrets.token_hex(8),
                category=registration.app,
                persistent_id=f"0:{time.time_ns()}%{secrets.token_hex(6)}",
                ttl=int(headers["ttl"]),
                sent=int(time.time()),
                raw_data=body,
            )
            setattr(stanza, "from", registration.sender)  # a keyword in Python
            for key, value in (
                ("subtype", registration.subtype),
                ("content-encoding", "aes128gcm"),
            ):
                stanza.app_data.add(key=key, value=value)
            with self.changed:
                self.unacked.setdefault(registration.android_id, {})[stanza.persistent_id] = frame(
                    stanza
                )
            try:
                with connection.lock:
                    connection.sock.sendall(frame(stanza))
                push.forwarded = True
            except OSError as exc:
                self.errors.append(f"could not forward over MCS: {exc!r}")
        with self.changed:
            self.changed.notify_all()
        location = f"https://{PUSH_HOSTS[0]}/fcm/message/{secrets.token_hex(8)}"
        return 201, "text/plain", b"", {"Location": location}

    def _check_vapid(self, authorization: str, registration: Registration, host: str) -> str:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return "Authorization is not a vapid header"
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        token, k = parts.get("t"), parts.get("k")
        if not token or not k:
            return "vapid header needs t and k"
        if k.rstrip("=") != registration.sender.rstrip("="):
            return "k is not the key the subscription was made with"
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64url_decode(k))
        try:
            jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                audience=f"https://{host}",
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"VAPID JWT rejected: {exc}"
        return ""

    # -- MCS

    def _accept(self) -> None:
        context = self._tls()
        while not self._stopping:
            try:
                raw, _ = self.mcs.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(context, raw), daemon=True, name="gcm-standin-mcs"
            )
            thread.start()

    def _serve(self, context: ssl.SSLContext, raw: socket.socket) -> None:
        try:
            sock = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLEOFError, ConnectionResetError):
            raw.close()  # the browser went away mid-handshake (it was closing)
            return
        except (ssl.SSLError, OSError) as exc:  # e.g. the browser refused our certificate
            self.errors.append(f"MCS TLS handshake failed: {exc!r}")
            raw.close()
            return
        connection: _Connection | None = None
        lock = threading.Lock()
        try:
            reader = _LockedReader(sock, lock, lambda: self._stopping)
            version = reader.read(1)
            if not version:
                return
            if version[0] < MCS_VERSION:
                self.errors.append(f"MCS version {version[0]}")
                return
            while True:
                tag_byte = reader.read(1)
                if not tag_byte:
                    return
                size = self._read_varint(reader)
                body = reader.read(size)
                name = TAGS.get(tag_byte[0])
                if name is None:
                    self.errors.append(f"MCS unknown tag {tag_byte[0]}")
                    return
                message = PB[name]()
                message.ParseFromString(body)
                if connection is None:
                    if name != "LoginRequest":
                        self.errors.append(f"MCS {name} before LoginRequest")
                        return
                    connection = self._login(sock, message, lock)
                    if connection is None:
                        return
                elif name == "HeartbeatPing":
                    with connection.lock:
                        sock.sendall(frame(PB["HeartbeatAck"]()))
                elif name == "IqStanza" and message.extension.id == 12:
                    acks = PB["SelectiveAck"]()
                    acks.ParseFromString(message.extension.data)
                    with self.changed:
                        connection.acked.extend(acks.id)
                        for acked in acks.id:
                            self.unacked.get(connection.android_id, {}).pop(acked, None)
                        self.changed.notify_all()
                elif name == "Close":
                    return
        except (ssl.SSLEOFError, ConnectionResetError):
            pass  # the browser went away (closed without a TLS close_notify): not an error
        except (OSError, ValueError, DecodeError) as exc:
            if not self._stopping:
                self.errors.append(f"MCS connection: {exc!r}")
        finally:
            if connection is not None:
                with self.changed:
                    if self.connections.get(connection.android_id) is connection:
                        del self.connections[connection.android_id]
                    self.changed.notify_all()
            with contextlib.suppress(OSError):
                sock.close()

    @staticmethod
    def _read_varint(reader) -> int:
        value, shift = 0, 0
        while True:
            byte = reader.read(1)
            if not byte:
                raise ValueError("MCS stream ended inside a size")
            value |= (byte[0] & 0x7F) << shift
            if not byte[0] & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise ValueError("MCS size varint too long")

    def _login(self, sock: ssl.SSLSocket, request, lock: threading.Lock) -> _Connection | None:
        android_id = int(request.user) if request.user.isdigit() else 0
        token = int(request.auth_token) if request.auth_token.isdigit() else -1
        with self.lock:
            known = self.devices.get(android_id) == token
        if not known:
            self.errors.append("MCS login of an unknown device or with a wrong token")
            response = PB["LoginResponse"](id=request.id)
            response.error.code = 401
            sock.sendall(bytes([MCS_VERSION]) + frame(response))
            return None
        response = PB["LoginResponse"](
            id=request.id, server_timestamp=int(time.time() * 1000), last_stream_id_received=1
        )
        sock.sendall(bytes([MCS_VERSION]) + frame(response))
        connection = _Connection(android_id=android_id, sock=sock, lock=lock)
        with self.changed:
            self.logins += 1
            self.connections[android_id] = connection
            again = list(self.unacked.get(android_id, {}).values())
            self.changed.notify_all()
        with lock:
            for stanza in again:
                sock.sendall(stanza)
        return connection

    def web_push_registrations(self) -> list[Registration]:
        """The subscriptions (not Chromium's own GCM registrations, which have no subtype)."""
        with self.lock:
            return [r for r in self.registrations.values() if r.subtype.startswith("wp:")]
