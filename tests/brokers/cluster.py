"""What the broker tests share: the machine's Redis, Redis servers of their own, nodes sharing a broker."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from tests.peers import REDIS_URL, machine_redis, missing
from tests.serving import TidingsProcess, free_port, wait_for_port

APP = "tests/brokers/app.py:app"


def new_prefix() -> str:
    """A name prefix of one's own on the machine's Redis: runs, and other users of it, do not meet.

    The machine's Redis is checked to answer: a missing peer otherwise (tests/peers.py)."""
    machine_redis().close()
    return f"tidings-test-{uuid.uuid4().hex[:12]}:"


def broker_args(prefix: str, url: str = REDIS_URL) -> tuple[str, ...]:
    return ("--broker", url, "--broker-prefix", prefix)


@contextlib.contextmanager
def running_nodes(
    prefix: str, count: int, url: str = REDIS_URL, app: str = APP
) -> Iterator[list[TidingsProcess]]:
    """``count`` `tidings run` processes of ``app`` on different ports, sharing channels through Redis."""
    servers = [TidingsProcess(app, None, *broker_args(prefix, url)) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


class OwnRedis:
    """A redis-server of the test's own on a free port, without persistence; restartable on it.

    ``extra`` are more of its options (``"--replicaof", "127.0.0.1", "6380"``)."""

    def __init__(self, directory: Path, *extra: str, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server", "no `redis-server` on PATH for a Redis of the test's own")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.command += ["--dir", str(directory), *extra]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: gone at once, with nothing flushed to its clients or replicas."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class Sentinels:
    """A master, a replica of it and ``count`` sentinels watching them as ``mymaster``: redis-servers
    of the test's own on loopback ports, which fail over a second after the master stops answering."""

    def __init__(self, directory: Path, count: int = 3) -> None:
        self.master = OwnRedis(directory)
        self.replica = OwnRedis(directory, "--replicaof", "127.0.0.1", str(self.master.port))
        self.ports = [free_port() for _ in range(count)]
        self.directory = directory
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/mymaster/0"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        for port in self.ports:
            config = self.directory / f"sentinel-{port}.conf"  # a sentinel rewrites its own
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 2\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 10000\n"
            )
            process = subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL)
            self.processes.append(process)
            wait_for_port(port, process=process)

    def master_port(self) -> int:
        """The master's port, as the first sentinel says."""
        with redis.Redis(port=self.ports[0]) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name("mymaster")
        return int(port)

    def watching(self) -> bool:
        """Whether every sentinel knows the others and the replica, and the replica is in sync."""
        for port in self.ports:
            with redis.Redis(port=port) as sentinel:
                state = sentinel.sentinel_master("mymaster")
                if state["num-other-sentinels"] != len(self.ports) - 1 or state["num-slaves"] != 1:
                    return False
        with redis.Redis(port=self.replica.port) as replica:
            return bool(replica.info("replication")["master_link_status"] == "up")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(10)
        self.master.stop()
        self.replica.stop()


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        await asyncio.sleep(0.05)


def bus_port_pair() -> int:
    """A free port whose cluster bus port (10000 above it) is free too."""
    while True:
        port = random.randrange(20000, 50000)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + 10000):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("", candidate))
            except OSError:
                continue
            return port


class Cluster:
    """A Redis Cluster of three masters and a replica of each: redis-servers of the test's own on
    loopback ports (``redis-cli --cluster create``); a replica takes over a second after its master
    stops answering (``--cluster-node-timeout 1000``)."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.servers = [
            OwnRedis(
                directory,
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{index}.conf",
                "--cluster-node-timeout", "1000",
                port=bus_port_pair(),
            )
            for index in range(masters * 2)
        ]  # fmt: skip
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{server.port}" for server in self.servers[:2])

    def start(self) -> None:
        if shutil.which("redis-cli") is None:
            missing("redis-cli", "no `redis-cli` on PATH to create a Redis Cluster")
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(create, check=True, stdout=subprocess.DEVNULL, timeout=60)

    def client(self) -> redis.RedisCluster:
        """A blocking client of the cluster (the caller closes it)."""
        return redis.RedisCluster(host="127.0.0.1", port=self.servers[0].port)

    def ready(self) -> bool:
        """Whether every live server says the cluster is ok, with three masters that each have a
        replica in sync."""
        masters = self.masters()
        return self.ok() and len(masters) == len(self.servers) // 2 and all(map(len, masters.values()))

    def ok(self) -> bool:
        """Whether every live server says the cluster is ok (every slot has a master)."""
        for server in self.live():
            with redis.Redis(port=server.port) as node:
                if "cluster_state:ok" not in node.execute_command("CLUSTER", "INFO").decode():
                    return False
        return True

    def taken_over(self, port: int) -> bool:
        """Whether the master on ``port`` (killed) is replaced: every slot has a live master."""
        masters = self.masters()
        return port not in masters and len(masters) == len(self.servers) // 2 and self.ok()

    def live(self) -> list[OwnRedis]:
        return [server for server in self.servers if server.process is not None]

    def masters(self) -> dict[int, list[int]]:
        """The port of each live master, with those of its replicas whose link to it is up."""
        masters: dict[int, list[int]] = {}
        for server in self.live():
            with redis.Redis(port=server.port) as node:
                replication = node.info("replication")
            if replication["role"] == "master":
                masters.setdefault(server.port, [])
            elif replication.get("master_link_status") == "up":
                masters.setdefault(int(replication["master_port"]), []).append(server.port)
        return masters

    def owner(self, key: str | bytes) -> int:
        """The port of the master that owns ``key``'s slot, as a live master says."""
        with redis.Redis(port=next(iter(self.masters()))) as node:
            slot = node.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in node.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise AssertionError(f"no master owns slot {slot}")

    def server(self, port: int) -> OwnRedis:
        return next(server for server in self.servers if server.port == port)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
