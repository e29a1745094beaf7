"""The call's chat transcript on the staff appointment page (a small read-only section,
`portal/_chat_transcript.html`). The transcript is patient data: only the clinic's staff who
see clinical content (`access.can_see_clinical`: clinicians and clinic admins) read it, and
the page's view is already audited (`APPOINTMENT_VIEWED`)."""

from __future__ import annotations

from typing import Any

from appointments.access import can_see_clinical
from appointments.models import Clinic, StaffMember
from calls import selectors as call_selectors
from calls.models import Call


def transcript_context(staff: StaffMember, clinic: Clinic, call: Call | None) -> dict[str, Any]:
    """`chat_visible` (may this staff member read it) and `chat` (its messages, oldest first;
    one query, none when not visible or there is no call)."""
    visible = call is not None and can_see_clinical(staff, clinic)
    return {
        "chat_visible": visible,
        "chat": call_selectors.call_chat(call=call) if visible and call is not None else [],
    }
