"""Outbound requests to URLs that people type (webhook endpoints, Web Push subscription
endpoints): a guard against SSRF.

A clinic admin may enter any URL, and the server POSTs signed call events to it from inside
the network. So a URL is accepted only when its scheme is https (http when allowed) and every
address its host resolves to is a public one. Refused, with the rule named:

- loopback (127.0.0.0/8, ::1), private networks (RFC 1918, unique-local fc00::/7) and shared
  address space (CGNAT 100.64.0.0/10): unless `allow_private` (a self-hosted clinic that
  delivers to its own intranet);
- always: link-local (169.254.0.0/16 with the cloud metadata service 169.254.169.254,
  fe80::/10), known metadata addresses, multicast, unspecified, and anything else that is not
  globally routable (reserved, documentation, benchmarking, broadcast ranges);
- IPv6 addresses that embed an IPv4 one (IPv4-mapped ::ffff:a.b.c.d, 6to4, NAT64
  64:ff9b::/96) are judged by the IPv4 address.

`check_url` is the check at save time. `post` (and `get`, for documents such as an EHR's
JWK set) is the check at send time, against DNS
rebinding: it resolves the host once, checks every address, and connects to a checked address
itself (the URL's host replaced by the address), while the Host header, TLS SNI and certificate
verification stay on the hostname (httpcore's `sni_hostname` request extension). A lookup that
takes longer than `RESOLVE_TIMEOUT_S` (or the request's timeout) is a network error, retried.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import ipaddress
import os
import re
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Addresses of cloud metadata services outside the link-local range (Alibaba Cloud's sits in
# the CGNAT range; AWS's IPv6 one in unique-local): refused even when private networks are on.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "169.254.169.254")
)
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")
# A host with many addresses is checked whole; connections are tried on the first few only,
# so that connect timeouts stay inside the delivery task's time limit.
MAX_CONNECT_ADDRESSES = 2
RESOLVE_TIMEOUT_S = 5.0
MAX_RESPONSE_BYTES = 64 * 1024  # of a response body: read no further
# A kept connection reads an answer's body through, up to this (past it, it is closed); and
# an answer's status line and headers up to MAX_HEADER_BYTES.
MAX_DRAIN_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
PIPELINE_DEPTH = 32  # requests written ahead of their answers on one connection
RESOLVER_THREADS = 4
WEBHOOK_SETTINGS = {
    "http_setting": "WEBHOOKS_ALLOW_HTTP",
    "private_setting": "WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
}
WEBPUSH_SETTINGS = {
    "http_setting": "WEBPUSH_ALLOW_HTTP_ENDPOINTS",
    "private_setting": "WEBPUSH_ALLOW_PRIVATE_NETWORKS",
}


class Refused(Exception):
    """A URL the guard will not send to. The message names the rule (and the address), never
    the URL's path or query."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class ResolveError(httpx.ConnectError):
    """The host did not resolve (at send time: a network error, retried)."""


@dataclass(frozen=True)
class Answer:
    """A response, read at most `MAX_RESPONSE_BYTES` (a receiver may answer with anything)."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # case-insensitive: httpx.Headers, or Fields from a pipeline
    content: bytes  # decoded (Content-Encoding), possibly cut

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def reason(self) -> str:
        """`reason_phrase` by the name `requests` gives it (pywebpush reads it)."""
        return self.reason_phrase


@dataclass(frozen=True)
class Target:
    url: httpx.URL
    hostname: str  # IDNA-encoded host, or the address literal
    addresses: tuple[IPAddress, ...]  # every one checked
    is_literal: bool


def webhook_rules() -> dict[str, bool]:
    """The settings that decide which webhook URLs are allowed, at save and at send time."""
    return {
        # http only in development (DEBUG) or when allowed (local receivers).
        "allow_http": settings.DEBUG or settings.WEBHOOKS_ALLOW_HTTP,
        "allow_private": settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS,
    }


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """The rule that refuses this address, or None when it may be reached."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64_NETWORK:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            rule = address_refusal(embedded, allow_private=allow_private)
            return f"{rule}, embedded in an IPv6 address" if rule else None
        address = ipaddress.IPv6Address(int(address))  # drop any %zone
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service address"
    if address.is_unspecified:
        return "an unspecified address (0.0.0.0, ::)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address (169.254.0.0/16, fe80::/10; cloud metadata lives there)"
    if address.is_loopback:
        return None if allow_private else "a loopback address"
    if any(address in network for network in PRIVATE_NETWORKS):
        return None if allow_private else "a private network address (RFC 1918, fc00::/7)"
    if address in SHARED_NETWORK:
        return None if allow_private else "a shared address space address (CGNAT 100.64.0.0/10)"
    if not address.is_global:
        return "a reserved address (not globally routable)"
    return None


