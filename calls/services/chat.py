"""In-call chat: a participant who is in the call sends a text message, stored with the call
(calls.realtime.rtc is its door and delivers it to the call's joined participants).

Unlike the other services this one writes no outbox event: a chat message is patient data
and goes only to the people in the call, over their call sockets, never to webhooks, pushes or
the team's sockets. Its bounds (docs/limits.md) are settings: `CALLS_CHAT_MAX_CHARS` per
message, `CALLS_CHAT_PER_MINUTE` per person and call, `CALLS_CHAT_MAX_PER_CALL` in all."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls.errors import InputError, NotAllowed, RateLimited
from calls.models import CallChatMessage, CallParticipant


def chat_message_send(*, user_session_id: str, text: Any) -> CallChatMessage:
    """The participant `user_session_id` says `text` in its call. Refused unless the
    participant is in the call (not waiting, not gone), the text is a non-blank string within
    the size limit, and the sender and the call are within their rates."""
    if not isinstance(text, str):
        raise InputError("chat needs `text`, a string", fields={"text": "a string"})
    text = text.strip()
    if not text:
        raise InputError("a chat message cannot be empty", fields={"text": "empty"})
    limit = settings.CALLS_CHAT_MAX_CHARS
    if len(text) > limit:
        raise InputError(
            f"a chat message has at most {limit} characters", fields={"text": "too long"}
        )
    with transaction.atomic():
        # Locked: two messages of the same tab are counted one after the other.
        participant = (
            CallParticipant.objects.select_related("user")
            .select_for_update(of=("self",))
            .filter(user_session_id=user_session_id)
            .first()
        )
        if participant is None or participant.state != CallParticipant.State.JOINED:
            raise NotAllowed("chat is for the people in the call")
        now = timezone.now()
        messages = CallChatMessage.objects.filter(call_id=participant.call_id)
        recent = messages.filter(
            user_id=participant.user_id, created_at__gt=now - timedelta(minutes=1)
        ).count()
        if recent >= settings.CALLS_CHAT_PER_MINUTE:
            raise RateLimited("too many chat messages: wait a minute")
        if messages.count() >= settings.CALLS_CHAT_MAX_PER_CALL:
            raise RateLimited("this call's chat is full")
        return CallChatMessage.objects.create(
            call_id=participant.call_id,
            user=participant.user,
            user_session_id=user_session_id,
            text=text,
            created_at=now,
        )
