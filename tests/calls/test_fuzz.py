"""A JSON fuzz of every calls-API write endpoint and every socket message type: NaN, Infinity,
deep nesting, huge strings, wrong types, NUL characters, lone surrogates, invalid UTF-8 and
wrong content types. Never a 5xx (every error is Stream's envelope), never a socket closed by
the server with 1011 (an unhandled exception).

The endpoints come from `calls.api.urls` and the message types from the consumers' own
dispatch, so a new endpoint or message type is fuzzed without touching this file. Examples
are drawn by hypothesis with a fixed seed per endpoint (the same examples on every run, other
examples for each endpoint) and bounded."""

from __future__ import annotations

import inspect
import json
import re
import zlib
from contextlib import ExitStack
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework import serializers as drf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from calls.api import serializers as request_shapes
from calls.api import urls
from calls.capabilities import SERVER
from calls.realtime.consumer import EventsConsumer
from calls.realtime.rtc import RtcConsumer
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.factories import CallUserFactory

from .api.conftest import CLINIC_A, Api
from .realtime_server import RECV_TIMEOUT_S, token_for

FUZZ = hypothesis_settings(
    max_examples=15,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

PATH_VALUES = {"type": "default", "id": "fuzz-1", "name": "fuzz-type", "rest": "pin"}
WRITE_METHODS = ("post", "put", "patch", "delete")


def write_endpoints() -> list[tuple[str, str]]:
    """(method, path) of every write the calls API routes, from its urlpatterns."""
    found = []
    for pattern in urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view = pattern.callback.view_class
        route = str(pattern.pattern).lstrip("^").rstrip("$")
        route = route.replace(".*", "fuzz")
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: PATH_VALUES[m.group(1)], route)
        found += [(method, path) for method in WRITE_METHODS if hasattr(view, method)]
    return found


ENDPOINTS = write_endpoints()


def _field_names(serializer: type[drf.Serializer]) -> set[str]:
    names = set()
    for name, field in serializer().fields.items():
        names.add(name)
        child = getattr(field, "child", None) or field
        if isinstance(child, drf.Serializer):
            names |= _field_names(type(child))
    return names


# Every field name the request shapes know: fuzzed bodies reach real fields, not just extras.
FIELDS = sorted(
    set().union(
        *(
            _field_names(cls)
            for _, cls in inspect.getmembers(request_shapes, inspect.isclass)
            if issubclass(cls, drf.Serializer) and cls.__module__ == request_shapes.__name__
        )
    )
    | {"$eq", "$in", "$and", "$or", "$gt", "field", "direction", "backstage", "limits"}
)

NASTY_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff x",
    "x" * 6_000,
    "dr-host",
    "patient-a",
    "fuzz-1",
    "default",
    "default:fuzz-1",
    "host",
    "admin",
    "call_member",
    "2026-05-01T09:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "-1",
    "1e999",
    "../../etc",
    "a/b",
    "🙂" * 20,
]

# The values this fuzz is about, drawn as often as all the others together.
nasty = st.sampled_from(
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        "\x00",
        "a\x00b",
        "\ud800",
        2**64,
        -(2**63) - 1,
        10**30,
        "x" * 6_000,
    ]
)
scalars = st.one_of(
    nasty,
    nasty,
    nasty,
    nasty,
    nasty,
    nasty,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(NASTY_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=16,
)
objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=4)
# Mostly-valid shapes too, so that nasty values reach what stores and sends them.
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.fixed_dictionaries(
        {"custom": objects},
        optional={"user_id": st.sampled_from(["dr-host", "patient-a"]), "starts_at": scalars},
    ),
    st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"created_by_id": st.just("dr-host"), "custom": objects})},
        optional={"ring": st.booleans(), "members_limit": scalars},
    ),
    st.fixed_dictionaries(
        {
            "users": st.fixed_dictionaries(
                {"new-1": st.fixed_dictionaries({"id": st.just("new-1"), "custom": objects})}
            )
        }
    ),
)


