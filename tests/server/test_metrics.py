"""Prometheus metrics at ``metrics_path``: a known run over real sockets, then a scrape read with
prometheus-client's own parser and checked count by count; the bytes sent against what the clients
read; the origin check; and `tidings run --workers 2`, where a scrape of any worker adds up all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio
import socketio
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.server.apps.metrics import make_server
from tests.serving import ThreadedServer, tidings_process
from tidings.brokers.redis import RedisBroker
from tidings.server import metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by its name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(samples: Samples, name: str, label: str | None = None) -> dict[str, float]:
    """The samples called ``name``, by the value of ``label`` ("" for a sample without labels)."""
    found = {}
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            found[dict(labels).get(label, "") if label else ""] = value
    return found


async def scrape(base_url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.get("/metrics", headers=headers)


@contextlib.asynccontextmanager
async def sio_client(base_url: str, transports: list[str]) -> AsyncIterator[socketio.AsyncClient]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(base_url, transports=transports, wait_timeout=10)
    try:
        yield client
    finally:
        await client.disconnect()


def ws_url(base_url: str) -> str:
    return base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"


async def polling_session(http: httpx.AsyncClient) -> dict[str, str]:
    """Handshake and connect "/" over polling; the query parameters of the session."""
    handshake = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    sid = json.loads(handshake.text[1:])["sid"]
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    await http.post("/socket.io/", params=params, content="40")
    assert (await http.get("/socket.io/", params=params)).text.startswith("40{")
    return params


async def until_closed(ws) -> None:
    """Read (answering nothing) until the server closes the connection."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)


async def test_a_known_run_is_counted_exactly() -> None:
    app = make_server(ping_interval=1.0, ping_timeout=1.0, max_buffer=64_000, metrics_event_names=5)
    with ThreadedServer(app) as server:
        base = server.url
        got: list[object] = []
        async with (
            sio_client(base, ["websocket"]) as first,
            sio_client(base, ["websocket"]) as second,
            sio_client(base, ["polling"]) as polling,
            sio_client(base, ["polling", "websocket"]) as upgraded,
        ):
            first.on("message", lambda *args: got.append(args))
            for _ in range(3):
                assert await first.call("chat", "hi") == "HI"
            assert await first.call("boom") is None  # it raised: logged, no answer
            assert await first.call("subscribe", "room") == {"ok": True}
            await second.call("shout", "hello room")  # to the room, which `first` is in
            # History recoveries: one recovered, one from a history epoch the server never had.
            news = await second.call("subscribe", "news")
            since = {"offset": news["offset"], "epoch": news["epoch"]}
            assert (await polling.call("subscribe", ("news", {"since": since})))["recovered"] is True
            gone = {"since": {"offset": 0, "epoch": "not-this-one"}}
            assert (await upgraded.call("subscribe", ("news", gone)))["reason"] == "epoch changed"
            for _ in range(100):
                if upgraded.transport() == "websocket":
                    break
                await asyncio.sleep(0.05)
            assert upgraded.transport() == "websocket"
            assert got == [("hello room", "room")]

            async with httpx.AsyncClient(base_url=base) as http:  # a consumer that stops reading
                params = await polling_session(http)
                await http.post("/socket.io/", params=params, content='42["flood",100,1000]')
                answer = None
                for _ in range(100):
                    answer = await http.get("/socket.io/", params=params)
                    if answer.status_code == 400:
                        break
                assert answer is not None and answer.json()["message"] == "Session ID unknown"
            # Event names past metrics_event_names (5: chat, boom, subscribe, shout, flood) are "other".
            await first.emit("made-up-1")
            await first.emit("made-up-2")
            assert await first.call("chat", "in order") == "IN ORDER"  # after the two above
            async with connect(ws_url(base)) as silent:  # never answers a ping
                await silent.recv()
                await silent.send("40")
                await until_closed(silent)
            async with connect(ws_url(base)) as broken:  # sends what is no Engine.IO packet
                await broken.recv()
                await broken.send("9nonsense")
                await until_closed(broken)

            async with connect(base.replace("http", "ws", 1) + "/echo") as plain:  # a plain WebSocket
                await plain.send("ping")
                assert await plain.recv() == "ping"
                samples = parse((await scrape(base)).text)

        connections = {
            (dict(labels)["transport"], dict(labels)["namespace"]): value
            for (name, labels), value in samples.items()
            if name == "tidings_connections"
        }
        assert connections == {("websocket", "/"): 3, ("polling", "/"): 1, ("plain", "/echo"): 1}
        assert series(samples, "tidings_sessions_opened_total", "transport") == {"websocket": 4, "polling": 3}
        assert series(samples, "tidings_sessions_closed_total", "reason") == {
            "send buffer full": 1,
            "ping timeout": 1,
            "protocol error": 1,
        }
        assert series(samples, "tidings_upgrades_total") == {"": 1}
        assert series(samples, "tidings_events_received_total", "event") == {
            "chat": 4,
            "boom": 1,
            "subscribe": 4,
            "shout": 1,
            "flood": 1,
            "other": 2,
        }
        assert series(samples, "tidings_deliveries_total") == {"": 1}
        assert series(samples, "tidings_broadcasts_total") == {"": 1}
        assert series(samples, "tidings_slow_consumers_cut_total") == {"": 1}
        assert series(samples, "tidings_handler_seconds_count", "handler") == {
            "chat": 4,
            "boom": 1,
            "shout": 1,
            "flood": 1,
        }
        infinite = {
            dict(labels)["handler"]: value
            for (name, labels), value in samples.items()
            if name == "tidings_handler_seconds_bucket" and dict(labels)["le"] == "+Inf"
        }
        assert infinite == {"chat": 4, "boom": 1, "shout": 1, "flood": 1}
        assert series(samples, "tidings_handler_errors_total", "handler") == {"boom": 1}
        assert series(samples, "tidings_subscriptions") == {"": 4}  # room, and news three times
        assert series(samples, "tidings_channels") == {"": 2}
        assert series(samples, "tidings_handler_queue") == {"": 0}
        assert series(samples, "tidings_history_recoveries_total", "outcome") == {
            "recovered": 1,
            "epoch changed": 1,
        }
        assert series(samples, "tidings_broker_reconnects_total") == {"": 0}
        assert series(samples, "tidings_broker_sheds_total") == {"": 0}
        assert series(samples, "tidings_broker_backlog_bytes") == {"": 0}
        assert series(samples, "tidings_broker_publish_seconds_count") == {}  # the memory broker has none
        assert series(samples, "tidings_broker_lag_seconds") == {}

        # Every client gone: no socket connected, every session opened is closed.
        for _ in range(100):
            after = parse((await scrape(base)).text)
            if sum(series(after, "tidings_sessions_closed_total", "reason").values()) == 7:
                break
            await asyncio.sleep(0.05)
        assert sum(series(after, "tidings_sessions_closed_total", "reason").values()) == 7
        assert series(after, "tidings_connections", "transport") == {}
        assert series(after, "tidings_subscriptions") == {"": 0}


