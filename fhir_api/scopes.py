"""SMART system scopes: `system/<Type|*>.<permissions>` (the types of `RESOURCE_TYPES`), in
v2 form (`.cruds`, any ordered subset: `.rs`, `.cu`) or v1 form (`.read` = rs, `.write` = cud,
`.*` = cruds). A scope is a set of (resource type, letter) pairs; granting is intersecting.
Patient and user scopes, launch scopes and v2 query parameters (`?category=`) are not
supported: never granted."""

from __future__ import annotations

import re

RESOURCE_TYPES = ("Appointment", "Patient", "Practitioner", "Schedule", "Slot", "Subscription")
LETTERS = "cruds"
V1 = {"read": "rs", "write": "cud", "*": LETTERS}
_SCOPE = re.compile(r"^system/(?P<type>[A-Za-z]+|\*)\.(?P<perm>[a-z*]+)$")

Grants = frozenset[tuple[str, str]]


def parse(scope: str) -> Grants:
    """The (type, letter) pairs of one scope; empty for a scope we do not grant."""
    match = _SCOPE.match(scope)
    if match is None:
        return frozenset()
    perm = match["perm"]
    letters = V1.get(perm)
    if letters is None:
        # v2: letters in the order c, r, u, d, s, each at most once.
        if (
            not perm
            or any(c not in LETTERS for c in perm)
            or perm != "".join(c for c in LETTERS if c in perm)
        ):
            return frozenset()
        letters = perm
    kind = match["type"]
    types = RESOURCE_TYPES if kind == "*" else (kind,) if kind in RESOURCE_TYPES else ()
    return frozenset((t, c) for t in types for c in letters)


def parse_all(scopes: str) -> Grants:
    grants: set[tuple[str, str]] = set()
    for scope in scopes.split():
        grants |= parse(scope)
    return frozenset(grants)


def render(grants: Grants) -> str:
    """Grants as v2 scopes, one per resource type (`system/Appointment.cru`)."""
    out = []
    for kind in RESOURCE_TYPES:
        letters = "".join(c for c in LETTERS if (kind, c) in grants)
        if letters:
            out.append(f"system/{kind}.{letters}")
    return " ".join(out)


def grant(*, requested: str, allowed: str) -> Grants:
    """What a token request gets: what it asked for, within what the client may have."""
    return parse_all(requested) & parse_all(allowed)


def supported() -> list[str]:
    return [f"system/{kind}.{LETTERS}" for kind in RESOURCE_TYPES] + [
        f"system/{kind}.{v1}" for kind in RESOURCE_TYPES for v1 in ("read", "write")
    ]


class Principal:
    """Who is calling the FHIR API: a client of one clinic, with the grants of its token
    (within what the client may still have: narrowing a registration applies at once)."""

    def __init__(self, client, grants: Grants) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.clinic = client.clinic
        self.grants = grants & parse_all(client.scopes)

    def may(self, resource_type: str, letter: str) -> bool:
        return (resource_type, letter) in self.grants
