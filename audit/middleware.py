"""Puts the request's actor (the signed-in staff user) and peer address where
`audit.record.record` finds them, for the services a page calls."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .record import Actor, RequestContext, client_ip, context_reset, context_set, request_actor


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # `request.user` is lazy: the actor is read when a view first records.
        token = context_set(_LazyContext(request))  # type: ignore[arg-type]
        try:
            return self.get_response(request)
        finally:
            context_reset(token)


class _LazyContext:
    def __init__(self, request: HttpRequest) -> None:
        self._request = request

    @property
    def actor(self) -> Actor:
        return request_actor(self._request)

    @property
    def ip(self) -> str | None:
        return client_ip(self._request)


__all__ = ["AuditContextMiddleware", "RequestContext"]
