"""Fixtures for the Stream-compatible calls API tests: an SDK-shaped HTTP helper and personas.

Personas (STYLE: permission tests are matrices over personas):
- `host`: a doctor of clinic-a, member of the clinic call with call role `host`;
- `patient`: a patient of clinic-a, member with the default call role `call_member`;
- `colleague`: another clinic-a doctor who is *not* a member of the call;
- `outsider`: a doctor of clinic-b;
- `loner`: a user with no team at all.
Doctors are staff of their clinic's team (`teams_role`, as `appointments` writes it): within a
team only staff create calls, ring, and see the team's users (`calls.capabilities`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from calls.capabilities import ALL_CAPABILITIES, BUILTIN_GRANTS, STAFF_TEAM_ROLE
from calls.models import CallEvent, CallUser
from calls.tokens import mint_server_token, mint_user_token
from tests.factories import CallUserFactory

CLINIC_A = "clinic-a"
CLINIC_B = "clinic-b"

# Any nanosecond timestamp after 2001-09-09; seconds or milliseconds are far smaller.
NS_FLOOR = 10**18
NS_CEILING = 10**19

STARTS_AT = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
STARTS_AT_NS = int(STARTS_AT.timestamp()) * 10**9

_DEFAULT = object()
NO_TOKEN = object()  # send no Authorization header at all


def call_path(type_name: str, call_id: str, suffix: str = "") -> str:
    """The SDK's path for a call (ids are percent-encoded like the SDK does)."""
    path = f"/api/v2/video/call/{quote(type_name, safe='')}/{quote(call_id, safe='')}"
    return f"{path}/{suffix}" if suffix else path


