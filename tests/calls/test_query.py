"""QueryCalls / QueryCallMembers filters, sorting, tenancy, read-call and cursors
(calls.filters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from calls.capabilities import SERVER, Actor
from calls.errors import InputError
from calls.filters import calls_query, members_query
from calls.models import Call, CallMember, CallType, CallUser
from tests.factories import CallFactory, CallMemberFactory, CallUserFactory

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def at(call: Call, **fields: Any) -> Call:
    """Set auto_now fields (created_at / updated_at) and friends without save()'s auto_now."""
    Call.objects.filter(pk=call.pk).update(**fields)
    call.refresh_from_db()
    return call


def ids(rows: list[Call]) -> list[str]:
    return [c.call_id for c in rows]


def query_ids(filter_conditions: dict[str, Any] | None, actor: Actor = SERVER, **kw: Any) -> set:
    rows, _, _ = calls_query(actor=actor, filter_conditions=filter_conditions, sort=None, **kw)
    return set(ids(rows))


def user_actor(user: CallUser, *teams: str, call_cids: frozenset[str] = frozenset()) -> Actor:
    return Actor(user=user, teams=frozenset(teams), call_cids=call_cids)


@pytest.fixture
def calls() -> dict[str, Call]:
    alice = CallUserFactory(id="alice")
    bob = CallUserFactory(id="bob")
    livestream = CallType.objects.get(name="livestream")
    c1 = CallFactory(call_id="c1", created_by=alice, team="clinic-a", starts_at=T0)
    c2 = CallFactory(
        call_id="c2",
        created_by=bob,
        team="clinic-b",
        starts_at=T0 + timedelta(hours=1),
        backstage=True,
        custom={"room": "blue", "floor": 2},
    )
    c3 = CallFactory(
        call_id="c3",
        type=livestream,
        created_by=alice,
        team=None,
        starts_at=None,
        ended_at=T0 + timedelta(hours=3),
        current_session_id="sess-1",
        custom={"room": "red"},
    )
    for n, c in enumerate((c1, c2, c3)):
        at(c, created_at=T0 - timedelta(days=3 - n), updated_at=T0 - timedelta(days=3 - n))
    CallMemberFactory(call=c1, user=alice)
    CallMemberFactory(call=c1, user=bob)
    CallMemberFactory(call=c2, user=bob)
    return {"c1": c1, "c2": c2, "c3": c3}