def deep(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


# Bodies no JSON encoder makes: each one is sent to every endpoint as is.
RAW_BODIES: list[tuple[bytes, str]] = [
    (deep(100_000).encode(), "application/json"),
    (('{"custom": ' + deep(5_000, "{}") + "}").encode(), "application/json"),
    (('{"custom": {"x": ' + deep(1_000) + "}}").encode(), "application/json"),
    (b"NaN", "application/json"),
    (b'{"custom": {"x": NaN}, "data": {"custom": {"y": Infinity}}}', "application/json"),
    (b'{"custom": {"x": -Infinity}, "limit": 1e400}', "application/json"),
    (b'{"custom": {"x": "' + b"x" * (2 * 2**20) + b'"}}', "application/json"),
    (b" " * (3 * 2**20), "application/json"),
    (b'{"custom": {"x": "\\u0000"}, "user_id": "a\\u0000"}', "application/json"),
    (
        b'{"data": {"members": [{"user_id": "\\u0000", "custom": {"\\u0000": 1}}]}}',
        "application/json",
    ),
    (b'{"custom": {"x": "\\ud800"}}', "application/json"),
    (b'{"custom": {"x": "\xff\xfe"}}', "application/json"),
    (b"\x00", "application/json"),
    (b'{"custom": {"x": 1}}', "text/plain"),
    (b"a=1&custom=2", "application/x-www-form-urlencoded"),
    (
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
    (b"", "application/json"),
    (b"[]", "application/json"),
    (b'"a string"', "application/json"),
]


def the_call() -> None:
    """default:fuzz-1 of clinic-a: dr-host (host) and patient-a are members."""
    for user_id in ("dr-host", "patient-a", "dr-other"):
        CallUserFactory(id=user_id, teams=[CLINIC_A])
    call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id="fuzz-1",
        created_by_id="dr-host",
        team=CLINIC_A,
        members=[MemberSpec(user_id="dr-host", role="host"), MemberSpec(user_id="patient-a")],
    )


@pytest.fixture
def api(client) -> Api:
    return Api(client=client)


@pytest.fixture
def world(db, api):
    the_call()
    assert api.post("/api/v2/video/calltypes", {"name": "fuzz-type"}).status_code == 201


def check(response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:300])
    if response.status_code >= 400:
        body = response.json()
        assert {"code", "message", "StatusCode", "duration", "more_info", "details"} <= set(body)
        assert body["StatusCode"] == response.status_code


def send(api, method: str, path: str, content: bytes, content_type: str, as_user: str | None):
    return api.client.generic(
        method.upper(),
        f"{path}?api_key={settings.CALLS_API_KEY}",
        data=content,
        content_type=content_type,
        headers={"Authorization": api.token_for(as_user), "stream-auth-type": "jwt"},
    )


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_raw_bodies_never_give_a_5xx(api, world, method, path):
    for content, content_type in RAW_BODIES:
        response = send(api, method, path, content, content_type, None)
        check(response, (method, path, content[:60], content_type))


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_fuzzed_json_never_gives_a_5xx(api, world, method, path):
    @FUZZ
    @seed(zlib.crc32(f"{method} {path}".encode()))
    @given(body=bodies, as_user=st.sampled_from([None, None, "dr-host", "patient-a"]))
    def run(body: dict[str, Any], as_user: str | None) -> None:
        content = json.dumps(body, allow_nan=True).encode()
        check(send(api, method, path, content, "application/json", as_user), (method, path, body))

    run()


def test_fuzzed_query_payloads_never_give_a_5xx(api, world):
    @FUZZ
    @seed(1)
    @given(body=bodies)
    def run(body: dict[str, Any]) -> None:
        payload = json.dumps(body, allow_nan=True)
        response = api.get("/api/v2/users", params={"payload": payload})
        check(response, ("payload", body))

    run()


def test_every_write_endpoint_is_fuzzed():
    """The enumeration finds the endpoints (a broken one would fuzz nothing)."""
    paths = {path for _, path in ENDPOINTS}
    assert "/api/v2/video/call/default/fuzz-1/event" in paths
    assert "/api/v2/users" in paths
    assert len(ENDPOINTS) >= 25


# --- the sockets -----------------------------------------------------------------------------


