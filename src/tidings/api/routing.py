"""Where a message goes: the one way every send of tidings takes to the broker."""

from __future__ import annotations

from tidings.brokers import Broker
from tidings.message import Outgoing, socketio_packets, wire_form


def prepare(outgoing: Outgoing, namespace: str, broker: Broker) -> Outgoing:
    """Encode ``outgoing`` now, in the calling thread, for the trip ``broker`` sends it on.

    A message JSON cannot hold raises ``TypeError`` here, at the caller. With the memory broker the
    Socket.IO packets for ``namespace`` are built, so the event loop is left only the writes for the
    (usual) case that every recipient is in that namespace; a remote broker encodes its envelope.
    """
    if broker.remote:
        broker.prepare(outgoing)
    else:
        outgoing.encoded(wire_form(namespace), socketio_packets, namespace)
    return outgoing