class RawWebSocket:
    """A WebSocket client on a bare TCP connection, which counts every byte the server writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.read = 0

    @classmethod
    async def open(cls, port: int) -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        client = cls(reader, writer)
        head = await client._exactly(0, until=b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    async def _exactly(self, size: int, until: bytes | None = None) -> bytes:
        data = await asyncio.wait_for(
            self.reader.readuntil(until) if until else self.reader.readexactly(size), 10
        )
        self.read += len(data)
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (the server's are short and unmasked here)."""
        first, length = await self._exactly(2)
        assert length < 126
        return first & 0x0F, await self._exactly(length)

    def send(self, opcode: int, payload: bytes) -> None:
        key = b"\x01\x02\x03\x04"
        masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked)

    async def text(self) -> str:
        opcode, payload = await self.frame()
        assert opcode == 1, opcode
        return payload.decode()

    async def close(self) -> None:
        """Close with 1000 and read to the end of the connection."""
        self.send(8, (1000).to_bytes(2, "big"))
        assert (await self.frame())[0] == 8
        rest = await asyncio.wait_for(self.reader.read(), 10)
        self.read += len(rest)
        self.writer.close()


async def test_the_bytes_sent_are_the_bytes_the_clients_read() -> None:
    with ThreadedServer(make_server()) as server:
        ws = await RawWebSocket.open(server.port)
        assert (await ws.text()).startswith("0{")
        ws.send(1, b"40")
        assert (await ws.text()).startswith("40{")
        ws.send(1, b'421["chat","bytes"]')
        assert await ws.text() == '431["BYTES"]'
        await ws.close()

        polled = 0
        async with httpx.AsyncClient(base_url=server.url) as http:
            handshake = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
            params = {"EIO": "4", "transport": "polling", "sid": json.loads(handshake.text[1:])["sid"]}
            await http.post("/socket.io/", params=params, content="40")
            connected = await http.get("/socket.io/", params=params)
            await http.post("/socket.io/", params=params, content='421["chat","poll"]')
            acked = await http.get("/socket.io/", params=params)
            assert acked.text == '431["POLL"]'
            await http.post("/socket.io/", params=params, content="1")
            polled = len(handshake.content) + len(connected.content) + len(acked.content)

        samples = parse((await scrape(server.url)).text)
        assert series(samples, "tidings_sent_bytes_total", "transport") == {
            "websocket": ws.read,
            "polling": polled,
        }


async def test_browser_pages_of_refused_origins_get_403() -> None:
    app = make_server(cors_allowed_origins=["https://ops.example.org"])
    with ThreadedServer(app) as server:
        assert (await scrape(server.url, origin="https://evil.example.com")).status_code == 403
        assert (await scrape(server.url, origin="null")).status_code == 403
        allowed = await scrape(server.url, origin="https://ops.example.org")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://ops.example.org"
        plain = await scrape(server.url)  # no Origin: Prometheus, curl
        assert plain.status_code == 200
        assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "tidings_sessions_opened_total" in plain.text


async def test_no_metrics_path_no_metrics() -> None:
    with ThreadedServer(make_server(metrics_path=None)) as server:
        assert (await scrape(server.url)).status_code == 404