# --- operators ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filter_conditions", "expected"),
    [
        ({}, {"c1", "c2", "c3"}),
        ({"id": "c1"}, {"c1"}),
        ({"id": {"$eq": "c2"}}, {"c2"}),
        ({"id": {"$ne": "c2"}}, {"c1", "c3"}),
        ({"id": {"$in": ["c1", "c3", "nope"]}}, {"c1", "c3"}),
        ({"id": {"$nin": ["c1"]}}, {"c2", "c3"}),
        ({"id": {"$gt": "c1"}}, {"c2", "c3"}),
        ({"id": {"$gte": "c2", "$lt": "c3"}}, {"c2"}),
        ({"id": {"$lte": "c2"}}, {"c1", "c2"}),
        ({"cid": "livestream:c3"}, {"c3"}),
        ({"cid": {"$in": ["default:c1", "default:c2"]}}, {"c1", "c2"}),
        ({"type": "livestream"}, {"c3"}),
        ({"type": {"$ne": "livestream"}}, {"c1", "c2"}),
        ({"created_by_user_id": "alice"}, {"c1", "c3"}),
        ({"created_by_user_id": {"$nin": ["alice"]}}, {"c2"}),
        ({"team": "clinic-a"}, {"c1"}),
        ({"team": None}, {"c3"}),
        ({"team": {"$ne": "clinic-a"}}, {"c2", "c3"}),  # NULL is "not equal" too
        ({"team": {"$nin": ["clinic-b"]}}, {"c1", "c3"}),
        ({"team": {"$exists": True}}, {"c1", "c2"}),
        ({"team": {"$exists": False}}, {"c3"}),
        ({"starts_at": {"$exists": False}}, {"c3"}),
        ({"ended_at": {"$exists": True}}, {"c3"}),
        ({"backstage": True}, {"c2"}),
        ({"backstage": {"$eq": False}}, {"c1", "c3"}),
        ({"ongoing": True}, {"c3"}),
        ({"ongoing": {"$eq": False}}, {"c1", "c2"}),
        ({"members": {"$in": ["bob"]}}, {"c1", "c2"}),
        ({"members": {"$in": ["alice", "nobody"]}}, {"c1"}),
        ({"members": {"$in": []}}, set()),
        ({"custom.room": "blue"}, {"c2"}),
        ({"custom.room": {"$in": ["blue", "red"]}}, {"c2", "c3"}),
        ({"custom.room": {"$ne": "blue"}}, {"c1", "c3"}),  # a missing key is "not equal"
        ({"custom.room": {"$nin": ["red"]}}, {"c1", "c2"}),
        ({"custom.room": {"$gt": "c"}}, {"c3"}),
        ({"custom.floor": {"$gte": 2}}, {"c2"}),
        ({"custom.floor": {"$lt": 2}}, set()),
        ({"custom.floor": {"$exists": True}}, {"c2"}),
        ({"custom.floor": {"$exists": False}}, {"c1", "c3"}),
        ({"custom.contains": {"$exists": False}}, {"c1", "c2", "c3"}),  # a key, not a lookup
        # Several keys are AND-ed; $and / $or / $nor nest.
        ({"created_by_user_id": "alice", "team": "clinic-a"}, {"c1"}),
        ({"$or": [{"id": "c1"}, {"backstage": True}]}, {"c1", "c2"}),
        ({"$and": [{"created_by_user_id": "alice"}, {"ongoing": True}]}, {"c3"}),
        ({"$nor": [{"id": "c1"}, {"id": "c2"}]}, {"c3"}),
        (
            {"$or": [{"$and": [{"team": "clinic-a"}, {"id": "c1"}]}, {"type": "livestream"}]},
            {"c1", "c3"},
        ),
        ({"$or": [{"id": "c1"}, {"id": "c2"}], "team": "clinic-b"}, {"c2"}),
    ],
)
def test_filter_operators(calls, filter_conditions, expected):
    assert query_ids(filter_conditions) == expected


@pytest.mark.django_db
def test_members_in_returns_each_call_once(calls):
    rows, _, _ = calls_query(
        actor=SERVER, filter_conditions={"members": {"$in": ["alice", "bob"]}}, sort=None
    )
    assert ids(rows) == ["c2", "c1"]  # both match c1: still one row


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-05-01T09:00:00Z", {"c2"}),
        ("2026-05-01T09:00:00+00:00", {"c2"}),
        ("2026-05-01T11:00:00+02:00", {"c2"}),  # the same instant
        ("2026-05-01T09:00:00", {"c2"}),  # naive = UTC
        ("2026-05-01T09:00:00.000000001Z", {"c2"}),  # nanoseconds are truncated
        ("2026-05-01T08:59:59.999999Z", {"c1", "c2"}),
        ("2026-05-01T10:00:00-01:00", set()),  # 11:00 UTC
        (int(T0.timestamp()) * 10**9, {"c2"}),  # int Unix nanoseconds
    ],
)
def test_datetime_values(calls, value, expected):
    assert query_ids({"starts_at": {"$gt": value}}) == expected