def webpush_rules() -> dict[str, bool | str]:
    """The settings that decide which Web Push endpoints are allowed (at registration, for an
    address literal, and at every send)."""
    return {
        "allow_http": settings.WEBPUSH_ALLOW_HTTP_ENDPOINTS,
        "allow_private": settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS,
        **WEBPUSH_SETTINGS,
    }


def check_addresses(
    hostname: str,
    addresses: tuple[IPAddress, ...],
    *,
    allow_private: bool,
    private_setting: str = WEBHOOK_SETTINGS["private_setting"],
) -> None:
    """Raise Refused unless every address may be reached (one bad address refuses the host:
    which one a client picks is not ours to choose)."""
    if not addresses:
        raise ResolveError(f"could not resolve {hostname}")
    for address in addresses:
        rule = address_refusal(address, allow_private=allow_private)
        if rule:
            literal = _literal(hostname) is not None
            where = hostname if literal else f"{hostname} resolves to {address}"
            hint = (
                ""
                if address_refusal(address, allow_private=True)
                else f" Set {private_setting}=true to deliver inside your own network."
            )
            raise Refused(f"Refused: {where}, {rule}.{hint}", code="address_refused")


def _literal(hostname: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(hostname)
    except ValueError:
        return None


_resolvers: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_resolvers_lock = threading.Lock()


def _resolver_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for getaddrinfo (one pool per process: made again after a fork)."""
    global _resolvers
    with _resolvers_lock:
        if _resolvers is None or _resolvers[0] != os.getpid():
            pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=RESOLVER_THREADS, thread_name_prefix="netguard-dns"
            )
            _resolvers = (os.getpid(), pool)
        return _resolvers[1]


def resolve(
    hostname: str, port: int, *, timeout: float = RESOLVE_TIMEOUT_S
) -> tuple[IPAddress, ...]:
    """Every address of `hostname`, in the resolver's order, without duplicates. getaddrinfo
    has no timeout of its own (a dead DNS server holds it for the system's retries): it runs
    in a thread, and a lookup slower than `timeout` is a ResolveError (retried like any
    network error) while the thread finishes on its own."""
    future = _resolver_pool().submit(socket.getaddrinfo, hostname, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as exc:
        raise ResolveError(f"could not resolve {hostname} within {timeout:g} s") from exc
    except (OSError, UnicodeError) as exc:
        raise ResolveError(f"could not resolve {hostname}") from exc
    addresses: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return tuple(addresses)


def check_url(
    url: str,
    *,
    allow_http: bool,
    allow_private: bool,
    resolve_host: bool = True,
    resolve_timeout: float = RESOLVE_TIMEOUT_S,
    http_setting: str = WEBHOOK_SETTINGS["http_setting"],
    private_setting: str = WEBHOOK_SETTINGS["private_setting"],
) -> Target:
    """Parse, check the scheme, resolve the host once and check every address. With
    `resolve_host` off, only an address literal is checked (a name is left to send time).

    Raises Refused (a rule refuses it) or ResolveError (the host does not resolve)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise Refused("Not a valid URL.", code="invalid") from exc
    schemes = ("https", "http") if allow_http else ("https",)
    if parsed.scheme not in schemes:
        rule = "http or https" if allow_http else "https"
        raise Refused(
            f"Refused: the URL must use {rule}"
            + (f" (http is off: {http_setting})." if parsed.scheme == "http" else "."),
            code="scheme_refused",
        )
    hostname = parsed.raw_host.decode("ascii")
    if not hostname:
        raise Refused("Not a valid URL: no host.", code="invalid")
    literal = _literal(hostname)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if literal is None and not resolve_host:
        return Target(url=parsed, hostname=hostname, addresses=(), is_literal=False)
    addresses = (
        (literal,) if literal is not None else resolve(hostname, port, timeout=resolve_timeout)
    )
    check_addresses(
        hostname, addresses, allow_private=allow_private, private_setting=private_setting
    )
    return Target(
        url=parsed, hostname=hostname, addresses=addresses, is_literal=literal is not None
    )


def ssl_context() -> ssl.SSLContext:
    """The TLS context of every outgoing request, made once per process (and per CA setting):
    loading the CA bundle costs ~27 ms, more than the rest of a push's delivery together
    (bench/push.py). It honours SSL_CERT_FILE / SSL_CERT_DIR, as httpx does by default."""
    return _ssl_context_for(os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))


@functools.cache
def _ssl_context_for(cert_file: str, cert_dir: str) -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=True)  # reads the same two variables


