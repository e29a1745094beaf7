"""Calls-API tokens: the one place that mints, verifies and revokes them.

Stream's JWTs (§2): HS256 with the API secret. A server token has no `user_id`; a user token
names a calls user; a call token is a user token with `call_cids` (and optionally a `role`)
for the calls it opens, and, unlike Stream's, for nothing else: the actor `verify` builds from
it is call-scoped (`Actor.is_call_scoped`), and `calls.capabilities` refuses it everything
outside those calls. The REST API (`calls.api.auth`), both WebSockets and the join pages
use these functions directly; nobody else reads or writes a token.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import Any

import jwt
from django.conf import settings
from django.utils.module_loading import import_string

from .capabilities import SERVER, Actor, JoinState
from .errors import (
    AuthError,
    TokenExpired,
    TokenIssuedInFuture,
    TokenNotValidYet,
    TokenSignatureInvalid,
    UnknownApiKey,
)
from .models import CallUser

# Minted tokens say they were issued a little earlier than they were (clocks differ).
IAT_BACKDATE_S = 5


# --- mint ------------------------------------------------------------------------------------


def mint_user_token(
    user_id: str,
    *,
    expires_in: int | None = 3600,
    call_cids: list[str] | None = None,
    role: str | None = None,
    grant: str | None = None,
) -> str:
    """A user token (a call token with `call_cids`); with `grant`, it lives only as long as
    that grant (`grant_is_live`)."""
    now = int(time.time())
    claims: dict[str, Any] = {"user_id": user_id, "iat": now - IAT_BACKDATE_S}
    if expires_in is not None:
        claims["exp"] = now + expires_in
    if call_cids:
        claims["call_cids"] = list(call_cids)
    if role:
        claims["role"] = role
    if grant:
        claims["grant"] = grant
    return jwt.encode(claims, settings.CALLS_API_SECRET, algorithm="HS256")


def mint_call_token(
    *, user_id: str, cid: str, standing: JoinState, expires_in: int, grant: str | None = None
) -> tuple[str, datetime] | None:
    """A token for one call, for a person the join rule admits now (`standing`, from
    `capabilities.join_state` for that person): None when it refuses them (too early, ended,
    not allowed). Returns the token and when it expires. The token reaches only this call, with
    the person's own capabilities there (`capabilities.in_scope`)."""
    if not standing.admits:
        return None
    token = mint_user_token(user_id, expires_in=expires_in, call_cids=[cid], grant=grant)
    # Counted from the current whole second, like the token's own `exp`.
    return token, datetime.fromtimestamp(int(time.time()) + expires_in, tz=UTC)


def mint_server_token() -> str:
    return jwt.encode({}, settings.CALLS_API_SECRET, algorithm="HS256")


# --- verify ----------------------------------------------------------------------------------


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


def verify(*, api_key: str, token: str) -> tuple[Actor, float | None]:
    """Who a request or a socket acts as: the API key, then the token (signature, times,
    revocation, its grant, the user's state). Returns the actor and the token's `exp` (None:
    none). Queries: the user (user tokens); the grant's check (tokens with a grant)."""
    if not hmac.compare_digest(api_key.encode(), settings.CALLS_API_KEY.encode()):
        raise UnknownApiKey(f"api_key not valid (got {api_key[:40]!r})")
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise AuthError("JWTAuth error: Authorization header is missing")
    claims = _decode(token)
    exp = claims.get("exp")
    expires = float(exp) if isinstance(exp, int | float) else None
    user_id = claims.get("user_id")
    if user_id is None or claims.get("server") is True:
        return SERVER, expires
    if not isinstance(user_id, str) or not user_id:
        raise AuthError("JWTAuth error: user_id must be a non-empty string")
    user = CallUser.objects.filter(id=user_id).first()
    if user is None:
        raise AuthError(f"JWTAuth error: user {user_id} does not exist")
    if is_revoked(user, claims.get("iat", 0)):
        raise TokenExpired("JWTAuth error: token has been revoked")
    if "grant" in claims and not grant_is_live(claims["grant"]):
        raise TokenExpired("JWTAuth error: token has been revoked")
    if user.deactivated_at is not None:
        raise AuthError(f"JWTAuth error: user {user_id} is deactivated")
    cids = claims.get("call_cids") or []
    role = claims.get("role")
    actor = Actor.of(
        user,
        call_cids=[c for c in cids if isinstance(c, str)] if isinstance(cids, list) else [],
        call_role=role if isinstance(role, str) else None,
    )
    return actor, expires


# --- revoke ----------------------------------------------------------------------------------


def revocation_point(minted_until: float) -> datetime:
    """A `revoke_tokens_issued_before` that revokes every token minted up to `minted_until`
    (its whole second: `iat` is in whole seconds) and none minted from the next second on."""
    return datetime.fromtimestamp(int(minted_until) - IAT_BACKDATE_S + 1, tz=UTC)


def grant_is_live(grant: Any) -> bool:
    """A token minted under a grant (its `grant` claim: an opaque string naming what handed it
    out, such as a join link or an app's session) lives while the grant does:
    `settings.CALLS_TOKEN_GRANT_CHECK` names a function `(grant) -> bool` that says so. With
    none configured, no grant is live. This revokes one grant's tokens and no others, with no
    clock involved (unlike `revocation_point`)."""
    check = getattr(settings, "CALLS_TOKEN_GRANT_CHECK", "")
    return isinstance(grant, str) and bool(check) and bool(import_string(check)(grant))


def is_revoked(user: CallUser, iat: Any) -> bool:
    revoked = user.revoke_tokens_issued_before
    return revoked is not None and (iat if isinstance(iat, int | float) else 0) < (
        revoked.timestamp()
    )
