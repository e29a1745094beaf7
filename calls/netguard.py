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
import functools
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import urllib3
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
    headers: httpx.Headers
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


class Pool:
    """Keep-alive connections for `post`, shared by the threads of one process (a ring's
    pushes to one push service reuse a few connections instead of opening one each).

    Every `post` through a pool still checks its URL and resolves its host (the guard is
    per request); connections are kept per checked address, TLS name and port (a urllib3
    connection pool each: lighter per request than httpx, headers and body in one write), so
    a kept connection only ever goes where a check sent it. At most `per_origin` connections
    per address and `origins` addresses are kept (the least recently used is closed); a pool
    used after a fork starts empty (a child never writes on its parent's sockets). Errors
    are raised as httpx's, like `post` without a pool."""

    def __init__(self, *, per_origin: int = 8, origins: int = 64) -> None:
        self.per_origin = per_origin
        self.origins = origins
        self._lock = threading.Lock()
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self._pid = os.getpid()

    def connections(self, target: Target, address: IPAddress) -> urllib3.HTTPConnectionPool:
        scheme, port = target.url.scheme, target.url.port
        key = (scheme, target.hostname, str(address), port)
        evicted: list[urllib3.HTTPConnectionPool] = []
        with self._lock:
            if self._pid != os.getpid():
                self._pools = OrderedDict()
                self._pid = os.getpid()
            pool = self._pools.get(key)
            if pool is None:
                options: dict[str, Any] = {"maxsize": self.per_origin, "block": True}
                if scheme == "https":
                    name = None if target.is_literal else target.hostname
                    pool = urllib3.HTTPSConnectionPool(
                        str(address),
                        port or 443,
                        ssl_context=ssl_context(),
                        server_hostname=name,  # SNI and the certificate's name: the URL's
                        assert_hostname=name or str(address),
                        **options,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(str(address), port or 80, **options)
                self._pools[key] = pool
                while len(self._pools) > self.origins:
                    evicted.append(self._pools.popitem(last=False)[1])
            else:
                self._pools.move_to_end(key)
        for old in evicted:
            old.close()
        return pool

    def post(
        self,
        target: Target,
        address: IPAddress,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Answer:
        pool = self.connections(target, address)
        path = target.url.raw_path.decode("ascii")
        try:
            response = pool.urlopen(
                "POST",
                path,
                body=content,
                headers={**headers, "Host": target.url.netloc.decode("ascii")},
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=False,
                release_conn=False,
            )
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:  # reset, closed mid-answer...
            raise httpx.RemoteProtocolError(type(exc).__name__) from exc
        try:
            body = _read_urllib3(response, MAX_RESPONSE_BYTES, seconds=timeout)
            return Answer(
                status_code=response.status,
                reason_phrase=response.reason or "",
                headers=httpx.Headers(list(response.headers.items())),
                content=body,
            )
        except urllib3.exceptions.ReadTimeoutError as exc:
            response.close()
            raise httpx.ReadTimeout(str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            response.close()
            raise httpx.RemoteProtocolError(type(exc).__name__) from exc
        finally:
            response.release_conn()

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()


def _read_urllib3(response: urllib3.BaseHTTPResponse, limit: int, *, seconds: float) -> bytes:
    """`_read_at_most` for a urllib3 answer; a body left unread closes its connection."""
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    size = 0
    for chunk in response.stream(16 * 1024):
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit or time.monotonic() > deadline:
            response.close()  # not kept: the rest of the body would come first on it
            break
    return b"".join(chunks)


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
    pool: Pool | None = None,
) -> Answer:
    """POST to `url` at a checked address (never a second DNS lookup), without following
    redirects; the answer's body is read up to `MAX_RESPONSE_BYTES`. Raises Refused, or httpx
    errors like httpx.post. With a `pool`, the connection is kept for the next post to the
    same checked address; without, it is closed."""
    target = check_url(
        url,
        allow_http=allow_http,
        allow_private=allow_private,
        resolve_timeout=min(timeout, RESOLVE_TIMEOUT_S),
        http_setting=http_setting,
        private_setting=private_setting,
    )
    candidates = target.addresses[:MAX_CONNECT_ADDRESSES]
    if pool is not None:
        for tried, address in enumerate(candidates, start=1):
            try:
                return pool.post(target, address, content, headers, timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if tried == len(candidates):
                    raise
        raise ResolveError(f"could not resolve {target.hostname}")  # no address: not reached
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
    target = check_url(
        url,
        allow_http=allow_http,
        allow_private=allow_private,
        resolve_timeout=min(timeout, RESOLVE_TIMEOUT_S),
        http_setting=http_setting,
        private_setting=private_setting,
    )
    with _client(timeout) as client:
        answer = _post_checked(
            target, client, b"", headers, timeout, method="GET", limit=max_bytes + 1
        )
    if len(answer.content) > max_bytes:
        raise Refused(f"Refused: the answer is larger than {max_bytes} bytes.", code="too_large")
    return answer


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