def message_types(consumer: type) -> list[str]:
    """The `type`s a consumer's `receive_json` dispatches on, read from its source."""
    source = inspect.getsource(consumer.receive_json)
    kinds = set(re.findall(r'kind == "(\w+)"', source))
    for group in re.findall(r"kind in \(([^)]*)\)", source):
        kinds |= set(re.findall(r'"(\w+)"', group))
    return sorted(kinds)


SOCKET_FIELDS = [
    "cid",
    "team",
    "last_event_id",
    "token",
    "api_key",
    "call_cid",
    "user_session_id",
    "audio",
    "video",
    "to",
    "data",
]
socket_values = st.one_of(json_values, st.sampled_from(["default:fuzz-1", CLINIC_A]))


def frames(kinds: list[str]):
    return st.one_of(
        st.builds(
            lambda kind, extra: json.dumps({**extra, "type": kind}, allow_nan=True),
            st.sampled_from([*kinds, "nope"]),
            st.dictionaries(st.sampled_from(SOCKET_FIELDS), socket_values, max_size=4),
        ),
        st.sampled_from(
            [
                deep(50_000),
                '{"type": "ping", "x": NaN}',
                '{"type": "subscribe", "cid": "\\u0000"}',
                '{"type": "subscribe", "cid": "\\ud800"}',
                '{"type": 1}',
                "[]",
                "null",
                "garbage",
            ]
        ),
        st.binary(max_size=16),
    )


class Conversation:
    """One socket kept open across examples; reopened (and re-joined) when the server closes
    it for a reason of its own, and any close with 1011 is a failure."""

    def __init__(self, url: str, opening: list[dict[str, Any]]) -> None:
        self.url, self.opening = url, opening
        self.conn: Any = None
        self.stack: ExitStack | None = None
        self.closes: list[int | None] = []

    def open(self) -> None:
        self.close()
        self.stack = ExitStack()
        self.conn = self.stack.enter_context(
            connect(self.url, open_timeout=RECV_TIMEOUT_S, max_size=None)
        )
        for message in self.opening:
            self.conn.send(json.dumps(message))

    def exchange(self, frame: str | bytes) -> None:
        if self.conn is None:
            self.open()
        try:
            self.conn.send(frame)
            self.conn.send(json.dumps({"type": "ping"}))
            while json.loads(self.conn.recv(timeout=RECV_TIMEOUT_S)).get("type") != "pong":
                pass
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            self.closes.append(code)
            assert code != 1011, f"the server failed on {frame[:200]!r}"
            assert code is not None, f"the connection dropped on {frame[:200]!r}"
            self.close()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        self.stack = self.conn = None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_fuzzed_events_socket_messages_never_fail_the_server(base):
    the_call()
    kinds = message_types(EventsConsumer)
    assert {"auth", "subscribe", "subscribe_team", "ping"} <= set(kinds)
    token = token_for("dr-host")
    url = f"ws://{base}/ws/v1/events?api_key={settings.CALLS_API_KEY}&token={token}"
    talk = Conversation(url, [{"type": "subscribe", "cid": "default:fuzz-1"}])

    @hypothesis_settings(FUZZ, max_examples=150)
    @seed(2)
    @given(frame=frames(kinds))
    def run(frame: str | bytes) -> None:
        talk.exchange(frame)

    try:
        run()
    finally:
        talk.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_fuzzed_call_socket_messages_never_fail_the_server(base):
    the_call()
    kinds = message_types(RtcConsumer)
    assert {"join", "signal", "media_state", "leave", "ping"} <= set(kinds)
    join = {"type": "join", "token": token_for("dr-host"), "call_cid": "default:fuzz-1"}
    talk = Conversation(f"ws://{base}/ws/v1/rtc", [join])
    peer = Conversation(
        f"ws://{base}/ws/v1/rtc",
        [{"type": "join", "token": token_for("patient-a"), "call_cid": "default:fuzz-1"}],
    )
    peer.open()

    @hypothesis_settings(FUZZ, max_examples=150)
    @seed(3)
    @given(frame=frames([k for k in kinds if k not in ("end_call",)]))
    def run(frame: str | bytes) -> None:
        talk.exchange(frame)

    try:
        run()
        # Ending the call is a message type too: last, as nothing can join after it.
        talk.exchange(json.dumps({"type": "end_call"}))
    finally:
        talk.close()
        peer.close()
