"""Domain errors of the call engine. The API maps them to Stream's error envelope (§5)."""

from __future__ import annotations


class CallsError(Exception):
    code = -1
    status = 500

    def __init__(self, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InputError(CallsError):
    code, status = 4, 400


class NotFound(CallsError):
    code, status = 16, 404


class NotAllowed(CallsError):
    code, status = 17, 403


class AuthError(CallsError):
    code, status = 5, 401


class UnknownApiKey(CallsError):
    code, status = 2, 401


class TokenExpired(CallsError):
    code, status = 40, 401


class TokenNotValidYet(CallsError):
    code, status = 41, 401


class TokenIssuedInFuture(CallsError):
    code, status = 42, 401


class TokenSignatureInvalid(CallsError):
    code, status = 43, 401


class PayloadTooLarge(CallsError):
    code, status = 22, 413


class RateLimited(CallsError):
    code, status = 9, 429
