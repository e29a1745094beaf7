"""Stream Video server-side API (§3): validate input, call one service or selector, render."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from calls import filters, limits, selectors, wire
from calls.capabilities import capabilities_for, require_in_scope
from calls.errors import InputError, NotAllowed, NotFound
from calls.models import ID_REGEX, Task
from calls.services import base as call_base
from calls.services.app import app_update, app_webhook
from calls.services.base import MemberSpec
from calls.services.call_types import call_type_create, call_type_delete, call_type_update
from calls.services.calls import (
    call_delete,
    call_get_or_create,
    call_join,
    call_members_update,
    call_read,
    call_send_event,
    call_update,
)
from calls.services.live import call_end, call_go_live, call_stop_live
from calls.services.moderation import (
    call_block_user,
    call_kick_user,
    call_mute_users,
    call_unblock_user,
    call_update_user_permissions,
)
from calls.services.ringing import call_accept, call_reject, call_ring
from calls.services.users import UserSpec, users_partial_update, users_upsert
from calls.tokens import mint_user_token

from . import serializers as s
from .base import StreamView
from .wire_input import drop_none, parse_body, validated

_ID = re.compile(ID_REGEX)


def _check_ids(type_name: str, call_id: str) -> None:
    bad = {
        k: "must match ^[A-Za-z0-9_-]{1,64}$"
        for k, v in (("type", type_name), ("id", call_id))
        if not _ID.fullmatch(v)
    }
    if bad:
        raise InputError("invalid call type or id", fields=bad)


def _members(data: list[dict[str, Any]] | None) -> list[MemberSpec]:
    return [
        MemberSpec(user_id=m["user_id"], role=m.get("role"), custom=m.get("custom"))
        for m in data or []
    ]


def _user_spec(data: dict[str, Any]) -> UserSpec:
    return UserSpec(**{k: v for k, v in data.items() if k in UserSpec.__dataclass_fields__})


def _call_view_body(view: call_base.CallView) -> dict[str, Any]:
    call, members = view.wire or (
        wire.call_response(view.call),
        [wire.member_response(m) for m in view.members],
    )
    return {
        "call": call,
        "members": members,
        "own_capabilities": view.own_capabilities,
        "blocked_users": [],
    }


class CallView(StreamView):
    operations = {"GET": "GetCall", "POST": "GetOrCreateCall", "PATCH": "UpdateCall"}

    def get(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        params = validated(s.GetCallQuery, drop_none(request.query_params.dict()))
        view = call_read(
            actor=self.actor,
            type_name=type,
            call_id=id,
            ring=params.get("ring", False),
            notify=params.get("notify", False),
            video=params.get("video"),
            members_limit=params.get("members_limit"),
        )
        return self.respond(_call_view_body(view))

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.GetOrCreateCallRequest, drop_none(parse_body(request._request)))
        data = body.get("data", {})
        created_by = data.get("created_by")
        view = call_get_or_create(
            actor=self.actor,
            type_name=type,
            call_id=id,
            created_by_id=data.get("created_by_id"),
            created_by=_user_spec(created_by) if created_by else None,
            members=_members(data.get("members")),
            custom=data.get("custom"),
            settings_override=data.get("settings_override"),
            starts_at=data.get("starts_at"),
            team=data.get("team"),
            ring=body.get("ring", False),
            notify=body.get("notify", False),
            video=body.get("video", data.get("video")),
            members_limit=body.get("members_limit"),
            go_live_at_start=data.get("go_live_at_start", False),
            ring_at_start=data.get("ring_at_start", False),
            reminder_offsets=data.get("reminder_offsets"),
            no_show_after_seconds=data.get("no_show_after_seconds"),
        )
        return self.respond({**_call_view_body(view), "created": view.created}, status=201)

    def patch(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.UpdateCallRequest, drop_none(parse_body(request._request)))
        view = call_update(actor=self.actor, type_name=type, call_id=id, **body)
        return self.respond(_call_view_body(view))


class JoinCallView(StreamView):
    """Client-side join (§3.1): the server decides whether the user may enter now."""

    operations = {"POST": "JoinCall"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.JoinCallRequest, drop_none(parse_body(request._request)))
        data = body.get("data", {})
        view = call_join(
            actor=self.actor,
            type_name=type,
            call_id=id,
            create=body.get("create", False),
            create_kwargs={
                "members": _members(data.get("members")),
                "custom": data.get("custom"),
                "settings_override": data.get("settings_override"),
                "starts_at": data.get("starts_at"),
                "team": data.get("team"),
            },
            ring=body.get("ring", False),
            notify=body.get("notify", False),
            video=body.get("video"),
        )
        token = mint_user_token(
            self.actor.user_id or "", expires_in=3600, call_cids=[view.call.cid]
        )
        return self.respond(
            {
                **_call_view_body(view),
                "created": view.created,
                "credentials": {
                    "server": {
                        "url": request.build_absolute_uri("/"),
                        "ws_endpoint": "",
                        "edge_name": "local",
                    },
                    "token": token,
                    "ice_servers": [],
                },
                "stats_options": {"reporting_interval_ms": 0, "enable_rtc_stats": False},
            },
            status=201,
        )


class CallMembersView(StreamView):
    operations = {"POST": "UpdateCallMembers"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.UpdateCallMembersRequest, drop_none(parse_body(request._request)))
        members = call_members_update(
            actor=self.actor,
            type_name=type,
            call_id=id,
            update_members=_members(body.get("update_members")),
            remove_members=body.get("remove_members"),
        )
        return self.respond({"members": [wire.member_response(m) for m in members]}, status=201)


class RingCallView(StreamView):
    operations = {"POST": "RingCall"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.RingCallRequest, drop_none(parse_body(request._request)))
        rung = call_ring(
            actor=self.actor,
            type_name=type,
            call_id=id,
            members_ids=body.get("members_ids"),
            video=body.get("video"),
        )
        return self.respond({"members_ids": rung}, status=201)


class AcceptCallView(StreamView):
    """Client side: a rung member accepts (`call.accepted`)."""

    operations = {"POST": "AcceptCall"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        parse_body(request._request)
        call_accept(actor=self.actor, type_name=type, call_id=id)
        return self.respond({}, status=201)


class RejectCallView(StreamView):
    """Client side: a rung member rejects with a reason (`call.rejected`)."""

    operations = {"POST": "RejectCall"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.RejectCallRequest, drop_none(parse_body(request._request)))
        call_reject(actor=self.actor, type_name=type, call_id=id, reason=body.get("reason", ""))
        return self.respond({}, status=201)


class SendCallEventView(StreamView):
    operations = {"POST": "SendCallEvent"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.SendCallEventRequest, drop_none(parse_body(request._request)))
        user = body.get("user") or {}
        call_send_event(
            actor=self.actor,
            type_name=type,
            call_id=id,
            custom=body.get("custom", {}),
            user_id=body.get("user_id") or user.get("id"),
        )
        return self.respond({}, status=201)


class BlockUserView(StreamView):
    operations = {"POST": "BlockUser"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.BlockUserRequest, drop_none(parse_body(request._request)))
        call_block_user(actor=self.actor, type_name=type, call_id=id, **body)
        return self.respond({}, status=201)


class UnblockUserView(StreamView):
    operations = {"POST": "UnblockUser"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.BlockUserRequest, drop_none(parse_body(request._request)))
        call_unblock_user(actor=self.actor, type_name=type, call_id=id, **body)
        return self.respond({}, status=201)


class KickUserView(StreamView):
    operations = {"POST": "KickUser"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.KickUserRequest, drop_none(parse_body(request._request)))
        kicked_by = body.get("kicked_by") or {}
        call_kick_user(
            actor=self.actor,
            type_name=type,
            call_id=id,
            user_id=body["user_id"],
            block=bool(body.get("block")),
            kicked_by_id=body.get("kicked_by_id") or kicked_by.get("id"),
        )
        return self.respond({}, status=201)


class MuteUsersView(StreamView):
    operations = {"POST": "MuteUsers"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.MuteUsersRequest, drop_none(parse_body(request._request)))
        muted_by = body.pop("muted_by", None) or {}
        call_mute_users(
            actor=self.actor,
            type_name=type,
            call_id=id,
            **{**body, "muted_by_id": body.get("muted_by_id") or muted_by.get("id")},
        )
        return self.respond({}, status=201)


class UpdateUserPermissionsView(StreamView):
    operations = {"POST": "UpdateUserPermissions"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.UpdateUserPermissionsRequest, drop_none(parse_body(request._request)))
        call_update_user_permissions(actor=self.actor, type_name=type, call_id=id, **body)
        return self.respond({}, status=201)


class GoLiveView(StreamView):
    operations = {"POST": "GoLive"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        parse_body(request._request)  # media flags are accepted and ignored (no egress here)
        call = call_go_live(actor=self.actor, type_name=type, call_id=id)
        return self.respond({"call": wire.call_response(call)}, status=201)


class StopLiveView(StreamView):
    operations = {"POST": "StopLive"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        parse_body(request._request)
        call = call_stop_live(actor=self.actor, type_name=type, call_id=id)
        return self.respond({"call": wire.call_response(call)}, status=201)


class EndCallView(StreamView):
    operations = {"POST": "EndCall"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        call_end(actor=self.actor, type_name=type, call_id=id)
        return self.respond({}, status=201)


class DeleteCallView(StreamView):
    operations = {"POST": "DeleteCall"}

    def post(self, request: Request, type: str, id: str) -> Response:
        _check_ids(type, id)
        body = validated(s.DeleteCallRequest, drop_none(parse_body(request._request)))
        call, task = call_delete(
            actor=self.actor, type_name=type, call_id=id, hard=body.get("hard", False)
        )
        out: dict[str, Any] = {"call": wire.call_response(call)}
        if task is not None:
            out["task_id"] = task.id
        return self.respond(out, status=201)


class QueryCallsView(StreamView):
    operations = {"POST": "QueryCalls"}

    def post(self, request: Request) -> Response:
        body = validated(s.QueryRequest, drop_none(parse_body(request._request)))
        calls, next_cursor, prev_cursor = filters.calls_query(
            actor=self.actor,
            filter_conditions=body.get("filter_conditions"),
            sort=body.get("sort"),
            limit=body.get("limit") or 25,
            next=body.get("next") or None,
            prev=body.get("prev") or None,
        )
        by_call = selectors.members_by_call(calls=calls)
        items = []
        for call in calls:
            members = by_call.get(call.pk, [])
            mine = next((m for m in members if m.user_id == self.actor.user_id), None)
            items.append(
                {
                    "call": wire.call_response(call),
                    "members": [wire.member_response(m) for m in members],
                    "own_capabilities": capabilities_for(self.actor, call, mine),
                }
            )
        out: dict[str, Any] = {"calls": items}
        if next_cursor:
            out["next"] = next_cursor
        if prev_cursor:
            out["prev"] = prev_cursor
        return self.respond(out, status=201)


class QueryCallMembersView(StreamView):
    operations = {"POST": "QueryCallMembers"}

    def post(self, request: Request) -> Response:
        body = validated(s.QueryCallMembersRequest, drop_none(parse_body(request._request)))
        _check_ids(body["type"], body["id"])
        view = call_read(
            actor=self.actor, type_name=body["type"], call_id=body["id"], members_limit=0
        )
        members, next_cursor, prev_cursor = filters.members_query(
            call=view.call,
            filter_conditions=body.get("filter_conditions"),
            sort=body.get("sort"),
            limit=body.get("limit") or 25,
            next=body.get("next") or None,
            prev=body.get("prev") or None,
        )
        out: dict[str, Any] = {"members": [wire.member_response(m) for m in members]}
        if next_cursor:
            out["next"] = next_cursor
        if prev_cursor:
            out["prev"] = prev_cursor
        return self.respond(out, status=201)


def _require_server(view: StreamView) -> None:
    if not view.actor.is_server:
        raise NotAllowed("this endpoint requires server-side auth")


class CallTypesView(StreamView):
    operations = {"GET": "ListCallTypes", "POST": "CreateCallType"}

    def get(self, request: Request) -> Response:
        _require_server(self)
        types = selectors.call_types_all()
        return self.respond({"call_types": {t.name: wire.call_type_response(t) for t in types}})

    def post(self, request: Request) -> Response:
        _require_server(self)
        body = validated(s.CreateCallTypeRequest, drop_none(parse_body(request._request)))
        call_type = call_type_create(**body)
        return self.respond(wire.call_type_response(call_type), status=201)


class CallTypeView(StreamView):
    operations = {"GET": "GetCallType", "PUT": "UpdateCallType", "DELETE": "DeleteCallType"}

    def get(self, request: Request, name: str) -> Response:
        _require_server(self)
        return self.respond(wire.call_type_response(selectors.call_type_get(name=name)))

    def put(self, request: Request, name: str) -> Response:
        _require_server(self)
        body = validated(s.CallTypeRequest, drop_none(parse_body(request._request)))
        call_type = call_type_update(name=name, **body)
        return self.respond(wire.call_type_response(call_type), status=201)

    def delete(self, request: Request, name: str) -> Response:
        _require_server(self)
        call_type_delete(name=name)
        return self.respond({})


class UsersView(StreamView):
    operations = {"POST": "UpdateUsers", "PATCH": "UpdateUsersPartial", "GET": "QueryUsers"}

    def post(self, request: Request) -> Response:
        body = validated(s.UpsertUsersRequest, parse_body(request._request))
        specs = []
        for key, data in body["users"].items():
            if data["id"] != key:
                raise InputError(
                    f"users.{key}.id must equal its key",
                    fields={f"users.{key}.id": "must equal its key"},
                )
            specs.append(_user_spec(data))
        users = users_upsert(actor=self.actor, users=specs)
        return self.respond(
            {
                "users": {u.id: wire.full_user_response(u) for u in users},
                "membership_deletion_task_id": "",
            },
            status=201,
        )

    def patch(self, request: Request) -> Response:
        body = validated(s.UpdateUsersPartialRequest, parse_body(request._request))
        users = users_partial_update(
            actor=self.actor,
            updates=[(u["id"], u.get("set", {}), u.get("unset", [])) for u in body["users"]],
        )
        return self.respond(
            {
                "users": {u.id: wire.full_user_response(u) for u in users},
                "membership_deletion_task_id": "",
            }
        )

    def get(self, request: Request) -> Response:
        raw = request.query_params.get("payload")
        if not raw:
            raise InputError("payload is required", fields={"payload": "required"})
        payload = limits.parse_json(raw, max_bytes=limits.max_body_bytes(), what="payload")
        if not isinstance(payload, dict):
            raise InputError("payload must be a JSON object", fields={"payload": "not an object"})
        body = validated(s.QueryUsersPayload, drop_none(payload))
        users = selectors.users_query(
            actor=self.actor,
            filter_conditions=body["filter_conditions"],
            sort=body.get("sort"),
            limit=body.get("limit") or 25,
            offset=body.get("offset", 0),
        )
        return self.respond({"users": [wire.full_user_response(u) for u in users]})


class AppView(StreamView):
    """Stream's app settings, as far as this server has them: teams always on, the app's own
    webhook endpoint (the admin manages more, per clinic)."""

    operations = {"GET": "GetApp", "PATCH": "UpdateApp"}

    def get(self, request: Request) -> Response:
        _require_server(self)
        return self.respond({"app": _app_body()})

    def patch(self, request: Request) -> Response:
        _require_server(self)
        app_update(changes=drop_none(parse_body(request._request)))
        return self.respond({})


def _app_body() -> dict[str, Any]:
    endpoint = app_webhook()
    return {
        "name": settings.CALLS_APP_NAME,
        "organization": "",
        "multi_tenant_enabled": True,
        "suspended": False,
        "suspended_explanation": "",
        "disable_auth_checks": False,
        "disable_permissions_checks": False,
        "permission_version": "v2",
        "webhook_url": endpoint.url if endpoint else "",
        "webhook_events": list(endpoint.event_types) if endpoint else [],
        "grants": {},
        "call_types": {},
    }


class TaskView(StreamView):
    operations = {"GET": "GetTask"}

    def get(self, request: Request, id: str) -> Response:
        _require_server(self)
        task = Task.objects.filter(id=id).first()
        if task is None:
            raise NotFound(f"task {id} does not exist")
        out: dict[str, Any] = {
            "task_id": task.id,
            "status": task.status,
            "created_at": wire.to_ns(task.created_at),
            "updated_at": wire.to_ns(task.updated_at),
        }
        if task.result:
            out["result"] = task.result
        if task.error:
            out["error"] = task.error
        return self.respond(out)


class UnsupportedView(StreamView):
    """Pin, recording, HLS, RTMP, transcription, SIP, stats...: a well-formed 400/4 (§3.1)."""

    def dispatch_any(self, request: Request, **kwargs: Any) -> Response:
        if "type" in kwargs and "id" in kwargs:  # a call token: its own call's paths only
            require_in_scope(self.actor, f"{kwargs['type']}:{kwargs['id']}")
        raise InputError(f"{request.path} is not supported by this server")

    get = post = put = patch = delete = dispatch_any


class NotFoundView(StreamView):
    """Any unknown API path: a Stream 404 body, never a redirect or an HTML page."""

    def dispatch_any(self, request: Request, **kwargs: Any) -> Response:
        raise NotFound(f"{request.method} {request.path} is not an API endpoint")

    get = post = put = patch = delete = dispatch_any
