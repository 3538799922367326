"""The Socket.IO connection of one session as a sans-I/O object: strings and floats in, what the
client asks for and what to send out.

Spec: https://socket.io/docs/v4/socket-io-protocol/, SIO §"Connection to a namespace", §"Sending and
receiving data", §"Acknowledgement".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tidings.errors import IllegalTransition
from tidings.protocol import ProtocolError
from tidings.protocol.socketio import (
    TRANSITIONS,
    AckReceived,
    BaseSocket,
    Connection,
    ConnectRequest,
    DisconnectRequest,
    Packet,
    PacketType,
    SocketState,
    Step,
    ack,
    connect_error,
    namespace_disconnect,
)

PLACEHOLDER_0 = '{"_placeholder":true,"num":0}'


def connected(connection: Connection[BaseSocket], namespace: str = "/") -> BaseSocket:
    socket = BaseSocket(namespace)
    connection.open(socket)
    connection.accept(socket, "sid")
    return socket


class Acks:
    """Ack callbacks that write down what they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any] | None]] = []

    def __call__(self, name: str) -> Any:
        return lambda args: self.calls.append((name, args))


# -- connecting to a namespace ----------------------------------------------------------------------


def test_connect_accept_then_events() -> None:
    connection: Connection[BaseSocket] = Connection()
    request = connection.receive_text('0/admin,{"token":"x"}')
    assert request == ConnectRequest("/admin", {"token": "x"})
    socket = BaseSocket("/admin")
    connection.open(socket)
    assert socket._state is SocketState.CONNECTING and connection.sockets == {"/admin": socket}
    assert connection.receive_text('2/admin,["early"]') is None  # before the CONNECT reply: ignored
    assert connection.receive_text("0/admin,") is None  # a second CONNECT: ignored

    socket._pending.append(socket._event("welcome", ["in"]))  # emitted by a connect handler
    assert connection.accept(socket, "abc") == [['40/admin,{"sid":"abc"}'], ['42/admin,["welcome","in"]']]
    assert socket.connected and socket._pending == []
    assert connection.receive_text('2/admin,7["chat","hi"]') == Packet(
        PacketType.EVENT, "/admin", ["chat", "hi"], 7
    )
    assert connection.receive_text('2["chat"]') is None  # "/" is not connected


def test_connect_without_payload_has_empty_auth() -> None:
    assert Connection().receive_text("0") == ConnectRequest("/", {})


def test_refused_connect() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = BaseSocket("/")
    connection.open(socket)
    socket._pending.append(socket._event("never", []))
    connection.drop(socket)
    assert socket._state is SocketState.DISCONNECTED
    assert connection.sockets == {} and socket._pending == []
    assert connection.receive_text("0") == ConnectRequest("/", {})  # it may ask again


def test_client_disconnects() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = connected(connection, "/chat")
    acks = Acks()
    socket._event("question", [], acks("waiting"))
    assert connection.receive_text("1/chat,") == DisconnectRequest(socket)
    assert socket.connected  # the server decides when it is out
    callbacks = connection.disconnect(socket)
    for callback in callbacks:
        callback(None)
    assert acks.calls == [("waiting", None)]  # no ack will come
    assert socket._state is SocketState.DISCONNECTED and connection.sockets == {}
    assert connection.receive_text('2/chat,["late"]') is None
    assert connection.receive_text("1/chat,") is None


def test_disconnect_of_a_namespace_not_connected_is_ignored() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = BaseSocket("/")
    connection.open(socket)
    assert connection.receive_text("1") is None  # CONNECTING: as the reference server, ignored
    assert connection.receive_text("1/other,") is None


@pytest.mark.parametrize("text", ['4{"message":"no"}', '4/admin,"no"'])
def test_packets_only_a_server_sends(text: str) -> None:
    with pytest.raises(ProtocolError, match=r"^unexpected CONNECT_ERROR packet from a client$"):
        Connection().receive_text(text)


# -- the one transition table -----------------------------------------------------------------------


def socket_in(state: SocketState, connection: Connection[BaseSocket]) -> BaseSocket:
    socket = BaseSocket("/")
    connection.open(socket)
    if state is SocketState.CONNECTED:
        connection.accept(socket, "sid")
    elif state is SocketState.DISCONNECTED:
        connection.drop(socket)
    return socket


STEPS: dict[Step, Callable[[Connection[BaseSocket], BaseSocket], object]] = {
    "accept": lambda connection, socket: connection.accept(socket, "sid"),
    "drop": Connection.drop,
    "disconnect": Connection.disconnect,
}


@pytest.mark.parametrize("state", list(SocketState))
@pytest.mark.parametrize("step", list(STEPS))
def test_every_move_follows_the_table(state: SocketState, step: Step) -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = socket_in(state, connection)
    if (state, step) in TRANSITIONS:
        STEPS[step](connection, socket)
        assert socket._state is TRANSITIONS[state, step]
        assert ("/" in connection.sockets) is socket.connected
    else:
        with pytest.raises(IllegalTransition, match=rf"^cannot {step} the socket in /: it is {state.value}$"):
            STEPS[step](connection, socket)
        assert socket._state is state


def test_a_namespace_is_opened_once() -> None:
    connection: Connection[BaseSocket] = Connection()
    connection.open(BaseSocket("/"))
    with pytest.raises(IllegalTransition):
        connection.open(BaseSocket("/"))


