"""The events WebSocket end to end: a real uvicorn server, real WebSocket clients (websockets'
sync client), changes made through the REST API over HTTP. The relay runs in-process
(`eager_tasks`) after each commit, as in the embedded default; the channel layer is whatever
the settings give (in-memory, or Redis when REDIS_URL is set).

Personas (clinic-a): `dr-host` (host member), `patient-a` (member), `dr-colleague` (same
clinic, not a member), `dr-outsider` (clinic-b), `loner` (no team), and the server."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from calls import realtime
from calls.models import CallEvent
from calls.outbox import relay
from calls.realtime import consumer
from tests.factories import CallUserFactory

from .realtime_server import Rest, token_for, ws_connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLINIC_A, CLINIC_B = "clinic-a", "clinic-b"
CID = "appointment:visit-1"
CALL_PATH = "/api/v2/video/call/appointment/visit-1"


@pytest.fixture
def rest(base) -> Rest:
    return Rest(base)


@pytest.fixture
def people():
    for user_id, teams in (
        ("dr-host", [CLINIC_A]),
        ("patient-a", [CLINIC_A]),
        ("dr-colleague", [CLINIC_A]),
        ("dr-outsider", [CLINIC_B]),
        ("loner", []),
    ):
        CallUserFactory(id=user_id, teams=teams)


@pytest.fixture
def visit(rest, people) -> dict:
    """An appointment call of clinic-a: only members may read it."""
    return rest.request(
        "POST",
        CALL_PATH,
        {
            "data": {
                "created_by_id": "dr-host",
                "team": CLINIC_A,
                "members": [{"user_id": "dr-host", "role": "host"}, {"user_id": "patient-a"}],
            }
        },
    )


def event_ids(cid: str = CID) -> list[int]:
    return list(CallEvent.objects.filter(call_cid=cid).order_by("pk").values_list("pk", flat=True))


def test_a_rest_change_reaches_a_subscriber_as_the_stream_event(base, rest, visit):
    with ws_connect(base, user_id="dr-host") as ws:
        subscribed = ws.subscribe(CID)
        assert subscribed["last_event_id"] == event_ids()[-1]  # call.created: not replayed
        rest.request("PATCH", CALL_PATH, {"custom": {"room": "3"}}, as_user="dr-host")
        message = ws.expect("event")
    event = message["event"]
    assert message["id"] == event_ids()[-1]
    assert event["type"] == "call.updated"
    assert event["call_cid"] == CID
    assert event["call"]["cid"] == CID
    assert event["call"]["custom"] == {"room": "3"}
    assert isinstance(event["created_at"], int)
    assert event["created_at"] > 10**18  # int nanoseconds, as on the wire everywhere
    assert set(event["capabilities_by_role"]) >= {"host", "call_member"}
    assert event == CallEvent.objects.get(pk=message["id"]).payload


@pytest.mark.parametrize(
    ("persona", "allowed"),
    [
        (None, True),  # server token: sees everything
        ("dr-host", True),
        ("patient-a", True),
        ("dr-colleague", False),  # same clinic, not a member: no read-call on appointments
        ("dr-outsider", False),
        ("loner", False),
    ],
)
def test_who_may_subscribe_to_a_call_is_who_may_get_it(base, rest, visit, persona, allowed):
    with ws_connect(base, user_id=persona) as ws:
        ws.send({"type": "subscribe", "cid": CID})
        answer = ws.recv()
        if allowed:
            assert answer["type"] == "subscribed"
        else:
            assert answer == {
                "type": "error",
                "code": 17,
                "message": f"user {persona} is not allowed to read call {CID}",
                "cid": CID,
            }
        rest.request("POST", f"{CALL_PATH}/go_live")
        if allowed:
            assert ws.expect("event")["event"]["type"] == "call.live_started"
        else:
            ws.nothing()


def test_a_user_of_another_team_receives_nothing(base, rest, visit):
    with ws_connect(base, user_id="dr-outsider") as ws:
        ws.send({"type": "subscribe_team", "team": CLINIC_A})
        assert ws.expect("error")["code"] == 17
        ws.send({"type": "subscribe", "cid": CID, "last_event_id": 0})
        assert ws.expect("error")["code"] == 17
        ws.send({"type": "subscribe_team", "team": CLINIC_B})
        assert ws.expect("subscribed")["team"] == CLINIC_B
        rest.request("PATCH", CALL_PATH, {"custom": {"x": 1}})
        rest.request("POST", f"{CALL_PATH}/go_live")
        ws.nothing()


def test_unknown_call_is_not_found(base, people):
    with ws_connect(base, user_id="dr-host") as ws:
        ws.send({"type": "subscribe", "cid": "appointment:nope"})
        assert ws.expect("error")["code"] == 16


def test_reconnecting_with_the_last_id_replays_what_was_missed_in_order(base, rest, visit):
    with ws_connect(base, user_id="dr-host") as ws:
        ws.subscribe(CID)
        rest.request("PATCH", CALL_PATH, {"custom": {"step": 1}})
        last_seen = ws.expect("event")["id"]
    # Offline: three changes.
    rest.request("POST", f"{CALL_PATH}/go_live")
    rest.request("PATCH", CALL_PATH, {"custom": {"step": 2}})
    rest.request("POST", f"{CALL_PATH}/members", {"update_members": [{"user_id": "dr-colleague"}]})
    missed = [i for i in event_ids() if i > last_seen]
    assert len(missed) == 3
    with ws_connect(base, user_id="dr-host") as ws:
        ws.send({"type": "subscribe", "cid": CID, "last_event_id": last_seen})
        replayed = ws.events(3)
        subscribed = ws.expect("subscribed")
        rest.request("POST", f"{CALL_PATH}/mark_ended")
        live = ws.expect("event")
    assert [m["id"] for m in replayed] == missed
    assert [m["event"]["type"] for m in replayed] == [
        "call.live_started",
        "call.updated",
        "call.member_added",
    ]
    assert subscribed["replayed"] == 3
    assert subscribed["last_event_id"] == missed[-1]
    assert live["event"]["type"] == "call.ended"
    assert live["id"] == event_ids()[-1] > missed[-1]


def test_a_removed_member_stops_receiving(base, rest, visit):
    with ws_connect(base, user_id="patient-a") as ws:
        ws.subscribe(CID)
        rest.request("POST", f"{CALL_PATH}/members", {"remove_members": ["patient-a"]})
        removed = ws.expect("event")["event"]
        assert removed["type"] == "call.member_removed"
        assert removed["members"] == ["patient-a"]
        assert ws.expect("unsubscribed") == {
            "type": "unsubscribed",
            "cid": CID,
            "code": 17,
            "message": f"user patient-a may no longer read call {CID}",
        }
        rest.request("POST", f"{CALL_PATH}/go_live")
        ws.nothing()


def test_a_blocked_member_stops_receiving(base, rest, visit):
    with ws_connect(base, user_id="patient-a") as ws:
        ws.subscribe(CID)
        rest.request("POST", f"{CALL_PATH}/block", {"user_id": "patient-a"})
        blocked = ws.expect("event")["event"]
        assert blocked["type"] == "call.blocked_user"
        assert blocked["user"]["id"] == "patient-a"
        assert ws.expect("unsubscribed")["message"] == (
            f"user patient-a may no longer read call {CID}"
        )
        rest.request("POST", f"{CALL_PATH}/go_live")
        ws.nothing()


def test_a_team_subscription_gets_the_team_calls_the_user_may_read(base, rest, visit):
    with ws_connect(base, user_id="dr-host") as ws:
        ws.send({"type": "subscribe_team", "team": CLINIC_A})
        ws.expect("subscribed")
        # A clinic-a appointment without dr-host: not readable for them.
        rest.request(
            "POST",
            "/api/v2/video/call/appointment/visit-2",
            {"data": {"created_by_id": "dr-colleague", "team": CLINIC_A}},
        )
        rest.request("POST", "/api/v2/video/call/appointment/visit-2/go_live")
        rest.request("POST", f"{CALL_PATH}/go_live")
        message = ws.expect("event")
        assert message["event"]["type"] == "call.live_started"
        assert message["event"]["call_cid"] == CID
        ws.nothing()
        # Added to visit-2: its events come from now on (the member_added one first).
        rest.request(
            "POST",
            "/api/v2/video/call/appointment/visit-2/members",
            {"update_members": [{"user_id": "dr-host"}]},
        )
        added = ws.expect("event")["event"]
        assert (added["type"], added["call_cid"]) == ("call.member_added", "appointment:visit-2")


def test_a_team_reconnect_replays_the_team_events_after_the_last_id(base, rest, visit):
    last = event_ids()[-1]
    rest.request("POST", f"{CALL_PATH}/go_live")
    rest.request("POST", f"{CALL_PATH}/mark_ended")
    with ws_connect(base, user_id="dr-host") as ws:
        ws.send({"type": "subscribe_team", "team": CLINIC_A, "last_event_id": last})
        types = [m["event"]["type"] for m in ws.events(2)]
        assert ws.expect("subscribed")["replayed"] == 2
    assert types == ["call.live_started", "call.ended"]


@pytest.mark.parametrize("subscription", ["call", "team"])
def test_an_event_the_relay_failed_to_publish_is_filled_in_before_the_next(
    base, rest, visit, monkeypatch, subscription
):
    """The outbox, not the channel layer, is the source: a lost live message is read back."""
    real_publish = realtime.publish
    dropped: list[int] = []

    def lossy(event):
        if event.type == "call.live_started":
            dropped.append(event.pk)
            return
        real_publish(event)

    monkeypatch.setattr("calls.realtime.publish", lossy)
    relay._load.cache_clear()
    try:
        with ws_connect(base, user_id="dr-host") as ws:
            if subscription == "call":
                ws.subscribe(CID)
            else:
                ws.send({"type": "subscribe_team", "team": CLINIC_A})
                ws.expect("subscribed")
            rest.request("POST", f"{CALL_PATH}/go_live")
            ws.nothing()
            rest.request("PATCH", CALL_PATH, {"custom": {"after": "gap"}})
            first, second = ws.events(2)
    finally:
        relay._load.cache_clear()
    assert first["id"] == dropped[0]
    assert first["event"]["type"] == "call.live_started"
    assert second["event"]["type"] == "call.updated"
    assert second["id"] > first["id"]


def test_a_user_who_leaves_the_team_loses_its_team_subscription(base, rest, visit):
    with ws_connect(base, user_id="dr-host") as ws:
        ws.send({"type": "subscribe_team", "team": CLINIC_A})
        ws.expect("subscribed")
        rest.request(
            "POST", "/api/v2/users", {"users": {"dr-host": {"id": "dr-host", "teams": []}}}
        )
        gone = ws.expect("unsubscribed")
        assert (gone["team"], gone["code"]) == (CLINIC_A, 17)
        rest.request("POST", f"{CALL_PATH}/go_live")
        ws.nothing()


# --- authentication and origin ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda: token_for("dr-host", expires_in=-60), 40),  # expired
        (lambda: token_for("dr-host")[:-4] + "AAAA", 43),  # signature
        (lambda: "not-a-jwt", 5),
        (lambda: token_for("nobody-like-this"), 5),  # unknown user
    ],
    ids=["expired", "bad-signature", "garbled", "unknown-user"],
)
def test_a_bad_token_closes_the_connection_with_its_code(base, people, make_token, code):
    with ws_connect(base, token=make_token(), expect_connected=False) as ws:
        received, close_code = ws.closed_with()
    assert [m["type"] for m in received] == ["error"]
    assert received[0]["code"] == code
    assert received[0]["message"].startswith("JWTAuth error")
    assert close_code == 4000 + code


def test_a_wrong_api_key_is_refused(base, people):
    with ws_connect(base, user_id="dr-host", api_key="wrong", expect_connected=False) as ws:
        received, close_code = ws.closed_with()
    assert received[0]["code"] == 2
    assert close_code == 4002


def test_the_token_may_come_as_the_first_message(base, rest, visit):
    with ws_connect(base, user_id="dr-host", in_url=False, expect_connected=False) as ws:
        ws.send({"type": "subscribe", "cid": CID})  # before auth: refused and closed
        received, close_code = ws.closed_with()
        assert (received[0]["code"], close_code) == (5, 4005)
    with ws_connect(base, user_id="dr-host", in_url=False, expect_connected=False) as ws:
        ws.send({"type": "auth", "token": token_for("dr-host")})
        assert ws.expect("connected")["user_id"] == "dr-host"
        ws.subscribe(CID)
        rest.request("POST", f"{CALL_PATH}/go_live")
        assert ws.expect("event")["event"]["type"] == "call.live_started"


def test_no_token_within_the_auth_timeout_closes(base, people, monkeypatch):
    monkeypatch.setattr(consumer, "AUTH_TIMEOUT_S", 0.2)
    with ws_connect(base, user_id="dr-host", in_url=False, expect_connected=False) as ws:
        received, close_code = ws.closed_with()
    assert (received[0]["code"], close_code) == (5, 4005)


def test_the_connection_closes_when_the_token_expires(base, people, settings):
    settings.CALLS_TOKEN_LEEWAY_SECONDS = 0
    # 3 s: long enough for the connection to be set up on a loaded machine first.
    with ws_connect(base, token=token_for("dr-host", expires_in=3)) as ws:
        # The server closes it (code 40 / 4040 names the expiry), not the client's wait.
        received, close_code = ws.closed_with(timeout=10)
    assert (received[0]["code"], close_code) == (40, 4040)


def test_malformed_messages_get_an_error_and_the_connection_stays(base, people):
    with ws_connect(base, user_id="dr-host") as ws:
        ws.conn.send("{not json")
        assert ws.expect("error")["code"] == 4
        ws.send({"type": "subscribe", "cid": CID, "last_event_id": "12"})
        assert ws.expect("error")["code"] == 4
        ws.send({"type": "ping"})
        assert ws.expect("pong") == {"type": "pong"}


def test_browsers_of_another_origin_are_refused_at_the_handshake(base, people):
    with (
        pytest.raises(InvalidStatus) as refused,
        ws_connect(base, user_id="dr-host", origin="https://evil.example"),
    ):
        pass
    assert refused.value.response.status_code == 403


def test_the_page_own_origin_and_listed_origins_are_allowed(base, people, settings):
    with ws_connect(base, user_id="dr-host", origin=f"http://{base}") as ws:
        ws.send({"type": "ping"})
        ws.expect("pong")
    settings.CALLS_WS_ALLOWED_ORIGINS = ["https://app.example"]
    with ws_connect(base, user_id="dr-host", origin="https://app.example") as ws:
        ws.send({"type": "ping"})
        ws.expect("pong")


def test_publish_without_a_websocket_server_is_a_no_op(people, eager_tasks):
    """The relay may run where no socket was ever opened (a worker, a test): quiet."""
    CallUserFactory(id="dr-solo")
    from calls.capabilities import SERVER
    from calls.services.calls import call_get_or_create

    call_get_or_create(actor=SERVER, type_name="default", call_id="solo", created_by_id="dr-solo")
    event = CallEvent.objects.get(call_cid="default:solo")
    realtime.publish(event)  # no exception, whatever the layer


def test_a_change_made_outside_the_web_server_reaches_subscribers(base, visit):
    """The scheduler thread (embedded) or a Celery worker relays too: publish from a plain
    thread with no event loop of its own."""
    from calls.capabilities import SERVER
    from calls.services.live import call_go_live

    with ws_connect(base, user_id="patient-a") as ws:
        ws.subscribe(CID)
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        assert ws.expect("event")["event"]["type"] == "call.live_started"


def test_an_idle_connection_outlives_the_channel_layer_blocking_read(base, rest, visit):
    """channels-redis blocks 5 s per read; redis-py 8's default socket timeout is also 5 s,
    which used to kill every idle connection (settings.CHANNEL_LAYERS sets a longer one)."""
    with ws_connect(base, user_id="dr-host") as ws:
        ws.subscribe(CID)
        ws.nothing(within=6.5)
        rest.request("POST", f"{CALL_PATH}/go_live")
        assert ws.expect("event")["event"]["type"] == "call.live_started"
