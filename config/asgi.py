"""ASGI entry point: ``daphne config.asgi:application`` serves pages, static
files and websockets."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter

from config.logs import install_access_log_masking
from config.origins import SiteOriginValidator
from streaming import shutdown
from streaming.admission import StampArrival
from streaming.routing import websocket_application
from streaming.transport import install_lazy_debug_format

# StampArrival outermost: it notes when Daphne created each connection, for
# the room's admission control (streaming/admission.py).
application = StampArrival(
    ProtocolTypeRouter(
        {"http": django_asgi_app, "websocket": SiteOriginValidator(websocket_application())}
    )
)

# Daphne's access log: personal links masked (config/logs.py). Daphne imports
# this module before it builds its server, whichever way it is started.
install_access_log_masking()

# autobahn's per-connection debug formatting, skipped unless logged.
install_lazy_debug_format()

# SIGTERM: viewers told to reconnect elsewhere, watch time written, then stop.
shutdown.install()

# A server process holds thousands of connections, each a few dozen
# long-lived objects, and allocates a little for every frame it sends. With
# the default thresholds the collector keeps re-scanning all of them, which
# costs a large room about a third of its fan-out CPU: set the start-up heap
# aside for good (gc.freeze) and collect young objects less often.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 100)
