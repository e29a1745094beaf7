"""Channel-layer group names. Channels allows only ASCII letters, digits, `-`, `_` and `.`
(under 100 characters), while cids, team ids and user ids allow more (`@`, `:`), so every
name is a prefix plus a hash of the id."""

from __future__ import annotations

import hashlib


def _name(kind: str, value: str) -> str:
    return f"calls.{kind}.{hashlib.sha256(value.encode()).hexdigest()[:40]}"


def call_group(cid: str) -> str:
    """Everyone subscribed to one call (by cid)."""
    return _name("call", cid)


def team_group(team: str) -> str:
    """Everyone subscribed to all the calls of one team (staff schedule pages)."""
    return _name("team", team)


def user_group(user_id: str) -> str:
    """Every connection of one user: told when the user changes (teams, revocation)."""
    return _name("user", user_id)
