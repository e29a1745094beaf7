"""ASGI entry point: HTTP goes to Django, WebSockets (`/ws/v1/events`) to Channels.

uvicorn serves both (it speaks WebSocket with the `websockets` package installed), so the
README's run command needs nothing else. Lifespan startup tunes the process's garbage
collector (config.lifespan). No session auth on the socket: the consumer checks a
calls-API token and the browser Origin itself (calls.realtime)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django first: it sets up the apps the WebSocket routes import.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.realtime.routing import websocket_urlpatterns  # noqa: E402
from config.lifespan import lifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": URLRouter(websocket_urlpatterns),
        "lifespan": lifespan,
    }
)
