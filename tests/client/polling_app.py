"""The channels app (tests/channels/app.py) offering HTTP long-polling only, as behind a proxy that
cannot pass WebSockets: `tidings run tests/client/polling_app.py:app`. WebSocket requests are refused.
"""

from __future__ import annotations

import tidings
from tests.channels import app as channels  # its handlers go to tidings' default registry

app = tidings.Server(wsgi_app=channels.publish, transports=["polling"], ping_interval=0.5, ping_timeout=0.5)
