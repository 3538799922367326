"""Every attack of tests/hostile at once, for a while, against one real `tidings run`.

The tests attack one thing at a time; this soak runs them together, each attacker in a thread of its
own from an address of its own (127.0.0.2 and up), each starting over whenever the server cuts it
off, while a bystander in the README's chat room posts numbered messages. Every second it samples the
server's memory and open files. At the end it prints what each attacker did and what the server
did to it, the server's peak memory and files, and what the bystander lost; the exit status is 1 if
the bystander lost anything or the server died.

    python -m bench.hostile                  # 60 s
    python -m bench.hostile --seconds 600    # a longer soak
    python -m bench.hostile --quick          # 10 s, as tests/bench/test_hostile_quick.py runs it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.hostile.harness import bystander, client_frame, open_fds, rss_mib, tcp, websocket
from tests.serving import TidingsProcess, tidings_process

APP = "tests/hostile/app.py:app"
ENGINE_IO = "/socket.io/?EIO=4&transport=websocket"
POLLING = "/socket.io/?EIO=4&transport=polling"
TEXT, BINARY, PING = 0x1, 0x2, 0x9


@dataclass
class Attack:
    """One attacker: ``run(server, source)`` attacks once, until the server cuts it off."""

    name: str
    run: Callable[[TidingsProcess, str], None]
    rounds: int = 0  # attacks started
    ended: int = 0  # before the soak did: cut off by the server (closed, reset, refused), or done
    errors: list[str] = field(default_factory=list)


def engineio(server: TidingsProcess, source: str, receive_buffer: int = 0) -> socket.socket:
    """A WebSocket Engine.IO session, connected to namespace "/"."""
    sock = websocket(server, ENGINE_IO, source, receive_buffer)
    sock.recv(4096)  # the open packet
    sock.sendall(client_frame(TEXT, b"40"))
    return sock


def flood(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` over and over, never reading, until the server cuts the connection off."""
    sock.settimeout(1)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            sock.sendall(data)


def ping_flood(server: TidingsProcess, source: str) -> None:
    flood(websocket(server, "/ws", source, receive_buffer=4096), client_frame(PING, b"p" * 125) * 500, STOP)


def event_flood(server: TidingsProcess, source: str) -> None:
    sock = engineio(server, source)
    threading.Thread(target=drain, args=(sock,), daemon=True).start()
    flood(sock, client_frame(TEXT, b'42["save","' + b"x" * 1000 + b'"]') * 200, STOP)


def drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(1 << 20):
            pass


def placeholders(server: TidingsProcess, source: str) -> None:
    sock = engineio(server, source)
    sock.sendall(client_frame(TEXT, b'421["subscribe","room-soak"]'))
    refs = ",".join(['{"_placeholder":true,"num":0}'] * 200).encode()
    sock.sendall(client_frame(TEXT, b'451-["message",[' + refs + b'],"room-soak"]'))
    sock.sendall(client_frame(BINARY, b"\x00" * 1_000_000))
    drain(sock)


def partial_binary(server: TidingsProcess, source: str) -> None:
    sock = engineio(server, source)
    sock.sendall(client_frame(TEXT, b'510-["save",{"_placeholder":true,"num":0}]'))  # 10 announced
    for _ in range(9):
        sock.sendall(client_frame(BINARY, b"\x00" * 100_000))
    drain(sock)


def intruder(server: TidingsProcess, source: str) -> None:
    sock = engineio(server, source)
    threading.Thread(target=drain, args=(sock,), daemon=True).start()
    flood(sock, client_frame(TEXT, b'42["message","let me in","room-private"]') * 100, STOP)


def idle(server: TidingsProcess, source: str) -> None:
    sockets = [tcp(server, source) for _ in range(20)]
    for sock in sockets:
        drain(sock)


def slowloris(server: TidingsProcess, source: str) -> None:
    sock = tcp(server, source)
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 100:
        if STOP.is_set():
            return
        sock.send(bytes((byte,)))
        time.sleep(1)


def handshakes(server: TidingsProcess, source: str) -> None:
    for _ in range(100):
        with tcp(server, source) as sock:
            sock.sendall(f"GET {POLLING} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            sock.recv(4096)
            # Reset rather than close: tens of thousands of client-side TIME-WAITs would hold the
            # machine's ephemeral ports for a minute, and other programs could not listen on them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def garbage(server: TidingsProcess, source: str) -> None:
    for _ in range(100):
        with tcp(server, source) as sock:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            drain(sock)


ATTACKS = [
    Attack("ping flood, never reading", ping_flood),
    Attack("events faster than handlers", event_flood),
    Attack("1 attachment x 200 placeholders", placeholders),
    Attack("binary attachments never all sent", partial_binary),
    Attack("posts to a refused channel", intruder),
    Attack("idle connections", idle),
    Attack("slowloris", slowloris),
    Attack("handshake flood", handshakes),
    Attack("garbage HTTP", garbage),
]
STOP = threading.Event()


def attack_forever(attack: Attack, server: TidingsProcess, source: str) -> None:
    while not STOP.is_set():
        attack.rounds += 1
        try:
            attack.run(server, source)
        except OSError:  # refused, reset, closed, timed out: the server cut it off
            attack.ended += 1
            time.sleep(0.05)
        except Exception as error:  # a finding, reported
            attack.errors.append(repr(error))
            time.sleep(0.5)
        else:
            if not STOP.is_set():
                attack.ended += 1  # the server closed it cleanly, or the round's requests are done


async def soak(seconds: float) -> dict[str, object]:
    with tidings_process(APP) as server:
        samples: list[tuple[float, int]] = []
        start_rss = rss_mib(server)
        async with bystander(server) as watcher:
            threads = [
                threading.Thread(
                    target=attack_forever, args=(attack, server, f"127.0.0.{2 + i}"), daemon=True
                )
                for i, attack in enumerate(ATTACKS)
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                assert server.process is not None and server.process.poll() is None, "the server died"
                samples.append((rss_mib(server), open_fds(server)))
            STOP.set()
        result = {
            "seconds": seconds,
            "server_rss_mib": {"start": round(start_rss, 1), "peak": round(max(s[0] for s in samples), 1)},
            "server_open_files_peak": max(s[1] for s in samples),
            "bystander_messages": watcher.sent,
            "bystander_lost": 0,  # bystander() has checked: it raises on any loss
            "attacks": {
                a.name: {"rounds": a.rounds, "ended": a.ended, "errors": a.errors[:3]} for a in ATTACKS
            },
        }
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--quick", action="store_true", help="10 s: a smoke run")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(soak(10 if args.quick else args.seconds))
    except AssertionError as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    rss = result["server_rss_mib"]
    print(f"{result['seconds']:g} s of every attack at once against `tidings run {APP}`")
    print(f"server memory: {rss['start']} MiB at start, {rss['peak']} MiB at peak")  # type: ignore[index]
    print(f"server open files at peak: {result['server_open_files_peak']}")
    print(f"bystander: {result['bystander_messages']} messages, none lost, in order")
    for name, attack in result["attacks"].items():  # type: ignore[attr-defined]
        print(f"  {name:36} {attack['rounds']:6} rounds, {attack['ended']:6} ended  {attack['errors']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