async def test_a_scrape_of_any_worker_reports_every_workers_totals() -> None:
    with tidings_process("tests.server.apps.metrics:server", "--workers", "2") as server:
        clients: list[socketio.AsyncClient] = []
        pids: set[int] = set()
        served: list[int] = []  # the worker of each client
        try:
            while len(pids) < 2:  # the kernel hands connections to either worker
                assert len(clients) < 60, "every connection went to one worker"
                client = socketio.AsyncClient(reconnection=False)
                await client.connect(server.url, transports=["websocket"], wait_timeout=10)
                clients.append(client)
                served.append(await client.call("pid"))
                pids.add(served[-1])
            for client in clients:
                assert await client.call("chat", "hi") == "HI"
            for _ in range(6):  # each scrape is answered by one worker or the other
                samples = parse((await scrape(server.url)).text)
                assert series(samples, "tidings_events_received_total", "event") == {
                    "pid": len(clients),
                    "chat": len(clients),
                }
                assert series(samples, "tidings_sessions_opened_total", "transport") == {
                    "websocket": len(clients),
                    "polling": 0,
                }
                assert series(samples, "tidings_connections", "transport") == {"websocket": len(clients)}
                assert series(samples, "tidings_handler_seconds_count", "handler") == {
                    "pid": len(clients),
                    "chat": len(clients),
                }

            # A worker that stops leaves its counters behind: the totals do not go back.
            stopped = min(pids)
            os.kill(stopped, signal.SIGTERM)
            gone = [client for client, served_by in zip(clients, served, strict=True) if served_by == stopped]
            for _ in range(200):
                if not any(client.connected for client in gone):
                    break
                await asyncio.sleep(0.05)
            assert not any(client.connected for client in gone)
            for _ in range(6):
                samples = parse((await scrape(server.url)).text)
                assert series(samples, "tidings_events_received_total", "event") == {
                    "pid": len(clients),
                    "chat": len(clients),
                }
                assert series(samples, "tidings_connections", "transport") == {
                    "websocket": len(clients) - len(gone)
                }
                closed = series(samples, "tidings_sessions_closed_total", "reason")  # 1012, or at shutdown
                assert sum(closed.values()) == len(gone)
        finally:
            for client in clients:
                await client.disconnect()


async def test_the_redis_brokers_publishes_and_reconnects() -> None:
    prefix = f"tidings-metrics-{uuid.uuid4().hex[:8]}"
    app = make_server(broker=RedisBroker("redis://127.0.0.1:6379/0", prefix))
    with ThreadedServer(app) as server:
        async with (
            sio_client(server.url, ["websocket"]) as member,
            sio_client(server.url, ["websocket"]) as other,
        ):
            assert await member.call("subscribe", "room") == {"ok": True}
            await other.call("shout", "through Redis")
            samples = parse((await scrape(server.url)).text)
            publishes = series(samples, "tidings_broker_publish_seconds_count")[""]
            assert publishes >= 1  # batched: how many pipelines carried the commands varies
            assert series(samples, "tidings_broker_reconnects_total") == {"": 0}
            # Measured at the scrape: a probe this node published came back through Redis.
            assert series(samples, "tidings_broker_lag_seconds")[""] >= 0

            # Redis drops the node's subscriber connection (as a restart would): it reconnects once.
            connection = app.socketio.hub.broker._subscriptions.pubsub.connection
            host, port = connection._writer.get_extra_info("sockname")[:2]
            killer = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
            try:
                assert await killer.client_kill_filter(_type=None, addr=f"{host}:{port}") == 1
            finally:
                await killer.aclose()
            for _ in range(100):
                samples = parse((await scrape(server.url)).text)
                if series(samples, "tidings_broker_reconnects_total") == {"": 1}:
                    break
                await asyncio.sleep(0.05)
            assert series(samples, "tidings_broker_reconnects_total") == {"": 1}


async def test_scrapes_in_a_loop_measure_the_lag_once_an_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each lag measure publishes a probe through Redis: a client scraping in a loop gets the last
    measure until LAG_INTERVAL has passed, not a probe per scrape (seen on the probe topic in Redis)."""
    monkeypatch.setattr(metrics, "LAG_INTERVAL", 3600.0)
    prefix = f"tidings-metrics-{uuid.uuid4().hex[:8]}"
    app = make_server(broker=RedisBroker("redis://127.0.0.1:6379/0", prefix))
    with ThreadedServer(app) as server:
        watcher = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
        pubsub = watcher.pubsub()
        try:
            await pubsub.subscribe(f"{prefix}probe:{app.socketio.hub.broker.node_id}")
            lags = [
                series(parse((await scrape(server.url)).text), "tidings_broker_lag_seconds")
                for _ in range(20)
            ]
            assert all(lag == lags[0] and lag[""] >= 0 for lag in lags)
            probes = []
            while (message := await pubsub.get_message(timeout=1)) is not None:
                if message["type"] == "message":
                    probes.append(message["data"])
            assert len(probes) == 1
        finally:
            await pubsub.aclose()
            await watcher.aclose()
