"""Fuzz targets for the decoders of hostile input, their seeds, and a mutation engine to drive them.

Each target takes any bytes and feeds them to a public decoder the way the server does. The decoder must
either decode them or raise its documented error (``ProtocolError``, ``eio.RequestError``,
``WebSocketError``, ``HandshakeError``, ``EnvelopeError``), which the target swallows: anything else
escapes as a finding. A target returns True when its input was accepted, False when it was refused.

Two engines drive the targets: atheris (coverage-guided libFuzzer, ``python -m bench.fuzz``) and
:func:`fuzz`, a plain mutation loop over the seeds below, used by the test run and wherever atheris
is not installed. :func:`check_input` adds what neither engine checks by itself: memory in proportion
to the input, and no input taking seconds.
"""

from __future__ import annotations

import hashlib
import random
import signal
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.hostile.harness import client_frame
from tidings.brokers import envelope
from tidings.message import Outgoing
from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol import socketio as sio
from tidings.protocol import websocket as ws

#: Longest input the engines make (libFuzzer's default): long enough for every header and limit here.
MAX_INPUT = 4096
#: The WebSocket parser's message limit in the target: small, so that inputs reach it.
WS_MAX_SIZE = 1000
#: What one input may allocate at its peak: this much, plus ALLOCATION_PER_BYTE per input byte. The
#: decoders were seen at up to ~40 bytes per byte (parse_qs of many short fields; decoded JSON ~25); a
#: decoder that allocates from a length it reads, or copies in a loop, goes far past.
ALLOCATION_FLOOR = 256 * 1024
ALLOCATION_PER_BYTE = 64
#: An input that takes longer than this is a finding (a hang, or work out of proportion to the input).
SLOW_INPUT_SECONDS = 2.0


def _text(data: bytes) -> str:
    """Text as the server has it: a WebSocket text message or a polling body is valid UTF-8."""
    return data.decode("utf-8", "replace")


# -- the targets ---------------------------------------------------------------------------------------


def engineio_packet(data: bytes) -> bool:
    """One Engine.IO packet from a WebSocket frame: as text, and as binary."""
    eio.decode_packet(data)
    try:
        eio.decode_packet(_text(data))
    except ProtocolError:
        return False
    return True


def engineio_payload(data: bytes) -> bool:
    """A long-polling request body: packets separated by \\x1e, binary ones as ``b<base64>``."""
    try:
        eio.decode_payload(_text(data))
    except ProtocolError:
        return False
    return True


def engineio_query(data: bytes) -> bool:
    """The query string of an Engine.IO request."""
    try:
        eio.parse_query(data)
    except eio.RequestError:
        return False
    return True


def socketio_text(data: bytes) -> bool:
    """The text part of one Socket.IO packet."""
    try:
        sio.decode_text(_text(data))
    except ProtocolError:
        return False
    return True


#: How :func:`socketio_decoder` splits its input into messages, and marks the binary ones.
MESSAGE_SEPARATOR = b"\n"
BINARY_MARK = b"\x00"


def socketio_decoder(data: bytes) -> bool:
    """The Engine.IO messages of one connection through a Socket.IO :class:`~sio.Decoder`.

    Messages are separated by a newline; one that starts with a NUL byte is a binary message (the
    rest of it), any other a text message. The server closes the connection at the first error, so
    nothing is fed after one. A packet that comes out is never of a binary type, and one that had
    attachments holds no placeholder any more.
    """
    decoder = sio.Decoder()
    for message in data.split(MESSAGE_SEPARATOR):
        try:
            if message.startswith(BINARY_MARK):
                packet = decoder.receive_binary(message[1:], 0.0)
                if packet is not None and any(_is_placeholder(value) for value in _walk(packet.data)):
                    raise AssertionError(f"a placeholder is left in the decoded packet: {packet.data!r}")
            else:
                packet = decoder.receive_text(_text(message))
        except ProtocolError:
            return False
        if packet is not None and packet.type in (sio.PacketType.BINARY_EVENT, sio.PacketType.BINARY_ACK):
            raise AssertionError(f"the decoder returned a {packet.type.name} packet")
    return True