@dataclass(frozen=True)
class Request:
    """One POST of a batch (`post_many`)."""

    url: str
    content: bytes
    headers: Mapping[str, str]


class Fields(dict[str, str]):
    """An answer's header fields by lower-cased name, looked up in any case; a repeated field's
    values joined with ", " (as httpx.Headers does, at a fraction of its cost per answer)."""

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        super().__setitem__(key, f"{super().__getitem__(key)}, {value}" if key in self else value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class _ProtocolError(Exception):
    """An answer that is not HTTP/1.x as we read it."""


class _Connection:
    """A kept-alive HTTP/1.1 connection to a checked address, with its read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.reused = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def stale(self) -> bool:
        """An idle connection the server closed (or wrote to) meanwhile: not to be reused."""
        if self.buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        data = self.sock.recv(64 * 1024)
        if not data:
            raise EOFError
        self.buffer += data

    def read_until(self, separator: bytes, limit: int, deadline: float) -> bytes:
        searched = 0
        while True:
            found = self.buffer.find(separator, searched)
            if found >= 0:
                data = bytes(self.buffer[:found])
                del self.buffer[: found + len(separator)]
                return data
            if len(self.buffer) > limit:
                raise _ProtocolError("header too long")
            searched = max(0, len(self.buffer) - len(separator) + 1)
            self._fill(deadline)

    def read(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            self._fill(deadline)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_to_end(self, limit: int, deadline: float) -> bytes:
        with contextlib.suppress(EOFError):
            while len(self.buffer) <= limit:
                self._fill(deadline)
        return bytes(self.buffer[:limit])


def _read_answer(conn: _Connection, deadline: float) -> tuple[Answer, bool]:
    """The next answer on a pipelined connection, and whether the connection stays open for
    the answers after it (False: the server closes it after this one, so it processed none of
    the requests written after this one: RFC 9112 9.6)."""
    while True:
        head = conn.read_until(b"\r\n\r\n", MAX_HEADER_BYTES, deadline)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or not (len(code) == 3 and code.isdigit()):
            raise _ProtocolError("not an HTTP/1.x status line")
        status = int(code)
        if status >= 200:
            break  # 1xx answers are interim: the final one follows
    headers = Fields()
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _ProtocolError("malformed header")
        headers.add(name, value.strip())
    options = {o.strip().lower() for o in headers.get("connection", "").split(",")}
    keep = "keep-alive" in options if version == "HTTP/1.0" else "close" not in options
    coding = headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")
    if status in (204, 304):
        body = b""
    elif coding:
        if coding.rsplit(",", 1)[-1].strip() != "chunked":
            return _answer(status, reason, headers, conn.read_to_end(MAX_DRAIN_BYTES, deadline))
        body = _read_chunked(conn, deadline)
    elif length is not None:
        if not length.isdigit() or int(length) > MAX_DRAIN_BYTES:
            raise _ProtocolError("bad or oversized Content-Length")
        body = conn.read(int(length), deadline)
    else:  # delimited by the close
        return _answer(status, reason, headers, conn.read_to_end(MAX_DRAIN_BYTES, deadline))
    return Answer(status, reason, headers, body[:MAX_RESPONSE_BYTES]), keep


def _answer(status: int, reason: str, headers: Fields, body: bytes) -> tuple[Answer, bool]:
    return Answer(status, reason, headers, body[:MAX_RESPONSE_BYTES]), False


def _read_chunked(conn: _Connection, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        line = conn.read_until(b"\r\n", 1024, deadline)
        length = line.split(b";", 1)[0].strip()
        try:
            n = int(length, 16)
        except ValueError as exc:
            raise _ProtocolError("bad chunk size") from exc
        if n == 0:
            while conn.read_until(b"\r\n", MAX_HEADER_BYTES, deadline):
                pass  # trailers
            return b"".join(chunks)
        size += n
        if size > MAX_DRAIN_BYTES:
            raise _ProtocolError("oversized chunked body")
        chunks.append(conn.read(n, deadline))
        conn.read_until(b"\r\n", 2, deadline)


class Pool:
    """Kept-alive HTTP/1.1 connections for `post_many`, shared by the threads of one process.

    Connections are kept per checked address, host name and port, so a kept connection only
    ever goes where a check sent it; at most `per_origin` per address (and `origins`
    addresses: the least recently used is closed). A batch's requests to one push service
    are pipelined (RFC 9112 9.3): written `depth` at a time (PUSH_PIPELINE_DEPTH; 1: one
    request at a time, for a server that mishandles pipelining) on a connection,
    over at most `per_origin` connections in parallel, their answers read in order. A
    request whose answer did not come is an error of its own (a network error: its outcome
    is unknown), except after an answer that closed the connection: those were not processed
    and go again on a new connection; a kept connection found closed before its first answer
    is replaced once. A pool used after a fork starts empty (a child never writes on its
    parent's sockets)."""

    def __init__(
        self, *, per_origin: int = 8, origins: int = 64, depth: int = PIPELINE_DEPTH
    ) -> None:
        self.per_origin = per_origin
        self.depth = max(1, depth)
        self.origins = origins
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple, list[_Connection]] = OrderedDict()
        self._pid = os.getpid()
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    def _forked(self) -> None:
        if self._pid != os.getpid():  # under self._lock
            self._idle = OrderedDict()
            self._threads = None
            self._pid = os.getpid()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            self._forked()
            if self._threads is None:
                self._threads = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.per_origin, thread_name_prefix="netguard-http"
                )
            return self._threads

    def _checkout(self, keys: list[tuple]) -> tuple[tuple, _Connection] | None:
        while True:
            with self._lock:
                self._forked()
                found = next(((k, self._idle[k]) for k in keys if self._idle.get(k)), None)
                if found is None:
                    return None
                key, idle = found
                conn = idle.pop()
            if not conn.stale():
                conn.reused = True
                return key, conn
            conn.close()

    def _checkin(self, key: tuple, conn: _Connection) -> None:
        evicted: list[_Connection] = []
        with self._lock:
            self._forked()
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < self.per_origin:
                idle.append(conn)
            else:
                evicted.append(conn)
            while len(self._idle) > self.origins:
                evicted.extend(self._idle.popitem(last=False)[1])
        for old in evicted:
            old.close()

    def _connect(self, target: Target, deadline: float) -> tuple[tuple, _Connection]:
        """A new connection to the first checked address that answers."""
        candidates = target.addresses[:MAX_CONNECT_ADDRESSES]
        port = target.url.port or (443 if target.url.scheme == "https" else 80)
        for tried, address in enumerate(candidates, start=1):
            remaining = max(0.001, deadline - time.monotonic())
            try:
                sock = socket.create_connection((str(address), port), timeout=remaining)
            except TimeoutError as exc:
                if tried == len(candidates):
                    raise httpx.ConnectTimeout(f"connect timeout ({address})") from exc
                continue
            except OSError as exc:
                if tried == len(candidates):
                    raise httpx.ConnectError(f"{type(exc).__name__} ({address})") from exc
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if target.url.scheme == "https":
                    # SNI and the certificate's name: the URL's (an address literal: itself).
                    sock.settimeout(remaining)
                    sock = ssl_context().wrap_socket(sock, server_hostname=target.hostname)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                if tried == len(candidates):
                    raise httpx.ConnectError(f"{type(exc).__name__} ({address})") from exc
                continue
            return _key(target, address), _Connection(sock)
        raise ResolveError(f"could not resolve {target.hostname}")  # no address: not reached

    def send(
        self,
        target: Target,
        window: list[tuple[int, bytes]],
        results: dict[int, Answer | Exception],
        deadline: float,
    ) -> concurrent.futures.Future:
        """Pipeline this window of (index, request bytes) to the target's checked addresses
        on one of the pool's threads (at most `per_origin` at once: a window waits for a
        thread, so for a connection); each answer or error lands in `results` by index."""
        return self._executor().submit(self.pipeline, target, window, results, deadline)

    def pipeline(
        self,
        target: Target,
        window: list[tuple[int, bytes]],
        results: dict[int, Answer | Exception],
        deadline: float,
    ) -> None:
        """`send`'s work, in this thread: the requests written `depth` at a time on a kept
        (or new) connection, their answers read in order, until `deadline`."""
        wire = dict(window)
        pending = [index for index, _ in window]
        keys = [_key(target, a) for a in target.addresses[:MAX_CONNECT_ADDRESSES]]
        replaced_stale = False
        while pending:
            kept = self._checkout(keys)
            try:
                key, conn = kept or self._connect(target, deadline)
            except httpx.HTTPError as exc:
                for index in pending:
                    results[index] = exc
                return
            answered, keep, error = 0, True, None
            written = pending[: self.depth]
            try:
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
                conn.sock.sendall(b"".join(wire[i] for i in written))
            except OSError:
                pass  # what was answered before the server went is still to be read
            try:
                for index in written:
                    results[index], keep = _read_answer(conn, deadline)
                    answered += 1
                    if not keep:
                        break
            except EOFError:
                if answered == 0 and conn.reused and not replaced_stale:
                    replaced_stale = True  # closed while idle: once more on a new one
                    conn.close()
                    continue
                error = httpx.RemoteProtocolError("the server closed the connection")
            except TimeoutError:
                error = httpx.ReadTimeout("read timeout")
            except _ProtocolError as exc:
                error = httpx.RemoteProtocolError(str(exc))
            except (OSError, ssl.SSLError) as exc:
                error = httpx.ReadError(type(exc).__name__)
            pending = pending[answered:]
            replaced_stale = replaced_stale and not answered
            if error is None and keep:
                self._checkin(key, conn)
            else:
                conn.close()
            if error is not None:
                for index in pending:
                    results[index] = error
                return
            # The server closed after an answer: the rest were not processed, and go again.

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for conns in idle:
            for conn in conns:
                conn.close()


