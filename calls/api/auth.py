"""Stream's authentication (§2): `?api_key=` plus an HS256 JWT in `Authorization` (no Bearer).
A thin adapter: the checks are `calls.tokens.verify`."""

from __future__ import annotations

from django.http import HttpRequest

from calls import tokens
from calls.capabilities import Actor


def authenticate(request: HttpRequest) -> Actor:
    actor, _expires = tokens.verify(
        api_key=request.GET.get("api_key", ""),
        token=request.headers.get("Authorization", ""),
    )
    return actor