def socketio_reconstruct(data: bytes) -> bool:
    """:func:`sio.reconstruct` of a decoded JSON list (the first line) and attachments (the next ones)."""
    text, _, rest = data.partition(MESSAGE_SEPARATOR)
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(decoded, list):
        return False
    attachments = rest.split(MESSAGE_SEPARATOR) if rest else []
    try:
        result = sio.reconstruct(decoded, attachments)
    except ProtocolError:
        return False
    if any(_is_placeholder(value) for value in _walk(result)):
        raise AssertionError(f"a placeholder is left after reconstruct: {result!r}")
    return True


def websocket_parser(data: bytes) -> bool:
    """Client frames through a :class:`ws.Parser`: at once, and in chunks of 1 to 5 bytes.

    The events and the error must not depend on how the bytes were split across reads. Except: a read
    that ends in an error loses the events it decoded before it (the connection fails anyway), so
    after an error only the errors are compared.
    """
    whole = _parse([data])
    chunk = 1 + len(data) % 5
    split = _parse([data[i : i + chunk] for i in range(0, len(data), chunk)])
    if whole[1] != split[1] or (whole[1] is None and whole[0] != split[0]):
        raise AssertionError(f"read at once: {whole!r}\nread in chunks of {chunk}: {split!r}")
    return whole[1] is None


def _parse(chunks: list[bytes]) -> tuple[list[ws.Event], tuple[int, str] | None]:
    parser = ws.Parser(WS_MAX_SIZE)
    events: list[ws.Event] = []
    for chunk in chunks:
        try:
            events.extend(parser.receive(chunk))
        except ws.WebSocketError as error:
            return events, (error.code, error.reason)
    return events, None


def websocket_handshake(data: bytes) -> bool:
    """An upgrade request head (what comes before the blank line) through parse and check."""
    try:
        ws.check_request(ws.parse_request(data))
    except ws.HandshakeError:
        return False
    return True


def broker_envelope(data: bytes) -> bool:
    """An envelope as it comes from Redis, through :func:`envelope.open_envelope`."""
    try:
        envelope.open_envelope(data)
    except envelope.EnvelopeError:
        return False
    return True


def _is_placeholder(value: Any) -> bool:
    """A placeholder exactly as SIO §"Packet encoding" writes it: one that must be replaced or refused.
    (What to make of near misses, extra keys or a ``num`` that is no int, is the decoder's choice.)"""
    return (
        type(value) is dict
        and value.keys() == {"_placeholder", "num"}
        and value["_placeholder"] is True
        and type(value["num"]) is int
    )


def _walk(data: Any) -> Iterator[Any]:
    """Every value in ``data``, containers included; iterative, as data may nest a thousand deep."""
    stack = [data]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


# -- seeds and dictionaries -------------------------------------------------------------------------


def _socketio_packets() -> list[list[str | bytes]]:
    """Encoded Socket.IO packets a client sends, binary ones with their attachments."""
    packets = [
        sio.Packet(sio.PacketType.CONNECT),
        sio.Packet(sio.PacketType.CONNECT, "/admin", {"token": "x"}),
        sio.Packet(sio.PacketType.DISCONNECT, "/admin"),
        sio.Packet(sio.PacketType.EVENT, "/", ["hello", 1, {"k": [1.5, True, None]}]),
        sio.Packet(sio.PacketType.EVENT, "/admin", ["project:delete", 123], 456),
        sio.Packet(sio.PacketType.ACK, "/", ["ok"], 13),
        sio.Packet(sio.PacketType.EVENT, "/", ["upload", b"\x01\x02\x03", {"more": b"\xff"}], 7),
        sio.Packet(sio.PacketType.ACK, "/chat", [b"", "done"], 8),
    ]
    return [sio.encode(packet) for packet in packets]


def _socketio_texts() -> list[bytes]:
    return [parts[0].encode() for parts in _socketio_packets()] + [b'51-["a",{"_placeholder":true}]']


def _socketio_connections() -> list[bytes]:
    """Each packet in :func:`socketio_decoder`'s format, and the two binary ones in a row."""
    packets = _socketio_packets()
    return [_messages(parts) for parts in packets] + [_messages([*packets[6], *packets[7], '2["after"]'])]


def _messages(parts: list[str | bytes]) -> bytes:
    return MESSAGE_SEPARATOR.join(
        BINARY_MARK + part if isinstance(part, bytes) else part.encode() for part in parts
    )


_MASK = b"\x37\xfa\x21\x3d"


def _frames(*frames: tuple[int, bytes, bool]) -> bytes:
    return b"".join(client_frame(opcode, payload, fin, _MASK) for opcode, payload, fin in frames)