def test_a_socket_is_opened_once() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = socket_in(SocketState.DISCONNECTED, connection)
    with pytest.raises(IllegalTransition):
        connection.open(socket)


# -- max_namespaces ---------------------------------------------------------------------------------


def test_max_namespaces() -> None:
    connection: Connection[BaseSocket] = Connection(max_namespaces=2)
    first = connected(connection, "/")
    connection.open(BaseSocket("/a"))  # CONNECTING counts
    assert connection.full
    assert connection.receive_text("0/b,") == ConnectRequest("/b", {})  # the server refuses it
    with pytest.raises(IllegalTransition):
        connection.open(BaseSocket("/b"))
    connection.disconnect(first)
    assert not connection.full
    connection.open(BaseSocket("/b"))


# -- acks -------------------------------------------------------------------------------------------


def test_acks_of_the_server_events() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = connected(connection, "/admin")
    acks = Acks()
    assert socket._event("one", [1], acks("one")) == ['42/admin,0["one",1]']
    assert socket._event("two", [], acks("two")) == ['42/admin,1["two"]']
    assert socket._event("no ack", []) == ['42/admin,["no ack"]']

    received = connection.receive_text('3/admin,1["b",2]')
    assert isinstance(received, AckReceived) and received.args == ["b", 2]
    received.callback(received.args)
    assert connection.receive_text('3/admin,1["again"]') is None  # each ack id is answered once
    assert connection.receive_text('3/admin,9["never asked"]') is None
    assert connection.receive_text('3/other,0["elsewhere"]') is None
    assert acks.calls == [("two", ["b", 2])]
    assert [callback is not None for callback in connection.disconnect(socket)] == [True]  # "one"


def test_binary_ack() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = connected(connection)
    acks = Acks()
    socket._event("upload?", [], acks("upload"))
    assert connection.receive_text(f"61-0[{PLACEHOLDER_0}]") is None
    assert connection.decoder.awaiting_attachments
    received = connection.receive_binary(b"\x01", 0.0)
    assert isinstance(received, AckReceived) and received.args == [b"\x01"]


def test_an_event_that_cannot_be_encoded_leaves_no_ack_waiting() -> None:
    connection: Connection[BaseSocket] = Connection()
    socket = connected(connection)
    with pytest.raises(TypeError):
        socket._event("bad", [object()], Acks()("bad"))
    assert connection.disconnect(socket) == []


# -- binary events and their deadline, on a clock of the test's -------------------------------------


def test_binary_event_in_time() -> None:
    connection: Connection[BaseSocket] = Connection(attachment_timeout=10)
    connected(connection)
    now = 1000.0
    assert connection.receive_text(f'51-["upload",{PLACEHOLDER_0}]') is None
    assert connection.decoder.start_deadline(now) == 1010.0
    now += 9.5
    connection.decoder.check_deadline(now)  # the owner's timer fired a bit early: nothing due
    assert connection.receive_binary(b"data", now) == Packet(PacketType.EVENT, "/", ["upload", b"data"])
    assert connection.decoder.deadline is None


def test_binary_event_overdue() -> None:
    connection: Connection[BaseSocket] = Connection(attachment_timeout=10)
    connected(connection)
    now = 1000.0
    assert connection.receive_text(f'51-["upload",{PLACEHOLDER_0}]') is None
    deadline = connection.decoder.start_deadline(now)
    with pytest.raises(ProtocolError, match=r"^binary attachments not received within 10s$"):
        connection.decoder.check_deadline(deadline)
    with pytest.raises(ProtocolError, match=r"^unexpected binary message$"):
        connection.receive_binary(b"late", deadline + 1)


def test_binary_event_of_a_namespace_not_connected_is_ignored() -> None:
    connection: Connection[BaseSocket] = Connection()
    assert connection.receive_text(f'51-/admin,["upload",{PLACEHOLDER_0}]') is None
    assert connection.decoder.awaiting_attachments
    assert connection.receive_binary(b"data", 0.0) is None
    assert not connection.decoder.awaiting_attachments


# -- what the server sends --------------------------------------------------------------------------


def test_connect_error() -> None:
    assert connect_error("/", "Not authorized") == ['44{"message":"Not authorized"}']
    assert connect_error("/admin", "no", {"retry": False}) == [
        '44/admin,{"message":"no","data":{"retry":false}}'
    ]
    with pytest.raises(TypeError):
        connect_error("/", "no", b"bytes")  # a CONNECT_ERROR carries no attachments


def test_namespace_disconnect() -> None:
    assert namespace_disconnect("/") == ["41"]
    assert namespace_disconnect("/admin") == ["41/admin,"]


def test_ack() -> None:
    assert ack("/", 3, ["ok"]) == ['433["ok"]']
    assert ack("/admin", 4, []) == ["43/admin,4[]"]
    assert ack("/", 5, [b"\x00"]) == [f"461-5[{PLACEHOLDER_0}]", b"\x00"]
    assert ack("/", 6, [{"nested": [1, None, "é"]}]) == ['436[{"nested":[1,null,"é"]}]']
    with pytest.raises(TypeError):
        ack("/", 7, [{1, 2}])  # JSON holds no set
