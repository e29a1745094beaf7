"""The WebSocket routes, mounted by `config.asgi`."""

from __future__ import annotations

from django.urls import path

from .consumer import EventsConsumer

WS_PATH = "ws/v1/events"

websocket_urlpatterns = [path(WS_PATH, EventsConsumer.as_asgi())]
