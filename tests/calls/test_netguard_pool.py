"""`netguard.post_many`: a batch's requests pipelined over kept-alive HTTP/1.1 connections
(the Web Push sends of a ring), against a server that answers as scripted, byte for byte.

Each request gets its own answer, in order; a server that closes the connection after saying
so has not processed the requests behind it, and they go again on a new connection; one that
just vanishes leaves them unknown (errors: the push is retried with the same identifiers); a
kept connection the server closed while idle is replaced; every URL still meets the guard."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from calls import netguard


class Server:
    """Reads HTTP/1.1 requests off each connection and answers each with `answer(connection
    number, path)`: the raw bytes to write (closing after them if they say `Connection: close`
    or `X-Then-Close`), or None to close the connection without a word."""

    def __init__(self, answer: Callable[[int, str], bytes | None]) -> None:
        self.answer = answer
        self.seen: list[tuple[int, str, bytes]] = []  # (connection, path, body)
        self.queued: list[bool] = []  # per request: was another already waiting behind it?
        self.connections = 0
        self.lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            rbufsize = 0  # read off the socket as needed: what waits behind stays there

            def handle(self):
                with server.lock:
                    server.connections += 1
                    number = server.connections
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    path = line.split()[1].decode()
                    length = 0
                    while (header := self.rfile.readline()) not in (b"\r\n", b""):
                        name, _, value = header.decode().partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                    body = b""
                    while len(body) < length and (more := self.rfile.read(length - len(body))):
                        body += more
                    waiting, _, _ = select.select([self.connection], [], [], 0)
                    with server.lock:
                        server.seen.append((number, path, body))
                        server.queued.append(bool(waiting))
                    reply = server.answer(number, path)
                    if reply is None:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(reply)
                    if b"Connection: close" in reply or b"X-Then-Close" in reply:
                        return

        class TcpServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.tcp = TcpServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.tcp.server_address[1]}"
        threading.Thread(target=self.tcp.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.seen]

    def stop(self) -> None:
        self.tcp.shutdown()
        self.tcp.server_close()


def reply(status: int, body: bytes = b"", *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(answer: Callable[[int, str], bytes | None]) -> Server:
        servers.append(Server(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def post_many(server: Server, paths: list[str], pool: netguard.Pool, **rules):
    requests = [netguard.Request(f"{server.url}{p}", p.encode(), {"TTL": "0"}) for p in paths]
    options = {"allow_http": True, "allow_private": True, **rules}
    return netguard.post_many(requests, timeout=5.0, pool=pool, **options)


def statuses(answers) -> list:
    return [a.status_code if isinstance(a, netguard.Answer) else type(a) for a in answers]


def test_a_batch_is_pipelined_on_one_connection_and_answered_in_order(serve):
    def answer(_conn, path):
        status = 200 + int(path[3:])
        return reply(status, b"" if status == 204 else b"ok")  # 204: never a body

    server = serve(answer)
    pool = netguard.Pool(per_origin=1)
    paths = [f"/p/{n}" for n in range(6)]

    answers = post_many(server, paths, pool)

    assert statuses(answers) == [200, 201, 202, 203, 204, 205]
    assert [a.content for a in answers] == [b"ok", b"ok", b"ok", b"ok", b"", b"ok"]
    assert server.seen == [(1, p, p.encode()) for p in paths]  # one connection, in order
    assert statuses(post_many(server, ["/p/1"], pool)) == [201]  # kept alive for the next
    assert server.connections == 1


def test_requests_behind_an_answer_that_closes_are_sent_again_on_a_new_connection(serve):
    """RFC 9112 9.6: a server that answers `Connection: close` processes nothing after it."""
    server = serve(
        lambda conn, path: reply(201, b"", "Connection: close") if path == "/p/1" else reply(201)
    )
    paths = [f"/p/{n}" for n in range(5)]

    answers = post_many(server, paths, netguard.Pool(per_origin=1))

    assert statuses(answers) == [201] * 5
    assert sorted(server.paths()) == paths  # each processed once
    assert {conn for conn, path, _ in server.seen if path in ("/p/2", "/p/3", "/p/4")} == {2}


def test_requests_behind_a_vanished_connection_are_errors_not_sent_twice(serve):
    """A connection that drops mid-pipeline says nothing about the requests behind: they are
    errors (the push is retried later with the same Topic), never silently sent again."""
    server = serve(lambda conn, path: None if path == "/p/2" else reply(201))
    paths = [f"/p/{n}" for n in range(5)]

    answers = post_many(server, paths, netguard.Pool(per_origin=1))

    assert statuses(answers)[:2] == [201, 201]
    assert all(isinstance(a, httpx.HTTPError) for a in answers[2:])
    assert server.connections == 1


def test_a_kept_connection_closed_while_idle_is_replaced(serve):
    """The server ends a connection after an answer that did not say so (its keep-alive
    timeout): the next batch goes on a new one, whether the close is seen before the write
    or only when no answer comes."""
    server = serve(
        lambda conn, path: reply(201, b"", "X-Then-Close: 1") if conn == 1 else reply(201)
    )
    pool = netguard.Pool(per_origin=1)

    assert statuses(post_many(server, ["/a"], pool)) == [201]
    assert statuses(post_many(server, ["/b", "/c"], pool)) == [201, 201]

    assert server.paths() == ["/a", "/b", "/c"]
    assert server.connections == 2


def test_interim_and_chunked_answers_and_retry_after(serve):
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\n"
    )
    server = serve(lambda conn, path: chunked if path == "/slow" else reply(201))

    answers = post_many(server, ["/slow", "/next"], netguard.Pool(per_origin=1))

    assert statuses(answers) == [429, 201]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].content == b"abcde"


def test_a_batch_spreads_over_at_most_per_origin_connections(serve):
    server = serve(lambda conn, path: reply(201))
    paths = [f"/p/{n}" for n in range(100)]

    answers = post_many(server, paths, netguard.Pool(per_origin=3))

    assert statuses(answers) == [201] * 100
    assert sorted(server.paths()) == sorted(paths)
    assert server.connections <= 3  # 100 / PIPELINE_DEPTH (32): 4 wanted, 3 allowed


def test_every_url_of_a_batch_meets_the_guard(serve):
    server = serve(lambda conn, path: reply(201))
    requests = [
        netguard.Request(f"{server.url}/ok", b"", {}),
        netguard.Request("http://169.254.169.254/latest", b"", {}),
        netguard.Request("ftp://example.com/x", b"", {}),
        netguard.Request(f"{server.url}/evil\r\nX: y", b"", {}),
    ]

    answers = netguard.post_many(
        requests, timeout=5.0, pool=netguard.Pool(), allow_http=True, allow_private=True
    )

    assert isinstance(answers[0], netguard.Answer)
    assert [a.code for a in answers[1:]] == ["address_refused", "scheme_refused", "invalid"]
    assert server.paths() == ["/ok"]

    private = netguard.post_many(
        requests[:1], timeout=5.0, pool=netguard.Pool(), allow_http=True, allow_private=False
    )
    assert private[0].code == "address_refused"
    assert server.paths() == ["/ok"]


def test_depth_one_writes_each_request_after_the_answer_before(serve):
    """PUSH_PIPELINE_DEPTH=1, for a push service that mishandles pipelining: the server never
    has a request waiting behind one it has not answered (with the default depth it has)."""
    server = serve(lambda conn, path: reply(201))
    paths = [f"/p/{n}" for n in range(5)]

    answers = post_many(server, paths, netguard.Pool(per_origin=1, depth=1))

    assert statuses(answers) == [201] * 5
    assert server.paths() == paths
    assert server.connections == 1
    assert server.queued == [False] * 5

    post_many(server, paths, netguard.Pool(per_origin=1))
    assert server.queued[5] is True  # pipelined: the other four were already there


def test_a_window_leaves_as_soon_as_it_is_full_while_the_rest_are_being_made(serve):
    """`requests` may be a generator (Web Push encrypts each push as it is read): a full
    window is sent before the next request is asked for, so its answers come back while the
    rest are made; a call of one window sends it in the calling thread."""
    server = serve(lambda conn, path: reply(201))
    pool = netguard.Pool(per_origin=2, depth=3)
    seen_when_asked: list[int] = []

    def requests():
        for n in range(7):
            if n == 3:  # the first window (three) is full: it leaves before the fourth is made
                for _ in range(500):  # at most 5 s
                    if len(server.seen) >= 3:
                        break
                    time.sleep(0.01)
            seen_when_asked.append(len(server.seen))
            yield netguard.Request(f"{server.url}/p/{n}", b"x", {"TTL": "0"})

    answers = netguard.post_many(
        requests(), timeout=5.0, pool=pool, allow_http=True, allow_private=True
    )

    assert statuses(answers) == [201] * 7
    assert seen_when_asked[:3] == [0, 0, 0]
    assert seen_when_asked[3] == 3  # the first window was answered before the fourth was made
    assert sorted(server.paths()) == [f"/p/{n}" for n in range(7)]

    caller = threading.get_ident()
    threads = []
    pipeline = pool.pipeline
    pool.pipeline = lambda *args: threads.append(threading.get_ident()) or pipeline(*args)
    assert statuses(post_many(server, ["/one", "/two"], pool)) == [201, 201]
    assert threads == [caller]


def test_a_header_with_a_line_break_fails_its_request_alone(serve):
    server = serve(lambda conn, path: reply(201))
    good = {"TTL": "0"}
    requests = [
        netguard.Request(f"{server.url}/a", b"", good),
        netguard.Request(f"{server.url}/b", b"", {"TTL": "0\r\nX-Evil: 1"}),
        netguard.Request(f"{server.url}/c", b"", good),
    ]

    answers = netguard.post_many(
        requests, timeout=5.0, pool=netguard.Pool(), allow_http=True, allow_private=True
    )

    assert statuses(answers) == [201, ValueError, 201]
    assert server.paths() == ["/a", "/c"]
