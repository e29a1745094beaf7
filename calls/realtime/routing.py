"""The WebSocket routes, mounted by `config.asgi`."""

from __future__ import annotations

from django.urls import path

from .consumer import EventsConsumer
from .rtc import RtcConsumer

WS_PATH = "ws/v1/events"
RTC_PATH = "ws/v1/rtc"

websocket_urlpatterns = [
    path(WS_PATH, EventsConsumer.as_asgi()),
    path(RTC_PATH, RtcConsumer.as_asgi()),
]
