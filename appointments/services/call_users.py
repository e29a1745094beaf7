"""The calls user behind each staff member and patient (`calls.models.CallUser`): its id, and
its name and teams kept in step with the clinic side."""

from __future__ import annotations

import re

from calls.capabilities import SERVER
from calls.services.users import UserSpec, users_upsert


def call_user_id_for(prefix: str, text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "user"
    return f"{prefix}-{slug}"


def call_user_sync(*, user_id: str, name: str, teams: list[str], role: str = "user") -> None:
    users_upsert(
        actor=SERVER,
        users=[UserSpec(id=user_id, name=name, role=role, teams=sorted(teams))],
    )