@pytest.mark.django_db
def test_datetime_operators(calls):
    day = timedelta(days=1)
    iso = (T0 - 2 * day).isoformat()
    assert query_ids({"created_at": iso}) == {"c2"}
    assert query_ids({"created_at": {"$gte": iso}}) == {"c2", "c3"}
    assert query_ids({"created_at": {"$lt": iso}}) == {"c1"}
    assert query_ids({"created_at": {"$lte": iso}}) == {"c1", "c2"}
    assert query_ids({"updated_at": {"$ne": iso}}) == {"c1", "c3"}
    assert query_ids({"starts_at": {"$in": ["2026-05-01T10:00:00Z"]}}) == {"c2"}
    assert query_ids({"starts_at": {"$ne": "2026-05-01T09:00:00Z"}}) == {"c2", "c3"}
    assert query_ids({"ended_at": {"$lte": "2026-05-01T12:00:00Z"}}) == {"c3"}
    assert (
        query_ids(
            {"$and": [{"starts_at": {"$gte": "2026-05-01T00:00:00Z"}}, {"starts_at": {"$lt": iso}}]}
        )
        == set()
    )


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filter_conditions", "field"),
    [
        ({"colour": "red"}, "filter_conditions.colour"),
        ({"id": {"$regex": "c.*"}}, "filter_conditions.id"),
        ({"$xor": [{"id": "c1"}]}, "filter_conditions.$xor"),
        ({"id": 5}, "filter_conditions.id"),
        ({"id": {"$in": "c1"}}, "filter_conditions.id"),
        ({"id": {"$in": ["c1", 2]}}, "filter_conditions.id"),
        ({"id": None}, "filter_conditions.id"),
        ({"id": {}}, "filter_conditions.id"),
        ({"starts_at": "yesterday"}, "filter_conditions.starts_at"),
        ({"starts_at": {"$gt": None}}, "filter_conditions.starts_at"),
        ({"created_at": True}, "filter_conditions.created_at"),
        ({"team": {"$exists": "yes"}}, "filter_conditions.team"),
        ({"backstage": "true"}, "filter_conditions.backstage"),
        ({"backstage": {"$ne": True}}, "filter_conditions.backstage"),
        ({"ongoing": {"$in": [True]}}, "filter_conditions.ongoing"),
        ({"members": {"$nin": ["bob"]}}, "filter_conditions.members"),
        ({"members": {"$in": "bob"}}, "filter_conditions.members"),
        ({"custom.a__b": "x"}, "filter_conditions.custom.a__b"),
        ({"custom.room": {"$in": [["x"]]}}, "filter_conditions.custom.room"),
        ({"$and": {"id": "c1"}}, "filter_conditions.$and"),
        ({"$or": []}, "filter_conditions.$or"),
        ({"$and": [{"id": "c1"}, {"nope": 1}]}, "filter_conditions.nope"),
    ],
)
def test_invalid_filters_name_the_field(filter_conditions, field):
    with pytest.raises(InputError) as exc:
        calls_query(actor=SERVER, filter_conditions=filter_conditions, sort=None)
    assert field in exc.value.fields
    assert exc.value.status == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sort", "limit", "field"),
    [
        ([{"field": "team", "direction": 1}], 25, "sort.team"),
        ([{"field": "id", "direction": 0}], 25, "sort.id"),
        ([{"field": "id"}, {"field": "id", "direction": -1}], 25, "sort.id"),
        ([{"field": "id"}, {"field": "cid"}, {"field": "type"}], 25, "sort"),
        ([{"direction": 1}], 25, "sort"),
        (None, 101, "limit"),
        (None, -1, "limit"),
    ],
)
def test_invalid_sort_and_limit(sort, limit, field):
    with pytest.raises(InputError) as exc:
        calls_query(actor=SERVER, filter_conditions=None, sort=sort, limit=limit)
    assert field in exc.value.fields


# --- tenancy (§6.1) and read-call -------------------------------------------------------------


@pytest.fixture
def tenants() -> dict[str, Any]:
    a1 = CallFactory(call_id="a1", team="clinic-a")
    a2 = CallFactory(call_id="a2", team="clinic-a")
    b1 = CallFactory(call_id="b1", team="clinic-b")
    n1 = CallFactory(call_id="n1", team=None)
    return {
        "calls": (a1, a2, b1, n1),
        "user_a": user_actor(CallUserFactory(id="doc-a", teams=["clinic-a"]), "clinic-a"),
        "user_b": user_actor(CallUserFactory(id="doc-b", teams=["clinic-b"]), "clinic-b"),
        "user_ab": user_actor(
            CallUserFactory(id="doc-ab", teams=["clinic-a", "clinic-b"]), "clinic-a", "clinic-b"
        ),
        "teamless": user_actor(CallUserFactory(id="loner")),
        "server": SERVER,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("persona", "filter_conditions", "expected"),
    [
        ("user_a", None, {"a1", "a2"}),
        ("user_b", None, {"b1"}),
        ("user_ab", None, {"a1", "a2", "b1"}),
        ("teamless", None, {"n1"}),
        ("server", None, {"a1", "a2", "b1", "n1"}),
        # The documented "all my teams" escape is not a way out of one's teams.
        ("user_a", {"team": {}}, {"a1", "a2"}),
        ("teamless", {"team": {}}, {"n1"}),
        ("server", {"team": {}}, {"a1", "a2", "b1", "n1"}),
        # An explicit filter on another team (or on no team) finds nothing for a user.
        ("user_a", {"team": "clinic-b"}, set()),
        ("user_a", {"team": {"$in": ["clinic-b", "clinic-c"]}}, set()),
        ("user_a", {"team": {"$exists": False}}, set()),
        ("user_a", {"$or": [{"team": "clinic-b"}, {"id": "n1"}]}, set()),
        ("user_a", {"id": {"$in": ["a1", "b1", "n1"]}}, {"a1"}),
        ("teamless", {"team": "clinic-a"}, set()),
        ("user_ab", {"team": "clinic-b"}, {"b1"}),
        ("server", {"team": "clinic-b"}, {"b1"}),
        ("server", {"team": {"$exists": False}}, {"n1"}),
    ],
)
def test_team_scoping_matrix(tenants, persona, filter_conditions, expected):
    assert query_ids(filter_conditions, actor=tenants[persona]) == expected


