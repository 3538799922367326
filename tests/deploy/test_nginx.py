"""docs/deploy.md, checked: its nginx site in front of two `tidings run` processes that share Redis.

The site and the systemd unit are read from the doc itself: each ```nginx and ```ini block there starts
with a comment naming its file. Only what a test machine cannot use as written is replaced (the doc's
"How this page is tested" lists it): the upstream ports 8001 and 8002 by the processes' ports,
`listen 80` / `listen 443` by free ports on 127.0.0.1, the Let's Encrypt directory by a self-signed
certificate's, /srv/chat by a temporary directory. nginx runs in the foreground as a child process,
with its own prefix, pid and log paths.

Clients connect from different loopback addresses (127.0.0.2, 127.0.0.3 ...) so that the sticky hash
spreads them over both processes, and so that the address tidings sees is not nginx's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

import tidings
from tests.brokers.cluster import broker_args
from tests.brokers.conftest import prefix, redis_client  # noqa: F401 - the Redis fixtures, reused
from tests.peers import missing
from tests.python_client import PythonClient
from tests.raw_client import RawClient
from tests.serving import ROOT, TidingsProcess, free_port, tidings_process, wait_for_port

DOC = ROOT / "docs" / "deploy.md"
APP = "tests/deploy/app.py:app"
UPSTREAMS = ("127.0.0.1:8001", "127.0.0.1:8002")
CERTIFICATES = "/etc/letsencrypt/live/chat.example.org/"
APP_DIRECTORY = "/srv/chat"
#: A header a client sends to pass itself off as another address; tidings must not believe it.
SPOOFED = "198.51.100.7"

# The main nginx.conf, in place of Debian's /etc/nginx/nginx.conf: it includes conf.d/*.conf inside
# http {} as Debian's does. One process (no master), so that it runs as the user running the tests.
MAIN_CONF = """\
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include conf.d/*.conf;
}}
"""


def doc_files(language: str) -> dict[str, str]:
    """deploy.md's ```language blocks, by the file their first line (``# /path``) names."""
    files = {}
    for block in re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL):
        first_line = block.partition("\n")[0]
        assert first_line.startswith("# /"), f"a ```{language} block of deploy.md names no file: {first_line}"
        files[first_line[2:]] = block
    assert files, f"deploy.md has no ```{language} block"
    return files


def replaced(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"deploy.md no longer has {old!r}: update the test's replacements"
        text = text.replace(old, new)
    return text


@dataclass
class Site:
    http: str
    https: str
    tls: ssl.SSLContext
    nodes: list[TidingsProcess]


def self_signed_certificate(directory: Path) -> None:
    """fullchain.pem and privkey.pem for 127.0.0.1, as certbot leaves them."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl", "no `openssl` on PATH to make a certificate (apt-get install openssl)")
    directory.mkdir(parents=True)
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip


@contextlib.contextmanager
def running_nginx(root: Path, ports: list[int]) -> Iterator[None]:
    """nginx in the foreground with the site of deploy.md in ``root``; stopped afterwards."""
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        missing("nginx", "no `nginx` on PATH or in /usr/sbin (apt-get install nginx)")
    conf_dir = root / "etc" / "nginx"
    command = [nginx, "-p", f"{conf_dir}/", "-c", str(conf_dir / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, f"nginx -t refuses deploy.md's site:\n{checked.stderr}"
    log = root / "nginx.log"
    with log.open("ab") as output:
        process = subprocess.Popen(command, stderr=output)
    try:
        for port in ports:
            try:
                wait_for_port(port, process=process)
            except (RuntimeError, TimeoutError) as error:
                raise AssertionError(f"nginx did not start ({error}):\n{log.read_text()}") from None
        yield
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def site(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # noqa: F811
    root = tmp_path_factory.mktemp("deploy")
    self_signed_certificate(root / "certs")
    static = root / "srv" / "chat" / "static"
    static.mkdir(parents=True)
    (static / "hello.txt").write_text("served by nginx\n")
    (root / "etc" / "nginx").mkdir(parents=True)
    (root / "etc" / "nginx" / "nginx.conf").write_text(MAIN_CONF.format(root=root))
    http_port, https_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(tidings_process(APP, *broker_args(prefix))) for _ in UPSTREAMS]
        replacements = dict(zip(UPSTREAMS, (f"127.0.0.1:{node.port}" for node in nodes), strict=True))
        replacements |= {
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen 443 ": f"listen 127.0.0.1:{https_port} ",
            CERTIFICATES: f"{root}/certs/",
            APP_DIRECTORY: f"{root}/srv/chat",
        }
        for path, text in doc_files("nginx").items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(replaced(text, replacements))
        stack.enter_context(running_nginx(root, [http_port, https_port]))
        tls = ssl.create_default_context(cafile=root / "certs" / "fullchain.pem")
        yield Site(f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", tls, nodes)


@contextlib.asynccontextmanager
async def socketio_client(
    url: str, transport: str, source: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[PythonClient]:
    """A python-socketio client connected through nginx from ``source``, as a browser on ``url``'s
    page would (its ``Origin``), with a made-up ``X-Forwarded-For`` of its own."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=tls or True)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = PythonClient("async", http_session=session, reconnection=False)
        headers = {"Origin": url, "X-Forwarded-For": SPOOFED}
        await client.connect(url, transports=[transport], headers=headers)
        try:
            yield client
        finally:
            await client.shutdown()


async def client_where(
    stack: contextlib.AsyncExitStack, url: str, transport: str, wanted: Callable[[dict[str, Any]], bool]
) -> tuple[PythonClient, dict[str, Any]]:
    """A client whose ``whoami`` answer is ``wanted``: from the first source address that gives one."""
    for host in range(3, 43):
        client = await stack.enter_async_context(socketio_client(url, transport, f"127.0.0.{host}"))
        seen = await client.call("whoami")
        if wanted(seen):
            return client, seen
    raise AssertionError("no client address of 40 gave the answer wanted: is the upstream hashed by address?")


async def test_websocket_and_polling_clients_on_two_processes_share_a_channel(site: Site) -> None:
    async with contextlib.AsyncExitStack() as stack:
        polling = await stack.enter_async_context(socketio_client(site.http, "polling", "127.0.0.2"))
        polled = await polling.call("whoami")
        elsewhere = lambda seen: seen["port"] != polled["port"]  # noqa: E731
        websocket, seen = await client_where(stack, site.http, "websocket", elsewhere)
        # uvicorn took the client's address from nginx's X-Forwarded-For, not the spoofed one
        assert polled == {
            "port": polled["port"],
            "client": "127.0.0.2",
            "scheme": "http",
            "protocol": "HTTP/1.1",  # proxy_http_version: keepalive and WebSocket need it
        }
        assert seen["client"].startswith("127.0.0.") and seen["client"] != "127.0.0.1"

        for client in (polling, websocket):
            assert await client.call("subscribe", "room-1") == {"ok": True}
        await websocket.emit("message", "from the WebSocket client", "room-1")
        assert await polling.event("message") == ("from the WebSocket client", "room-1")
        await polling.emit("message", "from the polling client", "room-1")
        assert await websocket.event("message") == ("from the polling client", "room-1")

        # Every poll of the session reached the process that holds it: the session is still there.
        assert await polling.call("whoami") == polled
        assert (polling.client.transport(), websocket.client.transport()) == ("polling", "websocket")


async def test_a_plain_websocket_endpoint_through_nginx(site: Site) -> None:
    url = site.http.replace("http", "ws", 1) + "/ws?channel=room-2"
    async with (
        connect(url, origin=Origin(site.http)) as plain,
        socketio_client(site.http, "websocket") as client,
    ):
        assert await asyncio.wait_for(plain.recv(), 10) == "subscribed"
        assert await client.call("subscribe", "room-2") == {"ok": True}
        await client.emit("message", "to the plain WebSocket", "room-2")
        assert await asyncio.wait_for(plain.recv(), 10) == "to the plain WebSocket"
        await plain.send("hello")
        assert await asyncio.wait_for(plain.recv(), 10) == "echo: hello"


async def test_an_idle_websocket_outlives_several_ping_intervals(site: Site) -> None:
    client = await RawClient.connect(site.http)
    try:
        for _ in range(4):  # the app pings every 0.5 s: four pings span more than one interval
            assert await asyncio.wait_for(client.ws.recv(), 10) == "2"  # Engine.IO ping
            await client.ws.send("3")  # its pong
        [seen] = await client.call("whoami")
        assert seen["port"] in {str(node.port) for node in site.nodes}
    finally:
        await client.close()


async def test_tls_websocket_and_http2_polling(site: Site) -> None:
    async with socketio_client(site.https, "websocket", tls=site.tls) as client:
        assert (await client.call("whoami"))["scheme"] == "https"  # from X-Forwarded-Proto
    async with httpx.AsyncClient(base_url=site.https, http2=True, verify=site.tls) as http:
        query = {"EIO": "4", "transport": "polling"}
        opened = await http.get("/socket.io/", params=query)
        assert (opened.http_version, opened.text[:2]) == ("HTTP/2", "0{"), opened.text
        query["sid"] = json.loads(opened.text[1:])["sid"]
        posted = await http.post("/socket.io/", params=query, content="40")  # Socket.IO CONNECT
        assert (posted.status_code, posted.text) == (200, "ok")
        polled = await http.get("/socket.io/", params=query)
        assert any(packet.startswith("40{") for packet in polled.text.split("\x1e")), polled.text


async def test_static_files_and_the_app_s_own_paths(site: Site) -> None:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.4")
    async with httpx.AsyncClient(base_url=site.http, transport=transport) as http:
        static = await http.get("/static/hello.txt")
        page = await http.get("/", headers={"X-Forwarded-For": SPOOFED})
        script = await http.get("/tidings/tidings.js")
    assert (static.status_code, static.text) == (200, "served by nginx\n")
    assert (page.status_code, page.text) == (200, "127.0.0.4 http")  # the WSGI app's environ
    assert script.status_code == 200 and "tidings" in script.text


async def test_the_clients_of_a_stopped_process_reach_the_other(site: Site) -> None:
    stopped, running = site.nodes
    on_stopped = lambda seen: seen["port"] == str(stopped.port)  # noqa: E731
    async with contextlib.AsyncExitStack() as stack:
        _, seen = await client_where(stack, site.http, "polling", on_stopped)
    stopped.stop()
    try:
        async with socketio_client(site.http, "polling", seen["client"]) as client:
            assert (await client.call("whoami"))["port"] == str(running.port)
            assert await client.call("subscribe", "room-3") == {"ok": True}  # many polls later
    finally:
        stopped.start()


def test_the_timeouts_exceed_the_ping_interval() -> None:
    [site_conf] = doc_files("nginx").values()
    directives = r"^\s*(proxy_read_timeout|proxy_send_timeout) (\d+)s;"
    timeouts = dict(re.findall(directives, site_conf, re.MULTILINE))
    assert set(timeouts) == {"proxy_read_timeout", "proxy_send_timeout"}, timeouts
    ping_interval = tidings.Settings().ping_interval
    assert all(int(seconds) > ping_interval for seconds in timeouts.values()), (timeouts, ping_interval)


def unit_file(directory: Path) -> str:
    """The doc's tidings@.service, with the app in ``directory`` and the venv the tests run in."""
    [(name, text)] = doc_files("ini").items()
    assert name == "/etc/systemd/system/tidings@.service", name
    return replaced(text, {f"{APP_DIRECTORY}/.venv": sys.prefix, APP_DIRECTORY: str(directory)})


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze: the unit is not linted here")
    unit = tmp_path / "tidings@8001.service"  # an instance of the template
    unit.write_text(unit_file(tmp_path))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and unit.name not in result.stderr + result.stdout, result.stderr


def test_the_systemd_unit_s_command_serves_on_the_instance_port(tmp_path: Path, prefix: str) -> None:  # noqa: F811
    """ExecStart= run as systemd runs it for tidings@PORT: in WorkingDirectory=, with Environment=."""
    port = free_port()
    lines = unit_file(tmp_path).replace("%i", str(port)).splitlines()
    environment = dict(line.split("=", 2)[1:] for line in lines if line.startswith("Environment="))
    settings = dict(line.split("=", 1) for line in lines if "=" in line)  # Environment= is read above
    command = shlex.split(settings["ExecStart"])  # …/tidings run main_app:application
    module, _, attribute = command[-1].partition(":")
    (tmp_path / f"{module}.py").write_text(f"import tidings\n\n{attribute} = tidings.Server()\n")
    environment |= {"PATH": os.environ["PATH"], "TIDINGS_BROKER_PREFIX": prefix}  # Redis names of its own
    process = subprocess.Popen(command, cwd=settings["WorkingDirectory"], env=environment)
    try:
        wait_for_port(port, process=process)
        opened = httpx.get(f"http://127.0.0.1:{port}/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert opened.text.startswith("0{"), opened.text
    finally:
        process.terminate()
        process.wait(10)