_HANDSHAKE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Origin: http://127.0.0.1:8000\r\nSec-WebSocket-Extensions: permessage-deflate"
)


def _envelopes() -> list[bytes]:
    plain = envelope.body(Outgoing({"text": "hi", "n": [1, 2.5, None]}, "room", None))
    event = envelope.body(Outgoing(["a", {"b": True}], None, "update"))
    binary = envelope.body(Outgoing(["file", b"\x00\x01\n\x02", {"x": b"yz"}], "files", "upload"))
    return [
        envelope.seal(None, plain),
        envelope.seal("oSO0OpakMV_3jnilAAAA", event),
        envelope.seal("sid", binary),
        b"@42:0f3c\n" + envelope.seal(None, plain),
        b"1:\n[null,null,null,[]]",
        b'1:s\n["c","e",[{"_placeholder":true,"num":0}],[1]]\nx',
    ]


_JSON_TOKENS = [b'"', b"[", b"]", b"{", b"}", b",", b":", b"null", b"true", b"-", b"1e400", b"\\u0000"]
_NUMBERS = [b"0", b"-1", b"4294967296", b"9223372036854775808", b"18446744073709551616", b"9" * 30]
_PLACEHOLDER = [b'{"_placeholder":true,"num":0}', b'"_placeholder"', b'"num":']


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], bool]
    seeds: Callable[[], list[bytes]]  # built when needed: the encoders then run only in a fuzzing process
    dictionary: list[bytes] = field(default_factory=list)  # tokens the mutators splice in


TARGETS = {
    target.name: target
    for target in (
        Target(
            "engineio_packet",
            engineio_packet,
            lambda: [b"2", b"3", b"2probe", b"3probe", b"5", b"6", b"1", b"4hello", b'42["a",1]'],
            [b"probe", b"4", b"\xff"],
        ),
        Target(
            "engineio_payload",
            engineio_payload,
            lambda: [
                eio.encode_payload(["4hello", b"\x01\x02\x03", "2", "6"]).encode(),
                eio.encode_payload(['42["a",1]', "40/admin,"]).encode(),
                eio.encode_payload([b"\xff" * 10]).encode(),
            ],
            [eio.RECORD_SEPARATOR.encode(), b"b", b"AQID", b"=", b"=="],
        ),
        Target(
            "engineio_query",
            engineio_query,
            lambda: [
                b"EIO=4&transport=polling&t=N8hyd6w",
                b"EIO=4&transport=websocket&sid=oSO0OpakMV_3jnilAAAA",
                b"EIO=3&transport=polling&j=0",
            ],
            [b"&", b"=", b"%", b"%00", b"%ff", b";", b"+", b"EIO=", b"transport=", b"sid="],
        ),
        Target(
            "socketio_text",
            socketio_text,
            _socketio_texts,
            [*_JSON_TOKENS, *_NUMBERS, *_PLACEHOLDER, b"/", b",", b"1-", b"999-"],
        ),
        Target(
            "socketio_decoder",
            socketio_decoder,
            _socketio_connections,
            [*_JSON_TOKENS, *_NUMBERS, *_PLACEHOLDER, MESSAGE_SEPARATOR, MESSAGE_SEPARATOR + BINARY_MARK],
        ),
        Target(
            "socketio_reconstruct",
            socketio_reconstruct,
            lambda: [
                b'["a",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]\n\x01\x02\nxyz',
                b'[{"k":{"_placeholder":true,"num":0}}]\n',
                b'[[[{"_placeholder":true,"num":0}]]]\n\xff',
            ],
            [*_JSON_TOKENS, *_NUMBERS, *_PLACEHOLDER, MESSAGE_SEPARATOR],
        ),
        Target(
            "websocket_parser",
            websocket_parser,
            lambda: [
                _frames((ws.TEXT, b'42["hello",1]', True), (ws.BINARY, b"\x00\x01\x02", True)),
                _frames((ws.TEXT, b"h\xc3", False), (ws.PING, b"p", True), (ws.CONTINUATION, b"\xa9!", True)),
                _frames((ws.PONG, b"", True), (ws.BINARY, b"x" * 300, True)),
                _frames((ws.CLOSE, b"\x03\xe8bye", True)),
                _frames((ws.CLOSE, b"", True), (ws.TEXT, b"after", True)),
            ],
            [b"\x81\x80", b"\x82\xfe", b"\x88\x82", b"\x80\xff", b"\x00\x00\x00\x00", b"\x03\xe8", b"\xc3"],
        ),
        Target(
            "websocket_handshake",
            websocket_handshake,
            lambda: [_HANDSHAKE, _HANDSHAKE.replace(b"13", b"8"), b"GET / HTTP/1.1\r\nUpgrade: websocket"],
            [b"\r\n", b": ", b",", b" ", b"Upgrade", b"websocket", b"Sec-WebSocket-Key: ", b"=="],
        ),
        Target(
            "broker_envelope",
            broker_envelope,
            _envelopes,
            [*_JSON_TOKENS, *_NUMBERS, *_PLACEHOLDER, b"1:", b"@", b"\n", b"[0]", b"[1,1]"],
        ),
    )
}