@pytest.mark.django_db
def test_read_call_limits_users_to_calls_they_may_read():
    appointment = CallType.objects.get(name="appointment")
    assert "read-call" not in appointment.grants["user"]
    patient = CallUserFactory(id="patient")
    other = CallUserFactory(id="other-patient")
    mine = CallFactory(call_id="appt-mine", type=appointment)
    theirs = CallFactory(call_id="appt-theirs", type=appointment)
    CallFactory(call_id="open", team=None)  # `default` grants read-call to role `user`
    CallMemberFactory(call=mine, user=patient)
    CallMemberFactory(call=theirs, user=other)

    assert query_ids(None, actor=user_actor(patient)) == {"appt-mine", "open"}
    assert query_ids(None, actor=user_actor(other)) == {"appt-theirs", "open"}
    stranger = CallUserFactory(id="stranger")
    assert query_ids(None, actor=user_actor(stranger)) == {"open"}
    # A call token listing the cid grants access without a membership, and to nothing else.
    token = user_actor(stranger, call_cids=frozenset({theirs.cid}))
    assert query_ids(None, actor=token) == {"appt-theirs"}
    # A global role the type grants read-call to sees every call of the type.
    admin = CallUserFactory(id="clinic-admin", role="admin")
    assert query_ids(None, actor=user_actor(admin)) == {"appt-mine", "appt-theirs", "open"}
    assert query_ids(None) == {"appt-mine", "appt-theirs", "open"}
    # Filters narrow what one may read; they never widen it.
    assert query_ids({"id": "appt-theirs"}, actor=user_actor(patient)) == set()


@pytest.mark.django_db
def test_read_call_follows_edited_grants():
    CallType.objects.filter(name="default").update(grants={"user": ["join-call"]})
    CallFactory(call_id="closed")
    assert query_ids(None, actor=user_actor(CallUserFactory(id="u"))) == set()


@pytest.mark.django_db
def test_deleted_calls_are_never_listed():
    CallFactory(call_id="gone", deleted_at=timezone.now())
    CallFactory(call_id="here")
    assert query_ids(None) == {"here"}


# --- sorting ---------------------------------------------------------------------------------


@pytest.fixture
def sortable() -> list[Call]:
    """Six calls: starts_at ties (s1 = s2, s4 = s5), one without starts_at; created in order."""
    hour = timedelta(hours=1)
    starts = {"s1": T0, "s2": T0, "s3": T0 + hour, "s4": T0 + 2 * hour, "s5": T0 + 2 * hour}
    rows = []
    for n, name in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"]):
        call = CallFactory(call_id=name, starts_at=starts.get(name))
        rows.append(at(call, created_at=T0 + n * timedelta(minutes=1)))
    return rows


def sorted_ids(sort: list[dict[str, Any]] | None, **kw: Any) -> list[str]:
    rows, _, _ = calls_query(actor=SERVER, filter_conditions=None, sort=sort, **kw)
    return ids(rows)


@pytest.mark.django_db
def test_default_sort_is_created_at_descending(sortable):
    assert sorted_ids(None) == ["s6", "s5", "s4", "s3", "s2", "s1"]
    assert sorted_ids([]) == ["s6", "s5", "s4", "s3", "s2", "s1"]