def _key(target: Target, address: IPAddress) -> tuple:
    return (target.url.scheme, target.hostname, str(address), target.url.port)


def _request_line(path: str, host: str, length: int) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n".encode("latin-1")


def _header_block(headers: Mapping[str, str]) -> bytes:
    """The request's own header fields and the blank line that ends them (those the
    connection sets itself are left out). Raises ValueError for a field with a line break."""
    lines = []
    for name, value in headers.items():
        if name.lower() in ("host", "content-length", "connection", "transfer-encoding"):
            continue
        if any(c in f"{name}{value}" for c in "\r\n\0"):
            raise ValueError("a header with a line break")
        lines.append(f"{name}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode("latin-1")


def _checked(
    url: str,
    timeout: float,
    allow_http: bool,
    allow_private: bool,
    http_setting: str,
    private_setting: str,
) -> Target:
    """`check_url` as every request of this module asks it: the name resolved within the
    request's timeout (at most RESOLVE_TIMEOUT_S)."""
    return check_url(
        url,
        allow_http=allow_http,
        allow_private=allow_private,
        resolve_timeout=min(timeout, RESOLVE_TIMEOUT_S),
        http_setting=http_setting,
        private_setting=private_setting,
    )


def _client(timeout: float) -> httpx.Client:
    # Straight to the checked address, never through an environment proxy (it would resolve
    # the name again, and httpcore's proxy tunnel ignores sni_hostname).
    return httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=ssl_context()
    )


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    allow_http: bool,
    allow_private: bool,
    http_setting: str = WEBHOOK_SETTINGS["http_setting"],
    private_setting: str = WEBHOOK_SETTINGS["private_setting"],
) -> Answer:
    """POST to `url` at a checked address (never a second DNS lookup), without following
    redirects; the answer's body is read up to `MAX_RESPONSE_BYTES`. Raises Refused, or httpx
    errors like httpx.post. The connection is closed after (`post_many` keeps them)."""
    target = _checked(url, timeout, allow_http, allow_private, http_setting, private_setting)
    with _client(timeout) as client:
        return _post_checked(target, client, content, headers, timeout)