# -- checks common to both engines --------------------------------------------------------------------


class Finding(Exception):
    """An input that broke a decoder's contract (the cause, when another exception, is chained)."""


def check_input(target: Target, data: bytes, measure_memory: bool = False) -> bool:
    """Run ``target`` on ``data``; raise :class:`Finding` for anything but a decode or its error.

    ``measure_memory`` traces the allocations of this input (slow: the engines do it for a sample).
    """
    if measure_memory:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        accepted = target.run(data)
    except Finding:
        raise
    except Exception as error:  # RecursionError and MemoryError too
        raise Finding(f"{type(error).__name__}: {error}") from error
    finally:
        if measure_memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    elapsed = time.perf_counter() - started
    if elapsed > SLOW_INPUT_SECONDS:
        raise Finding(f"took {elapsed:.1f} s")
    if measure_memory and peak > ALLOCATION_FLOOR + ALLOCATION_PER_BYTE * len(data):
        raise Finding(f"allocated {peak:,} bytes at its peak for {len(data):,} bytes of input")
    return accepted


# -- the mutation engine ------------------------------------------------------------------------------

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7E, 0x0A, 0x1E, 0x2C, 0x2D, 0x2F, 0x30, 0x39, 0x22, 0x5B, 0x7B)
#: The corpus keeps this many accepted mutants; past it a new one replaces a random one.
CORPUS_SIZE = 1000


class Mutator:
    """Inputs made by stacking 1 to 4 random edits on a seed or on a kept mutant, half the time each.

    The mutants kept are those the target accepted: with no coverage to guide it, "decoded" is the
    signal that an input reached past the first checks. The seeds keep their half of the picks, so
    that their variety of shapes is not drowned by a thousand mutants of the longest one.
    """

    def __init__(self, seeds: list[bytes], dictionary: list[bytes], rng: random.Random) -> None:
        self.seeds = seeds
        self.kept: list[bytes] = []
        self.dictionary = dictionary or [b"\x00"]
        self.rng = rng
        self._edits = (
            self._flip_bit,
            self._set_byte,
            self._insert_bytes,
            self._delete,
            self._duplicate,
            self._insert_token,
            self._replace_with_token,
            self._replace_group,
            self._splice,
            self._truncate,
        )

    def next(self) -> bytes:
        data = self._pick()
        for _ in range(self.rng.randint(1, 4)):
            data = self.rng.choice(self._edits)(data)
        return data[:MAX_INPUT]

    def keep(self, data: bytes) -> None:
        if len(self.kept) < CORPUS_SIZE:
            self.kept.append(data)
        else:
            self.kept[self.rng.randrange(CORPUS_SIZE)] = data

    def _pick(self) -> bytes:
        return self.rng.choice(self.kept if self.kept and self.rng.random() < 0.5 else self.seeds)

    def _position(self, data: bytes) -> int:
        return self.rng.randint(0, len(data))

    def _flip_bit(self, data: bytes) -> bytes:
        if not data:
            return bytes((self.rng.randrange(256),))
        i = self.rng.randrange(len(data))
        return data[:i] + bytes((data[i] ^ (1 << self.rng.randrange(8)),)) + data[i + 1 :]

    def _set_byte(self, data: bytes) -> bytes:
        i = self._position(data)
        return data[:i] + bytes((self.rng.choice(_INTERESTING),)) + data[i + 1 :]

    def _insert_bytes(self, data: bytes) -> bytes:
        i = self._position(data)
        return data[:i] + self.rng.randbytes(self.rng.randint(1, 8)) + data[i:]

    def _delete(self, data: bytes) -> bytes:
        i = self._position(data)
        return data[:i] + data[i + self.rng.randint(1, 16) :]

    def _duplicate(self, data: bytes) -> bytes:
        """Repeat a slice, up to 64 times: deep nesting, long lists, many headers."""
        i = self._position(data)
        piece = data[i : i + self.rng.randint(1, 32)]
        return data[:i] + piece * self.rng.choice((2, 2, 2, 8, 64)) + data[i:]

    def _insert_token(self, data: bytes) -> bytes:
        i = self._position(data)
        return data[:i] + self.rng.choice(self.dictionary) + data[i:]

    def _replace_with_token(self, data: bytes) -> bytes:
        """A token in place of a slice of any length: a value for another of another type."""
        i = self._position(data)
        return data[:i] + self.rng.choice(self.dictionary) + data[self.rng.randint(i, len(data)) :]

    def _replace_group(self, data: bytes) -> bytes:
        """A token in place of a JSON array or object (brackets counted, strings not parsed)."""
        starts = [i for i, byte in enumerate(data) if byte in b"[{"]
        if not starts:
            return self._insert_token(data)
        start = end = self.rng.choice(starts)
        depth = 0
        for end in range(start, len(data)):
            depth += (data[end] in b"[{") - (data[end] in b"]}")
            if depth == 0:
                break
        return data[:start] + self.rng.choice(self.dictionary) + data[end + 1 :]

    def _splice(self, data: bytes) -> bytes:
        other = self._pick()
        return data[: self._position(data)] + other[self.rng.randint(0, len(other)) :]

    def _truncate(self, data: bytes) -> bytes:
        return data[: self._position(data)]