@pytest.mark.django_db
def test_sort_ties_break_on_primary_key_and_nulls_count_as_largest(sortable):
    # Ascending: nulls last; ties in creation (pk) order.
    asc = [{"field": "starts_at", "direction": 1}]
    assert sorted_ids(asc) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    # Descending is the exact reverse: nulls first.
    desc = [{"field": "starts_at", "direction": -1}]
    assert sorted_ids(desc) == ["s6", "s5", "s4", "s3", "s2", "s1"]
    # A second key orders within ties.
    two = [{"field": "starts_at", "direction": 1}, {"field": "id", "direction": -1}]
    assert sorted_ids(two) == ["s2", "s1", "s3", "s5", "s4", "s6"]


@pytest.mark.django_db
def test_sort_by_type_then_cid():
    livestream = CallType.objects.get(name="livestream")
    CallFactory(call_id="x", type=livestream)
    CallFactory(call_id="y")
    CallFactory(call_id="z", type=livestream)
    sort = [{"field": "type", "direction": -1}, {"field": "cid", "direction": 1}]
    assert sorted_ids(sort) == ["x", "z", "y"]
    assert sorted_ids([{"field": "ended_at", "direction": 1}]) == ["x", "y", "z"]  # all null


# --- cursors ---------------------------------------------------------------------------------


def walk(sort: list[dict[str, Any]] | None, limit: int, **kw: Any) -> tuple[list, list]:
    """Pages forward to the end, then backward to the start; returns both lists of pages."""
    forward: list[list[str]] = []
    rows, nxt, prev = calls_query(actor=SERVER, filter_conditions=None, sort=sort, limit=limit)
    assert prev is None  # first page
    forward.append(ids(rows))
    last_prev = None
    while nxt is not None:
        rows, nxt, last_prev = calls_query(
            actor=SERVER, filter_conditions=None, sort=sort, limit=limit, next=nxt
        )
        assert last_prev is not None
        forward.append(ids(rows))
    backward: list[list[str]] = []
    prev = last_prev
    while prev is not None:
        rows, nxt, prev = calls_query(
            actor=SERVER, filter_conditions=None, sort=sort, limit=limit, prev=prev
        )
        assert nxt is not None
        backward.append(ids(rows))
    return forward, backward


@pytest.mark.django_db
def test_pagination_walks_forward_and_backward_without_gaps_or_duplicates():
    for n in range(7):
        at(CallFactory(call_id=f"p{n}"), created_at=T0 + n * timedelta(minutes=1))
    forward, backward = walk(None, 3)
    assert forward == [["p6", "p5", "p4"], ["p3", "p2", "p1"], ["p0"]]
    assert backward == [["p3", "p2", "p1"], ["p6", "p5", "p4"]]


@pytest.mark.django_db
@pytest.mark.parametrize("direction", [1, -1])
def test_pagination_over_ties_and_nulls(sortable, direction):
    extra = [CallFactory(call_id=f"n{n}", starts_at=None) for n in range(3)]
    assert len(sortable) + len(extra) == 9
    sort = [{"field": "starts_at", "direction": direction}]
    expected = sorted_ids(sort, limit=100)
    for limit in (1, 2, 3, 4):
        forward, backward = walk(sort, limit)
        assert [i for page in forward for i in page] == expected
        assert all(len(page) == limit for page in forward[:-1])
        # Backward pages from the last page's prev cover everything before it, in order.
        assert [i for page in reversed(backward) for i in page] == expected[: -len(forward[-1])]


@pytest.mark.django_db
def test_rows_created_between_pages_are_neither_skipped_nor_repeated():
    for n in range(4):
        at(CallFactory(call_id=f"p{n}"), created_at=T0 + n * timedelta(minutes=1))
    asc = [{"field": "created_at", "direction": 1}]
    rows, nxt, _ = calls_query(actor=SERVER, filter_conditions=None, sort=asc, limit=2)
    assert ids(rows) == ["p0", "p1"]
    at(CallFactory(call_id="early"), created_at=T0 - timedelta(hours=1))
    rows, nxt, _ = calls_query(actor=SERVER, filter_conditions=None, sort=asc, limit=2, next=nxt)
    assert ids(rows) == ["p2", "p3"]
    assert nxt is None