def get(
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    allow_http: bool,
    allow_private: bool,
    max_bytes: int = MAX_RESPONSE_BYTES,
    http_setting: str = WEBHOOK_SETTINGS["http_setting"],
    private_setting: str = WEBHOOK_SETTINGS["private_setting"],
) -> Answer:
    """GET `url` with the same guard as `post` (checked addresses only, no second lookup, no
    redirects, no proxy). A body longer than `max_bytes` is refused (Refused, code
    `too_large`) rather than cut: a document read in part must not be used."""
    target = _checked(url, timeout, allow_http, allow_private, http_setting, private_setting)
    with _client(timeout) as client:
        answer = _post_checked(
            target, client, b"", headers, timeout, method="GET", limit=max_bytes + 1
        )
    if len(answer.content) > max_bytes:
        raise Refused(f"Refused: the answer is larger than {max_bytes} bytes.", code="too_large")
    return answer


def post_many(
    requests: Iterable[Request],
    *,
    timeout: float,
    allow_http: bool,
    allow_private: bool,
    pool: Pool,
    http_setting: str = WEBHOOK_SETTINGS["http_setting"],
    private_setting: str = WEBHOOK_SETTINGS["private_setting"],
) -> list[Answer | Exception]:
    """POST each request, as `post` does, over the pool's kept-alive connections; each one's
    answer or its error (Refused, ResolveError, ValueError for a header with a line break,
    httpx's), in order. Every URL is checked; its host is resolved and every address checked
    once per call (its requests then go only to those addresses), so a name cannot point
    elsewhere between the check and the send.

    `requests` is read as it is sent: each origin's requests leave in windows of the pool's
    `depth`, a window as soon as it is full (on the pool's threads), so a caller that makes
    its requests in a generator (Web Push: encrypting each push) has the first answers back
    while it makes the rest. A call that is one window sends it in this thread. Every
    request's answer is due `timeout` after the call starts."""
    deadline = time.monotonic() + timeout
    results: dict[int, Answer | Exception] = {}
    targets: dict[tuple, Target | Exception] = {}
    windows: dict[tuple, list[tuple[int, bytes]]] = {}
    heads: dict[int, tuple[Mapping[str, str], bytes]] = {}  # by the headers object's id
    futures: list[concurrent.futures.Future] = []
    count = 0
    for index, request in enumerate(requests):
        count = index + 1
        try:
            origin, path = _origin_and_path(request.url)
        except (httpx.InvalidURL, TypeError, UnicodeError):
            results[index] = Refused("Not a valid URL.", code="invalid")
            continue
        if origin not in targets:
            try:
                targets[origin] = _checked(
                    request.url, timeout, allow_http, allow_private, http_setting, private_setting
                )
            except (Refused, httpx.HTTPError) as exc:
                targets[origin] = exc
        target = targets[origin]
        if isinstance(target, Exception):
            results[index] = target
            continue
        try:
            # A batch's requests mostly share one headers object: its lines are made once.
            headers = request.headers
            head = heads.get(id(headers))
            if head is None or head[0] is not headers:
                head = heads[id(headers)] = (headers, _header_block(headers))
        except ValueError as exc:
            results[index] = exc
            continue
        host = target.url.netloc.decode("ascii")
        wire = _request_line(path, host, len(request.content)) + head[1] + request.content
        window = windows.setdefault(origin, [])
        window.append((index, wire))
        if len(window) >= pool.depth:
            futures.append(pool.send(target, windows.pop(origin), results, deadline))
    left = [(targets[origin], window) for origin, window in windows.items()]
    if len(left) == 1 and not futures:
        pool.pipeline(*left[0], results, deadline)
    else:
        futures += [pool.send(target, window, results, deadline) for target, window in left]
    for future in futures:
        future.result()
    missing = httpx.RemoteProtocolError("no answer")
    return [results.get(i, missing) for i in range(count)]


