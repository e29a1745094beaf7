"""DeleteCall (POST .../delete, soft and hard) and GetTask (GET /api/v2/tasks/{id})."""

from __future__ import annotations

import pytest

from calls.models import Call, CallMember, Task

from .conftest import (
    CLINIC_A,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    call_path,
    events,
)


@pytest.mark.django_db
def test_soft_delete_hides_the_call(api, clinic_call):
    body = assert_ok(api.post(call_path("default", "appt-1", "delete"), {}), 201)

    assert body["call"]["cid"] == "default:appt-1"
    assert "task_id" not in body
    assert len(events("default:appt-1", "call.deleted")) == 1
    assert_error(api.get(call_path("default", "appt-1")), 404, 16)
    assert_error(api.patch(call_path("default", "appt-1"), {"custom": {}}), 404, 16)
    listed = assert_ok(api.post("/api/v2/video/calls", {}), 201)
    assert listed["calls"] == []


@pytest.mark.django_db
def test_soft_deleted_id_can_be_created_again(api, clinic_call, create_call):
    assert_ok(api.post(call_path("default", "appt-1", "delete"), {}), 201)

    again = create_call("appt-1", team=CLINIC_A)

    assert again["created"] is True
    assert again["members"] == []


@pytest.mark.django_db
def test_hard_delete_with_user_token_is_403(api, clinic_call, host):
    body = assert_error(
        api.post(call_path("default", "appt-1", "delete"), {"hard": True}, as_user=host), 403, 17
    )

    assert "DeleteCall" in body["message"]
    assert_ok(api.get(call_path("default", "appt-1")))
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_plain_member_cannot_delete(api, clinic_call, patient):
    assert_error(api.post(call_path("default", "appt-1", "delete"), {}, as_user=patient), 403, 17)
    assert_ok(api.get(call_path("default", "appt-1")))


@pytest.mark.django_db
def test_hard_delete_server_side_runs_a_task(
    api, clinic_call, eager_tasks, django_capture_on_commit_callbacks
):
    call_pk = Call.objects.get(cid="default:appt-1").pk

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        body = assert_ok(api.post(call_path("default", "appt-1", "delete"), {"hard": True}), 201)

    assert len(callbacks) >= 1
    task_id = body["task_id"]
    assert isinstance(task_id, str)
    assert task_id
    assert body["call"]["cid"] == "default:appt-1"
    task = assert_ok(api.get(f"/api/v2/tasks/{task_id}"))
    assert task["task_id"] == task_id
    assert task["status"] == "completed"
    assert assert_ns_timestamps(task) == 2
    assert not Call.objects.filter(pk=call_pk).exists()
    assert not CallMember.objects.filter(call_id=call_pk).exists()
    assert_error(api.get(call_path("default", "appt-1")), 404, 16)
    # The deletion event outlives the call, so the outbox can still deliver it.
    [deleted] = events("default:appt-1", "call.deleted")
    assert deleted.payload["call"]["cid"] == "default:appt-1"


@pytest.mark.django_db
def test_unknown_task_is_404(api):
    assert_error(api.get("/api/v2/tasks/no-such-task"), 404, 16)


@pytest.mark.django_db
def test_tasks_are_server_side_only(api, host):
    task = Task.objects.create(id="t-1", kind="call_hard_delete", params={"call_pk": 0})

    assert_error(api.get(f"/api/v2/tasks/{task.id}", as_user=host), 403, 17)


# ===========================================================================================
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_soft_delete_query_count(api, clinic_call, host, django_assert_num_queries):
    # 10: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the host's own member row, (5) the call's participants not yet gone (to put
    # them out), (6) the call again with its session, (7) UPDATE the call, (8) its pending
    # scheduled actions, (9) the call.deleted outbox row, (10) release.
    with django_assert_num_queries(10):
        response = api.post(call_path("default", "appt-1", "delete"), {}, as_user=host)

    assert assert_ok(response, 201)["call"]["cid"] == "default:appt-1"
    assert Call.objects.get(cid="default:appt-1").deleted_at is not None
    assert len(events("default:appt-1", "call.deleted")) == 1


@pytest.mark.django_db
def test_hard_delete_and_get_task_query_counts(api, clinic_call, django_assert_num_queries):
    # 9: (1) savepoint, (2) the call joined with its type, creator and session, (3) the call's
    # participants not yet gone, (4) the call again with its session, (5) UPDATE the call,
    # (6) its pending scheduled actions, (7) INSERT the task, (8) the call.deleted outbox row,
    # (9) release. The rows themselves go in the task, after the commit.
    with django_assert_num_queries(9):
        response = api.post(call_path("default", "appt-1", "delete"), {"hard": True})

    task_id = assert_ok(response, 201)["task_id"]
    assert Task.objects.get(id=task_id).status == "pending"

    # 1: the task.
    with django_assert_num_queries(1):
        task = api.get(f"/api/v2/tasks/{task_id}")

    assert assert_ok(task)["task_id"] == task_id
