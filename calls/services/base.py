"""What the call services share: the request shapes, the answer shape, and the checks
every service makes before it changes a call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calls import selectors
from calls.call_settings import SettingsError
from calls.call_settings import validate_settings_request as _validate_settings
from calls.capabilities import Actor, capabilities_for
from calls.errors import InputError, NotAllowed
from calls.models import Call, CallMember

MAX_MEMBERS_PER_REQUEST = 100


@dataclass(frozen=True)
class MemberSpec:
    user_id: str
    role: str | None = None
    custom: dict[str, Any] | None = None


@dataclass
class CallView:
    """A call with the members and capabilities an API answer shows."""

    call: Call
    members: list[CallMember]
    own_capabilities: list[str]
    created: bool = False
    # The call's and the members' wire shapes, when the service has rendered them already
    # (a creation: those of its `call.created` event).
    wire: tuple[dict[str, Any], list[dict[str, Any]]] | None = None


def settings_or_error(data: dict[str, Any] | None, path: str) -> dict[str, Any]:
    if not data:
        return {}
    try:
        return _validate_settings(data, path=path)
    except SettingsError as exc:
        raise InputError(str(exc), fields=exc.errors) from None


def require(actor: Actor, call: Call, member: CallMember | None, capability: str) -> None:
    if capability not in capabilities_for(actor, call, member):
        raise NotAllowed(
            f"user {actor.user_id} is not allowed to perform action {capability} on {call.cid}"
        )


def locked_call(actor: Actor, type_name: str, call_id: str, capability: str) -> Call:
    """The call, locked until the transaction ends, once the actor may do `capability`."""
    call = selectors.call_get(actor=actor, type_name=type_name, call_id=call_id, for_update=True)
    require(actor, call, selectors.member_of(actor=actor, call=call), capability)
    return call


def capabilities_by_role(call: Call) -> dict[str, list[str]]:
    return {role: list(caps) for role, caps in call.type.grants.items()}