# scheme://host[:port] and a path (with its query) of only these: the common case (a push
# service's endpoint), split without a full parse. Anything else is parsed by httpx.
_PLAIN_URL = re.compile(
    r"(https?)://([A-Za-z0-9.-]+(?::[0-9]{1,5})?)(/[A-Za-z0-9._~:/@!$&'()*+,;=?-]*)"
)


def _origin_and_path(url: str) -> tuple[tuple, str]:
    """The URL's origin (as a key: requests with the same one share a check and connections)
    and the path it is sent with. Every URL of an origin goes to the addresses checked for
    the origin's first, whatever its path."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        return ("plain", plain[1], plain[2].lower()), plain[3]
    parsed = httpx.URL(url)
    return ("parsed", parsed.scheme, parsed.raw_host, parsed.port), parsed.raw_path.decode("ascii")


def _post_checked(
    target: Target,
    client: httpx.Client,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    method: str = "POST",
    limit: int = MAX_RESPONSE_BYTES,
) -> Answer:
    host_header = target.url.netloc.decode("ascii")
    extensions = {} if target.is_literal else {"sni_hostname": target.hostname}
    candidates = target.addresses[:MAX_CONNECT_ADDRESSES]
    for tried, address in enumerate(candidates, start=1):
        request = client.build_request(
            method,
            target.url.copy_with(host=str(address)),
            content=None if method == "GET" else content,
            headers={**headers, "Host": host_header},
            extensions=extensions,
            timeout=timeout,
        )
        try:
            response = client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if tried == len(candidates):
                raise
            continue  # the next checked address
        try:
            return Answer(
                status_code=response.status_code,
                reason_phrase=response.reason_phrase,
                headers=response.headers,
                content=_read_at_most(response, limit, seconds=timeout),
            )
        finally:
            response.close()
    raise ResolveError(f"could not resolve {target.hostname}")  # no address: not reached


def _read_at_most(response: httpx.Response, limit: int, *, seconds: float) -> bytes:
    """At most `limit` bytes of the body, read for at most about `seconds` (the client's
    timeout bounds each read; this bounds them all: a receiver that dribbles its answer
    cannot hold a worker)."""
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit or time.monotonic() > deadline:
            break
    return b"".join(chunks)