@dataclass
class Report:
    target: str
    inputs: int = 0
    accepted: int = 0
    seconds: float = 0.0
    findings: list[tuple[bytes, str]] = field(default_factory=list)  # (input, traceback)


#: One input in this many has its allocations traced.
MEMORY_SAMPLE = 100
#: A run stops collecting after this many distinct findings.
MAX_FINDINGS = 20


def fuzz(
    target: Target, inputs: int, seed: int = 0, progress: Callable[[Report], None] | None = None
) -> Report:
    """Run ``target`` on its seeds, then on mutants, ``inputs`` in all; distinct findings are kept.

    Findings count as distinct by where they were raised; ``progress`` is called every 100,000 inputs.
    """
    rng = random.Random(seed)
    mutator = Mutator(target.seeds(), target.dictionary, rng)
    report = Report(target.name)
    seen: set[str] = set()
    pending = list(mutator.seeds)
    started = time.perf_counter()
    with _deadline():
        for count in range(inputs):
            data = pending.pop() if pending else mutator.next()
            try:
                signal.setitimer(signal.ITIMER_REAL, SLOW_INPUT_SECONDS)
                accepted = check_input(target, data, measure_memory=count % MEMORY_SAMPLE == 0)
            except Finding as finding:
                where = _where(finding)
                if where not in seen and len(seen) < MAX_FINDINGS:
                    seen.add(where)
                    report.findings.append((data, "".join(traceback.format_exception(finding))))
                continue
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                report.inputs = count + 1
            if accepted:
                report.accepted += 1
                if not pending:
                    mutator.keep(data)
            if progress is not None and report.inputs % 100_000 == 0:
                report.seconds = time.perf_counter() - started
                progress(report)
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _deadline() -> Iterator[None]:
    """While it lasts, SIGALRM raises :class:`Finding`: an input still running when the timer set for
    it expires is a hang (a hang in Python code: C code is stopped only when it returns)."""

    def expire(signum: int, frame: object) -> None:
        raise Finding(f"still running after {SLOW_INPUT_SECONDS} s")

    # A timer already set (pytest-timeout's) is put back afterwards, less the time spent here.
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def _where(finding: Finding) -> str:
    """The exception type and the innermost frame that raised it: one finding per distinct bug."""
    error: BaseException = finding.__cause__ or finding
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    location = f"{last.filename}:{last.lineno}" if last else ""
    kind = "" if finding.__cause__ else str(finding).split()[0]  # "allocated", "took", "still"
    return f"{type(error).__name__} {location} {kind}"


def input_name(target: str, data: bytes) -> str:
    """A file name for a finding's input: the target and the input's hash."""
    return f"{target}-{hashlib.sha1(data).hexdigest()[:16]}"
