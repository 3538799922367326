"""The server layer: Engine.IO transports and Socket.IO state over ASGI, and the ``tidings`` CLI."""
