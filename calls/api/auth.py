"""Stream's authentication (§2): `?api_key=` plus an HS256 JWT in `Authorization` (no Bearer)."""

from __future__ import annotations

import hmac
import time
from typing import Any

import jwt
from django.conf import settings
from django.http import HttpRequest

from calls.capabilities import SERVER, Actor
from calls.errors import (
    AuthError,
    TokenExpired,
    TokenIssuedInFuture,
    TokenNotValidYet,
    TokenSignatureInvalid,
    UnknownApiKey,
)
from calls.models import CallUser
from calls.tokens import IAT_BACKDATE_S


def _decode(token: str) -> dict[str, Any]:
    leeway = settings.CALLS_TOKEN_LEEWAY_SECONDS
    try:
        claims = jwt.decode(
            token,
            settings.CALLS_API_SECRET,
            algorithms=["HS256"],
            leeway=leeway,
            options={"verify_iat": False, "require": []},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired("JWTAuth error: token has expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenNotValidYet("JWTAuth error: token is not valid yet (nbf)") from None
    except jwt.InvalidSignatureError:
        raise TokenSignatureInvalid("JWTAuth error: signature is not valid") from None
    except jwt.PyJWTError:
        raise AuthError("JWTAuth error: token is malformed") from None
    if not isinstance(claims, dict):
        raise AuthError("JWTAuth error: token payload must be an object")
    iat = claims.get("iat")
    if iat is not None:
        if not isinstance(iat, int | float):
            raise AuthError("JWTAuth error: iat must be a number")
        if iat > time.time() + leeway:
            raise TokenIssuedInFuture("JWTAuth error: token used before issue at (iat)")
    return claims


def authenticate(request: HttpRequest) -> Actor:
    api_key = request.GET.get("api_key", "")
    if not hmac.compare_digest(api_key.encode(), settings.CALLS_API_KEY.encode()):
        raise UnknownApiKey(f"api_key not valid (got {api_key[:40]!r})")
    header = request.headers.get("Authorization", "").strip()
    if header.lower().startswith("bearer "):
        header = header[7:].strip()
    if not header:
        raise AuthError("JWTAuth error: Authorization header is missing")
    claims = _decode(header)
    user_id = claims.get("user_id")
    if user_id is None or claims.get("server") is True:
        return SERVER
    if not isinstance(user_id, str) or not user_id:
        raise AuthError("JWTAuth error: user_id must be a non-empty string")
    user = CallUser.objects.filter(id=user_id).first()
    if user is None:
        raise AuthError(f"JWTAuth error: user {user_id} does not exist")
    revoked = user.revoke_tokens_issued_before
    if revoked is not None and claims.get("iat", 0) < revoked.timestamp():
        raise TokenExpired("JWTAuth error: token has been revoked")
    if user.deactivated_at is not None:
        raise AuthError(f"JWTAuth error: user {user_id} is deactivated")
    cids = claims.get("call_cids") or []
    role = claims.get("role")
    return Actor(
        user=user,
        call_cids=frozenset(c for c in cids if isinstance(c, str)),
        call_role=role if isinstance(role, str) and role else None,
        teams=frozenset(user.team_ids),
    )


def create_user_token(
    user_id: str,
    *,
    expires_in: int | None = 3600,
    call_cids: list[str] | None = None,
    role: str | None = None,
) -> str:
    """The one place that mints calls-API user (and call) tokens."""
    now = int(time.time())
    claims: dict[str, Any] = {"user_id": user_id, "iat": now - IAT_BACKDATE_S}
    if expires_in is not None:
        claims["exp"] = now + expires_in
    if call_cids:
        claims["call_cids"] = list(call_cids)
    if role:
        claims["role"] = role
    return jwt.encode(claims, settings.CALLS_API_SECRET, algorithm="HS256")


def create_server_token() -> str:
    return jwt.encode({}, settings.CALLS_API_SECRET, algorithm="HS256")
