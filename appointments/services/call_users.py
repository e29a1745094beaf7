"""The calls user behind each staff member and patient (`calls.models.CallUser`): its id, and
its name and teams kept in step with the clinic side. Staff hold the calls engine's staff role
(`calls.capabilities.STAFF_TEAM_ROLE`) in each of their clinics' teams (`teams_role`): that is
how the engine knows them from patients and guests (who may not create calls, ring, or read
the users directory)."""

from __future__ import annotations

import re

from calls.capabilities import SERVER, STAFF_TEAM_ROLE
from calls.services.users import UserSpec, users_upsert


def call_user_id_for(prefix: str, text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "user"
    return f"{prefix}-{slug}"


def call_user_sync(
    *,
    user_id: str,
    name: str,
    teams: list[str],
    role: str = "user",
    staff: bool = False,
    language: str = "",
) -> None:
    """Write the calls user (a full replace); `staff`: staff of each of these teams;
    `language`: a patient's, which their pushes are written in (calls.outbox.push)."""
    teams_role = dict.fromkeys(sorted(teams), STAFF_TEAM_ROLE) if staff else None
    users_upsert(
        actor=SERVER,
        users=[
            UserSpec(
                id=user_id,
                name=name,
                role=role,
                teams=sorted(teams),
                teams_role=teams_role,
                language=language or None,
            )
        ],
    )