@dataclass
class Api:
    """Sends requests the way Stream's Python SDK does (§1.2): `?api_key=`, a bare JWT in
    `Authorization`, `stream-auth-type: jwt`, JSON bodies, and no body at all when None.

    Like gunicorn, it also passes the undecoded request target as `RAW_URI` (§1.8): the test
    client, like any WSGI server, hands Django a percent-decoded PATH_INFO."""

    client: Client
    default_token: str = field(default_factory=mint_server_token)

    def token_for(self, user: CallUser | str | None, **kwargs: Any) -> str:
        if user is None:
            return mint_server_token()
        user_id = user if isinstance(user, str) else user.id
        return mint_user_token(user_id, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        as_user: CallUser | str | None = None,
        token: Any = _DEFAULT,
        params: dict[str, Any] | None = None,
        api_key: str | object | None = _DEFAULT,
        headers: dict[str, str] | None = None,
    ):
        query: dict[str, Any] = {}
        if api_key is _DEFAULT:
            query["api_key"] = settings.CALLS_API_KEY
        elif api_key is not None:
            query["api_key"] = api_key
        query.update(params or {})
        url = f"{path}?{urlencode(query)}" if query else path
        sent_headers = {"stream-auth-type": "jwt", **(headers or {})}
        if token is _DEFAULT:
            token = self.token_for(as_user) if as_user is not None else self.default_token
        if token is not NO_TOKEN:
            sent_headers["Authorization"] = token
        data = "" if body is None else json.dumps(body)
        return self.client.generic(
            method,
            url,
            data=data,
            content_type="application/json",
            headers=sent_headers,
            RAW_URI=url,
        )

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("PATCH", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("PUT", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(client: Client) -> Api:
    return Api(client=client)


# --- assertions shared by the API tests ------------------------------------------------------


def assert_duration(body: dict[str, Any]) -> None:
    duration = body["duration"]
    assert isinstance(duration, str)
    assert duration.endswith("ms")
    float(duration.removesuffix("ms"))


def assert_error(response, status: int, code: int) -> dict[str, Any]:
    """A Stream error envelope (§1.6) with the given HTTP status and Stream code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert body["code"] == code
    assert isinstance(body["code"], int)
    assert body["StatusCode"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["more_info"], str)
    assert isinstance(body["details"], list)
    assert all(isinstance(d, int) and not isinstance(d, bool) for d in body["details"])
    assert_duration(body)
    fields = body.get("exception_fields", {})
    assert isinstance(fields, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    return body


def assert_ok(response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:800])
    body = response.json()
    assert_duration(body)
    return body


_TIMESTAMP_KEYS = frozenset(
    {
        "created_at",
        "updated_at",
        "starts_at",
        "ended_at",
        "deleted_at",
        "deactivated_at",
        "revoke_tokens_issued_before",
        "live_started_at",
        "live_ended_at",
        "started_at",
        "timer_ends_at",
        "last_active",
    }
)


def assert_ns_timestamps(data: Any, *, path: str = "$") -> int:
    """Every date-time in a response is an int of Unix nanoseconds or null (§1.5).

    Returns how many non-null timestamps were seen, so callers can check the walk found some.
    """
    seen = 0
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}"
            if key in _TIMESTAMP_KEYS or key.endswith("_at"):
                if value is None:
                    continue
                assert isinstance(value, int), f"{where} is {value!r}, not int ns"
                assert not isinstance(value, bool), where
                assert NS_FLOOR < value < NS_CEILING, f"{where}={value} is not nanoseconds"
                seen += 1
            else:
                seen += assert_ns_timestamps(value, path=where)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            seen += assert_ns_timestamps(item, path=f"{path}[{i}]")
    return seen


def caps(type_name: str, *roles: str) -> list[str]:
    """The union of BUILTIN_GRANTS for these roles, in Stream's enum order (§4.3)."""
    grants = BUILTIN_GRANTS[type_name]
    wanted = {c for role in roles for c in grants.get(role, ())}
    return [c for c in ALL_CAPABILITIES if c in wanted]


def events(cid: str, type_: str) -> list[CallEvent]:
    return list(CallEvent.objects.filter(call_cid=cid, type=type_).order_by("id"))


def query_cids(api: Api, body: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    """QueryCalls (`POST /api/v2/video/calls`) -> the cids it lists, each item fully shaped."""
    result = assert_ok(api.post("/api/v2/video/calls", body or {}, **kwargs), 201)
    for item in result["calls"]:
        assert set(item) >= {"call", "members", "own_capabilities"}
    return [item["call"]["cid"] for item in result["calls"]]


# --- query counts ----------------------------------------------------------------------------


def members_of(n: int, prefix: str) -> list[dict[str, Any]]:
    """Members for a clinic-a call of `n`: dr-host as host plus n-1 of the n clinic-a users
    `{prefix}-{i}` this creates."""
    for i in range(n):
        CallUserFactory(id=f"{prefix}-{i}", teams=[CLINIC_A])
    return [{"user_id": "dr-host", "role": "host"}] + [
        {"user_id": f"{prefix}-{i}"} for i in range(n - 1)
    ]


def measure(request: Callable[[], Any]) -> tuple[Any, int, list[str]]:
    """Run `request()`; return its response, how many queries it ran, and their SQL."""
    with CaptureQueriesContext(connection) as ctx:
        response = request()
    return response, len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]


# --- personas --------------------------------------------------------------------------------


@pytest.fixture
def host(db) -> CallUser:
    return CallUserFactory(
        id="dr-host", name="Dr Host", teams=[CLINIC_A], teams_role={CLINIC_A: STAFF_TEAM_ROLE}
    )


@pytest.fixture
def patient(db) -> CallUser:
    return CallUserFactory(id="patient-a", name="Pat A", teams=[CLINIC_A])


@pytest.fixture
def colleague(db) -> CallUser:
    return CallUserFactory(
        id="dr-colleague",
        name="Dr Colleague",
        teams=[CLINIC_A],
        teams_role={CLINIC_A: STAFF_TEAM_ROLE},
    )


@pytest.fixture
def outsider(db) -> CallUser:
    return CallUserFactory(
        id="dr-outsider",
        name="Dr Outsider",
        teams=[CLINIC_B],
        teams_role={CLINIC_B: STAFF_TEAM_ROLE},
    )


@pytest.fixture
def loner(db) -> CallUser:
    return CallUserFactory(id="loner", name="Lone User")


@pytest.fixture
def personas(host, patient, colleague, outsider, loner) -> dict[str, CallUser | None]:
    """Name -> user (None is the server)."""
    return {
        "server": None,
        "host": host,
        "patient": patient,
        "colleague": colleague,
        "outsider": outsider,
        "loner": loner,
    }


# --- calls -----------------------------------------------------------------------------------


@pytest.fixture
def create_call(api: Api) -> Callable[..., dict[str, Any]]:
    """Create a call server-side through the API; returns the GetOrCreateCall body."""

    def create(
        call_id: str,
        *,
        type_name: str = "default",
        created_by_id: str = "dr-host",
        members: list[dict[str, Any]] | None = None,
        **data: Any,
    ) -> dict[str, Any]:
        body = {"data": {"created_by_id": created_by_id, "members": members or [], **data}}
        response = api.post(call_path(type_name, call_id), body)
        result = assert_ok(response, 201)
        assert result["created"] is True
        return result

    return create


@pytest.fixture
def clinic_call(create_call, host, patient, colleague, outsider, loner) -> dict[str, Any]:
    """A `default` call of clinic-a with the doctor as host and the patient as plain member."""
    return create_call(
        "appt-1",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
        custom={"appointment_id": 1},
    )


@pytest.fixture
def appointment_call(create_call, host, patient, colleague, outsider, loner) -> dict[str, Any]:
    """An `appointment` call of clinic-a: role `user` has no grants on this type."""
    return create_call(
        "visit-1",
        type_name="appointment",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
    )