@pytest.mark.django_db
def test_limit_zero_means_default():
    for n in range(27):
        CallFactory(call_id=f"l{n}")
    rows, nxt, prev = calls_query(actor=SERVER, filter_conditions=None, sort=None, limit=0)
    assert len(rows) == 25
    assert nxt is not None
    assert prev is None
    rows, nxt, prev = calls_query(actor=SERVER, filter_conditions=None, sort=None, next=nxt)
    assert len(rows) == 2
    assert nxt is None
    assert prev is not None


@pytest.mark.django_db
def test_single_page_has_no_cursors():
    CallFactory()
    rows, nxt, prev = calls_query(actor=SERVER, filter_conditions=None, sort=None)
    assert (len(rows), nxt, prev) == (1, None, None)


@pytest.mark.django_db
def test_cursor_must_match_its_query():
    for n in range(3):
        CallFactory(call_id=f"q{n}", team="clinic-a")
    _, nxt, _ = calls_query(
        actor=SERVER, filter_conditions={"team": "clinic-a"}, sort=None, limit=1
    )
    assert nxt is not None
    with pytest.raises(InputError) as exc:
        calls_query(actor=SERVER, filter_conditions=None, sort=None, limit=1, next=nxt)
    assert "next" in exc.value.fields
    with pytest.raises(InputError) as exc:
        calls_query(
            actor=SERVER,
            filter_conditions={"team": "clinic-a"},
            sort=[{"field": "id", "direction": 1}],
            prev=nxt,
        )
    assert "prev" in exc.value.fields
    # The limit may change between pages.
    rows, _, _ = calls_query(
        actor=SERVER, filter_conditions={"team": "clinic-a"}, sort=None, limit=5, next=nxt
    )
    assert ids(rows) == ["q1", "q0"]


@pytest.mark.django_db
@pytest.mark.parametrize("cursor", ["not base64!", "e30", "bm9wZQ", "W10"])
def test_malformed_cursors_are_input_errors(cursor):
    with pytest.raises(InputError) as exc:
        calls_query(actor=SERVER, filter_conditions=None, sort=None, next=cursor)
    assert "next" in exc.value.fields


@pytest.mark.django_db
def test_next_and_prev_together_are_rejected():
    CallFactory()
    CallFactory()
    _, nxt, _ = calls_query(actor=SERVER, filter_conditions=None, sort=None, limit=1)
    with pytest.raises(InputError):
        calls_query(actor=SERVER, filter_conditions=None, sort=None, next=nxt, prev=nxt)


# --- members ---------------------------------------------------------------------------------


@pytest.fixture
def members() -> tuple[Call, list[CallMember]]:
    call = CallFactory(call_id="m")
    CallMemberFactory(call=CallFactory(call_id="other"), user=CallUserFactory(id="elsewhere"))
    rows = []
    for n, (uid, role, custom) in enumerate(
        [
            ("dr-who", "host", {"seat": 1}),
            ("amy", "call_member", {"seat": 2}),
            ("rory", "call_member", {}),
            ("clara", "call_member", {"seat": 3, "vip": True}),
        ]
    ):
        member = CallMemberFactory(
            call=call, user=CallUserFactory(id=uid), role=role, custom=custom
        )
        CallMember.objects.filter(pk=member.pk).update(
            created_at=T0 + n * timedelta(minutes=1), updated_at=T0 + timedelta(hours=n)
        )
        rows.append(member)
    return call, rows


def member_ids(call: Call, filter_conditions: dict | None, sort: list | None = None) -> list[str]:
    rows, _, _ = members_query(call=call, filter_conditions=filter_conditions, sort=sort)
    return [m.user_id for m in rows]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filter_conditions", "expected"),
    [
        (None, ["dr-who", "amy", "rory", "clara"]),
        ({"user_id": "amy"}, ["amy"]),
        ({"user_id": {"$in": ["amy", "clara", "elsewhere"]}}, ["amy", "clara"]),
        ({"user_id": {"$gt": "d"}}, ["dr-who", "rory"]),
        ({"role": "host"}, ["dr-who"]),
        ({"role": {"$ne": "host"}}, ["amy", "rory", "clara"]),
        ({"custom.seat": {"$gte": 2}}, ["amy", "clara"]),
        ({"custom.vip": True}, ["clara"]),
        ({"custom.seat": {"$exists": False}}, ["rory"]),
        ({"created_at": {"$gte": "2026-05-01T09:01:00Z"}}, ["amy", "rory", "clara"]),
        ({"created_at": {"$lt": "2026-05-01T11:01:30+02:00"}}, ["dr-who", "amy"]),
        ({"updated_at": {"$gt": "2026-05-01T10:30:00"}}, ["rory", "clara"]),
        ({"$or": [{"role": "host"}, {"user_id": "rory"}]}, ["dr-who", "rory"]),
    ],
)
def test_member_filters(members, filter_conditions, expected):
    call, _ = members
    assert member_ids(call, filter_conditions) == expected


