"""The seed's web2py app on tidings: `tidings run examples/web2py/app.py:app`.

Then open http://127.0.0.1:8000/chat/default/index: its page talks to the seed's controller,
/chat/ws/websocket, over a WebSocket on the same port. What a WebSocket client says also reaches the
Socket.IO clients subscribed to the "chat" channel (see models/websocket.py).
"""

from pathlib import Path

from tidings.integrations import web2py

app = web2py.application(Path(__file__).parent)  # this folder: VERSION and applications/
