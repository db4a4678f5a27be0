"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudeapp.settings")

# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from claudeapp.claude import prepare  # noqa: E402
from claudeapp.routing import websocket_urlpatterns  # noqa: E402

prepare()

# Everything loaded so far (Django, the SDK's types, the app) lives as long as the process: out
# of the collector's sight it is not walked again by every full collection, each of which took
# 160-200 ms of a worker's event loop, all streams stalled, at the start of a burst of replies.
gc.collect()
gc.freeze()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin is checked against ALLOWED_HOSTS (cross-site websocket hijacking), then the
        # session cookie authenticates; each consumer refuses anonymous users itself.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