@pytest.mark.django_db
def test_member_sort_and_pagination(members):
    call, _ = members
    by_user = [{"field": "user_id", "direction": -1}]
    assert member_ids(call, None, by_user) == ["rory", "dr-who", "clara", "amy"]
    seen: list[str] = []
    rows, nxt, prev = members_query(call=call, filter_conditions=None, sort=by_user, limit=3)
    seen += [m.user_id for m in rows]
    assert prev is None
    rows, nxt, prev = members_query(
        call=call, filter_conditions=None, sort=by_user, limit=3, next=nxt
    )
    seen += [m.user_id for m in rows]
    assert nxt is None
    assert seen == ["rory", "dr-who", "clara", "amy"]
    rows, nxt, prev = members_query(
        call=call, filter_conditions=None, sort=by_user, limit=3, prev=prev
    )
    assert [m.user_id for m in rows] == ["rory", "dr-who", "clara"]
    assert prev is None
    assert nxt is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filter_conditions", "sort", "field"),
    [
        ({"team": "x"}, None, "filter_conditions.team"),
        ({"members": {"$in": ["a"]}}, None, "filter_conditions.members"),
        ({"user_id": {"$foo": 1}}, None, "filter_conditions.user_id"),
        ({"created_at": "soon"}, None, "filter_conditions.created_at"),
        (None, [{"field": "role", "direction": 1}], "sort.role"),
        (None, [{"field": "user_id"}, {"field": "created_at"}], "sort"),
    ],
)
def test_member_query_errors(members, filter_conditions, sort, field):
    call, _ = members
    with pytest.raises(InputError) as exc:
        members_query(call=call, filter_conditions=filter_conditions, sort=sort)
    assert field in exc.value.fields


# --- query counts ----------------------------------------------------------------------------


def touch_calls(rows: list[Call]) -> None:
    for call in rows:
        assert call.type.grants is not None
        assert isinstance(call.created_by.teams, list)


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["server", "user"])
def test_calls_query_count_does_not_grow_with_rows(django_assert_max_num_queries, persona):
    viewer = CallUserFactory(id="viewer", teams=["clinic-a"])
    actor = SERVER if persona == "server" else user_actor(viewer, "clinic-a")
    # calls (with type and creator, whose teams are a column, joined); users add one
    # CallType read for the read-call grants.
    expected = 1 if persona == "server" else 2

    def run() -> tuple[int, int]:
        with django_assert_max_num_queries(expected) as ctx:
            rows, _, _ = calls_query(actor=actor, filter_conditions=None, sort=None, limit=100)
            touch_calls(rows)
        return len(rows), len(ctx.captured_queries)

    CallFactory(team="clinic-a", created_by=CallUserFactory(teams=["clinic-a"]))
    one = run()
    for _ in range(29):
        CallFactory(team="clinic-a", created_by=CallUserFactory(teams=["clinic-a", "x"]))
    thirty = run()
    assert (one[0], thirty[0]) == (1, 30)
    assert one[1] == thirty[1] == expected


@pytest.mark.django_db
def test_members_query_count_does_not_grow_with_rows(django_assert_max_num_queries):
    call = CallFactory()

    def run() -> tuple[int, int]:
        # members (with users, whose teams are a column, joined)
        with django_assert_max_num_queries(1) as ctx:
            rows, _, _ = members_query(call=call, filter_conditions=None, sort=None, limit=100)
            for member in rows:
                assert isinstance(member.user.teams, list)
        return len(rows), len(ctx.captured_queries)

    CallMemberFactory(call=call, user=CallUserFactory(teams=["clinic-a"]))
    one = run()
    for _ in range(29):
        CallMemberFactory(call=call, user=CallUserFactory(teams=["clinic-a"]))
    thirty = run()
    assert (one[0], thirty[0]) == (1, 30)
    assert one[1] == thirty[1] == 1
