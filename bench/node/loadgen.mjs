// Load generator of the benchmark suite (bench/__main__.py drives it): raw `ws` clients that speak just
// enough Engine.IO v4 / Socket.IO v5 (open, namespace connect, events, acks, pong), so that the
// generator costs as little as possible per message and never decodes JSON on the hot path.
//
// Usage: node loadgen.mjs MODE 'OPTIONS-JSON'. Prints JSON lines on stdout; the last is the result.
//   fanout    N subscribers in one room and one publisher; the peak deliveries/s (the best of a few
//             windows of messages in flight), then p50/p99 publish->delivery latency at a fraction of it
//             or at a given rate (`latencyRate`), and at the run's common rate (`equalRate`, or
//             `equalShare` of its own peak) for latency at equal load. With
//             `transport: "polling"` the subscribers are Engine.IO long-polling clients (the
//             publisher stays on a WebSocket)
//   idle      N connected clients; prints {"event":"ready"} and holds them until "stop" on stdin
//   connrate  new connections/s (WebSocket handshake + Engine.IO open + namespace connect), each closed
//             again at once; bare TCP clients with pre-built frames, cheaper than `ws` per connection
//   echo      N clients each with one emit-with-ack round trip in flight; p50/p99 and round trips/s
//             (the event is `event`: "echo", or "echo_def" for the Python apps' `def` handler)
//   scale     N subscribers from several source addresses: the time of one broadcast to all, and a
//             steady publish rate to all (bench/scale.py reads the server's RSS in between)
// Subscribers and idle clients are spread over child processes of at most `perProcess` connections.
// Every phase is bounded in time; a watchdog ends the process at `deadline` seconds whatever happens.
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { connect as tcpConnect } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const SELF = fileURLToPath(import.meta.url);
const WS_OPTIONS = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 20_000 };
const CONNECT_TIMEOUT_MS = 30_000;
const ROOM = "room";
const PAYLOAD_BYTES = 100;
const CHAR_0 = 48;
const CHAR_1 = 49;
const CHAR_2 = 50;
const CHAR_3 = 51;
const CHAR_4 = 52;
const CHAR_S = 83;

const nowUs = () => Number(process.hrtime.bigint()) / 1000; // CLOCK_MONOTONIC: shared by all processes
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const endpointOf = (url) => url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
const RECORD_SEPARATOR = 0x1e; // between the packets of one long-polling payload (EIO v4)

async function waitFor(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await sleep(2);
  }
}

// -- the published message: 100 bytes with its sequence number and publish time at fixed places ----
// "S" + 10-digit sequence + "T" + 15-digit microseconds (CLOCK_MONOTONIC) + "x" padding.
const PADDING = "x".repeat(PAYLOAD_BYTES - 27);
function publishedMessage(seq) {
  const stamp = String(Math.floor(nowUs())).padStart(15, "0");
  return `S${String(seq).padStart(10, "0")}T${stamp}${PADDING}`;
}
function digits(buffer, from, count) {
  let value = 0;
  for (let i = from; i < from + count; i++) value = value * 10 + (buffer[i] - CHAR_0);
  return value;
}

// -- latency histogram: log buckets 1% wide, from 1 us to hours; mergeable across processes -------
const BUCKETS = 2400;
const LOG_STEP = Math.log(1.01);
class Histogram {
  constructor() {
    this.counts = new Array(BUCKETS).fill(0);
    this.n = 0;
  }
  add(us) {
    const index = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_STEP) + 1);
    this.counts[index]++;
    this.n++;
  }
  merge(counts) {
    for (let i = 0; i < BUCKETS; i++) {
      this.counts[i] += counts[i];
      this.n += counts[i];
    }
  }
  percentileMs(p) {
    if (this.n === 0) return null;
    const rank = Math.ceil(p * this.n);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return i === 0 ? 0.001 : Math.exp((i - 0.5) * LOG_STEP) / 1000; // bucket middle
    }
    return null;
  }
  summary() {
    return { samples: this.n, p50_ms: round(this.percentileMs(0.5)), p99_ms: round(this.percentileMs(0.99)) };
  }
}
const round = (value, places = 3) => (value === null ? null : Number(value.toFixed(places)));

// -- CPU time of processes, from /proc (server on its core, generator on its own) -----------------
function cpuSeconds(pids, ticks) {
  let total = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += (Number(fields[11]) + Number(fields[12])) / ticks; // utime + stime
    } catch {
      // the process is gone: it counts nothing more
    }
  }
  return total;
}

// Busy time of every core (user, nice, system, irq, softirq, steal), from /proc/stat, in ticks.
function coreTicks() {
  const cores = [];
  for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
    const match = /^cpu(\d+) (.*)$/.exec(line);
    if (match === null) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = match[2].trim().split(/\s+/).map(Number);
    cores[Number(match[1])] = { busy: user + nice + system + irq + softirq + steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
  }
  return cores;
}
const coreBusy = (from, to) => from.map((core, i) => round((to[i].busy - core.busy) / Math.max(1, to[i].total - core.total), 2));

// -- one raw Socket.IO client --------------------------------------------------------------------
// Resolves with the socket once the namespace is connected (and, with `subscribe`, the room joined).
// `onEvent(data)` gets every 42 packet after that, `onAck(data)` every 43 packet, `onLost()` an
// unexpected close.
function connectClient(endpoint, { subscribe = false, onEvent = null, onAck = null, onLost = null } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(endpoint, WS_OPTIONS);
    let ready = false;
    let closing = false;
    const timer = setTimeout(() => fail(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
    function fail(error) {
      clearTimeout(timer);
      closing = true;
      ws.terminate();
      reject(error);
    }
    function done() {
      ready = true;
      clearTimeout(timer);
      resolve(ws);
    }
    ws.close = ((close) => (...args) => {
      closing = true;
      return close.apply(ws, args);
    })(ws.close);
    ws.terminate = ((terminate) => () => {
      closing = true;
      return terminate.apply(ws);
    })(ws.terminate);
    ws.on("message", (data) => {
      const first = data[0];
      if (first === CHAR_4) {
        const second = data[1];
        if (second === CHAR_2) {
          if (onEvent !== null) onEvent(data);
        } else if (second === CHAR_3) {
          if (!ready) done(); // the subscribe ack
          else if (onAck !== null) onAck(data);
        } else if (second === CHAR_0) {
          if (subscribe) ws.send(`421["subscribe","${ROOM}"]`);
          else done();
        } else if (second === CHAR_4) {
          fail(new Error(`connect refused: ${data.toString()}`));
        }
      } else if (first === CHAR_2) {
        ws.send("3"); // Engine.IO ping -> pong
      } else if (first === CHAR_0) {
        ws.send("40"); // Engine.IO open -> connect namespace "/"
      }
    });
    ws.on("error", (error) => {
      if (!ready) fail(error);
    });
    ws.on("close", () => {
      if (!ready && !closing) fail(new Error("closed before connecting"));
      else if (ready && !closing && onLost !== null) onLost();
    });
  });
}

// -- one raw Socket.IO client on HTTP long-polling (Engine.IO v4) ---------------------------------
// A GET loop takes the server's packets (one response holds all that were waiting, split by 0x1e);
// a POST carries the client's, one POST in flight at a time as the protocol asks. `agent` is a
// keep-alive agent shared by a group's clients, so each client reuses its connections. The same
// callbacks as connectClient; the result's terminate() stops the client (the agent's destroy()
// closes its connections).
function httpCall(agent, url, method, query, body) {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    const headers = body === undefined ? {} : { "content-type": "text/plain;charset=UTF-8", "content-length": Buffer.byteLength(body) };
    const req = httpRequest({ agent, hostname, port, method, path: `/socket.io/?EIO=4&transport=polling${query}`, headers }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => {
        const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        if (res.statusCode === 200) resolve(data);
        else reject(new Error(`${method} answered ${res.statusCode}: ${data.subarray(0, 80).toString()}`));
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function connectPolling(url, agent, { subscribe = false, onEvent = null, onLost = null } = {}) {
  return new Promise((resolve, reject) => {
    let sid = null;
    let ready = false;
    let closing = false;
    let outbox = [];
    let posting = false;
    const client = {
      terminate() {
        closing = true;
      },
    };
    const timer = setTimeout(() => fail(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
    function fail(error) {
      if (closing) return;
      clearTimeout(timer);
      closing = true;
      if (!ready) reject(error);
      else if (onLost !== null) onLost();
    }
    function done() {
      ready = true;
      clearTimeout(timer);
      resolve(client);
    }
    function send(packet) {
      outbox.push(packet);
      if (!posting) post();
    }
    function post() {
      posting = true;
      const body = outbox.join("\x1e");
      outbox = [];
      httpCall(agent, url, "POST", `&sid=${sid}`, body).then(() => {
        posting = false;
        if (outbox.length && !closing) post();
      }, fail);
    }
    function packet(data) {
      const first = data[0];
      if (first === CHAR_4) {
        const second = data[1];
        if (second === CHAR_2) {
          if (onEvent !== null) onEvent(data);
        } else if (second === CHAR_3) {
          if (!ready) done(); // the subscribe ack
        } else if (second === CHAR_0) {
          if (subscribe) send(`421["subscribe","${ROOM}"]`);
          else done();
        } else if (second === CHAR_4) {
          fail(new Error(`connect refused: ${data.toString()}`));
        }
      } else if (first === CHAR_2) {
        send("3"); // Engine.IO ping -> pong
      } else if (first === CHAR_1) {
        fail(new Error("the server closed the session"));
      }
    }
    async function poll() {
      while (!closing) {
        const data = await httpCall(agent, url, "GET", `&sid=${sid}`);
        let start = 0;
        for (let end = data.indexOf(RECORD_SEPARATOR); end >= 0; end = data.indexOf(RECORD_SEPARATOR, start)) {
          packet(data.subarray(start, end));
          start = end + 1;
        }
        packet(data.subarray(start));
      }
    }
    httpCall(agent, url, "GET", "")
      .then((data) => {
        if (data[0] !== CHAR_0) throw new Error(`no open packet: ${data.subarray(0, 80).toString()}`);
        sid = JSON.parse(data.subarray(1).toString()).sid;
        send("40"); // connect namespace "/"
        return poll();
      })
      .catch((error) => fail(error));
  });
}

// The connection-rate client: a bare TCP socket with a pre-built upgrade request and pre-masked
// frames, so that the generator spends as little as possible per connection (a `ws` client's
// handshake costs several times more, and the generator's core would be the limit).
const MASK = [0x5a, 0x17, 0xc3, 0x81];
const masked = (opcode, text) =>
  Buffer.from([0x80 | opcode, 0x80 | text.length, ...MASK, ...[...Buffer.from(text)].map((b, i) => b ^ MASK[i % 4])]);
const NAMESPACE_CONNECT = masked(1, "40");
const PONG = masked(1, "3");
const CLOSE = masked(8, "");

function rawConnect(port) {
  return new Promise((resolve, reject) => {
    const upgrade =
      "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n" +
      `Host: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const socket = tcpConnect({ host: "127.0.0.1", port, noDelay: true });
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    let settled = false;
    const timer = setTimeout(() => fail(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
    function fail(error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    }
    function close() {
      socket.end(CLOSE); // a close frame, then FIN: the server answers and closes its side
      socket.resume();
    }
    socket.on("connect", () => socket.write(upgrade));
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("closed before connecting")));
    socket.on("data", (chunk) => {
      if (settled) return;
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        if (!buffer.subarray(0, 12).equals(Buffer.from("HTTP/1.1 101"))) {
          return fail(new Error(`upgrade refused: ${buffer.subarray(0, 40).toString()}`));
        }
        upgraded = true;
        buffer = buffer.subarray(end + 4);
      }
      while (buffer.length >= 2) {
        let size = buffer[1] & 0x7f;
        let start = 2;
        if (size === 126) {
          if (buffer.length < 4) return;
          size = buffer.readUInt16BE(2);
          start = 4;
        } else if (size === 127) {
          return fail(new Error("unexpectedly large frame"));
        }
        if (buffer.length < start + size) return;
        const first = buffer[start];
        const second = buffer[start + 1];
        buffer = buffer.subarray(start + size);
        if (first === CHAR_0 && size > 1) {
          socket.write(NAMESPACE_CONNECT); // Engine.IO open -> connect namespace "/"
        } else if (first === CHAR_2 && size === 1) {
          socket.write(PONG);
        } else if (first === CHAR_4 && second === CHAR_0) {
          settled = true;
          clearTimeout(timer);
          return resolve({ close });
        } else if (first === CHAR_4 && second === CHAR_4) {
          return fail(new Error("connect refused"));
        }
      }
    });
  });
}

// A raw subscriber or idle client: a bare TCP socket like rawConnect's, with a pre-built upgrade
// request and pre-masked frames, that stays connected. It reads the server's frames in place, in the
// chunk they came in, and hands `onEvent(buffer, start, end)` each 42 packet's bytes: no Buffer, no
// event emitter and no stream per message, so that a delivery costs the generator a few field reads
// (a `ws` client's frame parsing made the generator the limit at 5,000 subscribers). `localAddress`
// (127.0.0.x) is the source address: each has its own range of ephemeral ports. Resolves with
// `{ terminate }` once the namespace is connected (and, with `subscribe`, the room joined).
const SUBSCRIBE = masked(1, `421["subscribe","${ROOM}"]`);
const OPCODE_CLOSE = 8;

function rawClient(endpoint, { subscribe = false, onEvent = null, onLost = null, localAddress } = {}) {
  const { hostname, port } = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: hostname, port: Number(port), localAddress, noDelay: true });
    let rest = null; // the start of a frame that has not fully arrived
    let upgraded = false;
    let ready = false;
    let closing = false;
    const timer = setTimeout(() => fail(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
    const client = {
      terminate() {
        closing = true;
        socket.destroy();
      },
    };
    function fail(error) {
      if (ready || closing) return;
      closing = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    }
    function done() {
      ready = true;
      clearTimeout(timer);
      resolve(client);
    }
    function lost() {
      if (ready && !closing) {
        closing = true;
        socket.destroy();
        if (onLost !== null) onLost();
      }
    }
    function packet(buffer, start, end) {
      const first = buffer[start];
      const second = buffer[start + 1];
      if (first === CHAR_4) {
        if (second === CHAR_2) {
          if (onEvent !== null) onEvent(buffer, start, end);
        } else if (second === CHAR_3) {
          if (!ready) done(); // the subscribe ack
        } else if (second === CHAR_0) {
          if (subscribe) socket.write(SUBSCRIBE);
          else done();
        } else if (second === CHAR_4) {
          fail(new Error(`connect refused: ${buffer.toString("utf8", start, end)}`));
        }
      } else if (first === CHAR_2 && end - start === 1) {
        socket.write(PONG); // Engine.IO ping -> pong
      } else if (first === CHAR_0 && end - start > 1) {
        socket.write(NAMESPACE_CONNECT); // Engine.IO open -> connect namespace "/"
      }
    }
    socket.on("connect", () =>
      socket.write(
        `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    socket.on("error", (error) => (ready ? lost() : fail(error)));
    socket.on("close", () => (ready ? lost() : fail(new Error("closed before connecting"))));
    socket.on("data", (chunk) => {
      let buffer = rest === null ? chunk : Buffer.concat([rest, chunk]);
      rest = null;
      let at = 0;
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) {
          rest = buffer;
          return;
        }
        if (buffer.toString("latin1", 0, 12) !== "HTTP/1.1 101") {
          return fail(new Error(`upgrade refused: ${buffer.toString("latin1", 0, 40)}`));
        }
        upgraded = true;
        at = end + 4;
      }
      const length = buffer.length;
      while (length - at >= 2) {
        let size = buffer[at + 1] & 0x7f;
        let start = at + 2;
        if (size === 126) {
          if (length - at < 4) break;
          size = buffer.readUInt16BE(at + 2);
          start = at + 4;
        } else if (size === 127) {
          if (length - at < 10) break;
          size = buffer.readUIntBE(at + 4, 6);
          start = at + 10;
        }
        const end = start + size;
        if (end > length) break;
        const opcode = buffer[at] & 0x0f;
        at = end;
        if (opcode === 1) packet(buffer, start, end);
        else if (opcode === OPCODE_CLOSE) return ready ? lost() : fail(new Error("closed by the server"));
      }
      if (at < length) rest = buffer.subarray(at);
    });
  });
}

// Opens `count` clients, at most `concurrency` handshakes at a time (the listen backlog is finite).
async function connectMany(count, concurrency, open) {
  const sockets = [];
  let next = 0;
  let failed = 0;
  let lastError = null;
  async function lane() {
    while (next < count) {
      next++;
      try {
        sockets.push(await open());
      } catch (error) {
        failed++;
        lastError = String(error.message || error);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { sockets, failed, lastError };
}

// -- a group of subscribers (fanout) or idle clients, in this process or in a child --------------
const RING = 1 << 16;
const RING_MASK = RING - 1;

class ClientGroup {
  constructor(report) {
    this.report = report;
    this.sockets = [];
    this.agent = null; // the keep-alive agent of long-polling clients
    this.counts = new Int32Array(RING); // deliveries of each in-flight message (by sequence number)
    this.done = 0; // every message up to this one reached every client of the group
    this.delivered = 0;
    this.lost = 0;
    this.recording = false;
    this.histogram = new Histogram();
    this.reportPending = false;
  }

  async start({ url, transport, count, subscribe, concurrency, localAddress }) {
    // Raw WebSocket clients hand over a chunk and where the packet starts in it; polling ones a packet.
    const onEvent = subscribe ? (buffer, start = 0) => this.delivery(buffer, start) : null;
    const onLost = () => {
      this.lost++;
      this.report({ type: "lost", lost: this.lost });
    };
    const callbacks = { subscribe, onEvent, onLost };
    if (transport === "polling") this.agent = new Agent({ keepAlive: true, maxSockets: Infinity });
    const open =
      transport === "polling"
        ? () => connectPolling(url, this.agent, callbacks)
        : () => rawClient(endpointOf(url), { ...callbacks, localAddress });
    const result = await connectMany(count, concurrency, open);
    this.sockets = result.sockets;
    this.report({ type: "ready", connected: result.sockets.length, failed: result.failed, error: result.lastError });
  }

  delivery(data, start) {
    this.delivered++;
    const at = data.indexOf(CHAR_S, start + 2);
    const seq = digits(data, at + 1, 10);
    if (this.recording) this.histogram.add(nowUs() - digits(data, at + 12, 15));
    const slot = seq & RING_MASK;
    if (++this.counts[slot] === this.sockets.length) {
      while (this.counts[(this.done + 1) & RING_MASK] === this.sockets.length) {
        this.counts[(this.done + 1) & RING_MASK] = 0;
        this.done++;
      }
      if (!this.reportPending) {
        this.reportPending = true;
        setImmediate(() => {
          this.reportPending = false;
          this.report({ type: "progress", done: this.done, delivered: this.delivered });
        });
      }
    }
  }

  handle(message) {
    switch (message.type) {
      case "start":
        this.start(message).catch((error) => this.report({ type: "error", error: String(error) }));
        break;
      case "record":
        this.recording = message.on;
        if (message.on) this.histogram = new Histogram();
        break;
      case "histogram":
        this.report({ type: "histogram", counts: this.histogram.counts });
        break;
      case "count":
        this.report({ type: "count", delivered: this.delivered, at: nowUs() });
        break;
      case "close":
        for (const ws of this.sockets) ws.terminate();
        this.sockets = [];
        this.agent?.destroy();
        this.report({ type: "closed" });
        break;
    }
  }
}

// A group's handle in the coordinator: the latest it reported, and a way to talk to it.
class Worker {
  constructor(local) {
    this.done = 0;
    this.delivered = 0;
    this.lost = 0;
    this.ready = null;
    this.error = null;
    this.histogram = null;
    this.count = null;
    this.closed = false;
    this.onProgress = () => {};
    const receive = (message) => this.receive(message);
    if (local) {
      const group = new ClientGroup((message) => queueMicrotask(() => receive(message)));
      this.pid = process.pid;
      this.post = (message) => group.handle(message);
      this.kill = () => group.handle({ type: "close" });
    } else {
      const child = fork(SELF, ["worker"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      child.on("message", receive);
      child.on("exit", () => {
        this.closed = true;
      });
      this.pid = child.pid;
      this.post = (message) => {
        if (child.connected) child.send(message);
      };
      this.kill = () => child.kill("SIGKILL");
    }
  }

  receive(message) {
    switch (message.type) {
      case "ready":
        this.ready = message;
        break;
      case "progress":
        this.done = message.done;
        this.delivered = message.delivered;
        this.onProgress();
        break;
      case "lost":
        this.lost = message.lost;
        break;
      case "histogram":
        this.histogram = message.counts;
        break;
      case "count":
        this.count = message;
        break;
      case "closed":
        this.closed = true;
        break;
      case "error":
        this.error = message.error;
        break;
    }
  }
}

// `options.sourceAddresses` (scale): the groups take them in turn as their clients' source address.
function startGroups(options, count, subscribe) {
  const processes = Math.max(1, Math.ceil(count / options.perProcess));
  const addresses = options.sourceAddresses ?? [];
  const workers = [];
  for (let i = 0; i < processes; i++) {
    const share = Math.floor(count / processes) + (i < count % processes ? 1 : 0);
    const worker = new Worker(processes === 1);
    const localAddress = addresses.length > 0 ? addresses[i % addresses.length] : undefined;
    const { url, transport, concurrency } = options;
    worker.post({ type: "start", url, transport, count: share, subscribe, concurrency, localAddress });
    workers.push(worker);
  }
  return workers;
}

async function groupsReady(workers, timeoutMs) {
  await waitFor(() => workers.every((w) => w.ready !== null || w.error !== null), timeoutMs, "clients to connect");
  const error = workers.find((w) => w.error !== null)?.error;
  if (error) throw new Error(error);
  const connected = workers.reduce((sum, w) => sum + w.ready.connected, 0);
  const failed = workers.reduce((sum, w) => sum + w.ready.failed, 0);
  if (failed > 0) {
    const last = workers.find((w) => w.ready.error)?.ready.error;
    throw new Error(`${failed} connections failed (${connected} connected); last error: ${last}`);
  }
  return connected;
}

async function stopGroups(workers) {
  for (const worker of workers) worker.post({ type: "close" });
  try {
    await waitFor(() => workers.every((w) => w.closed), 10_000, "clients to close");
  } finally {
    for (const worker of workers) worker.kill();
  }
}

const generatorPids = (workers) => [...new Set([process.pid, ...workers.map((w) => w.pid)])];

// -- CPU accounting of a measuring window: the server, the generator, each core, and the rest -------
function cpuSnapshot(o, pids) {
  return {
    at: nowUs(),
    server: cpuSeconds([o.serverPid], o.clockTicks),
    generator: cpuSeconds(pids, o.clockTicks),
    cores: coreTicks(),
  };
}
function cpuRates(from, to) {
  const seconds = (to.at - from.at) / 1e6;
  const server = (to.server - from.server) / seconds;
  const generator = (to.generator - from.generator) / seconds;
  const cores = coreBusy(from.cores, to.cores);
  const busy = cores.reduce((sum, core) => sum + core, 0);
  return {
    seconds: round(seconds),
    server_cpu: round(server, 2),
    generator_cpu: round(generator, 2),
    cores_busy: cores,
    // What else kept the cores busy: other processes, and kernel work charged to no process.
    other_cpu: round(Math.max(0, busy - server - generator), 2),
  };
}

// -- fanout --------------------------------------------------------------------------------------
async function fanout(o) {
  const workers = startGroups(o, o.subscribers, true);
  try {
    const connected = await groupsReady(workers, o.connectTimeout * 1000);
    const publisher = await connectClient(endpointOf(o.url));
    const lost = () => workers.reduce((sum, w) => sum + w.lost, 0);
    const minDone = () => Math.min(...workers.map((w) => w.done));
    const pids = generatorPids(workers);
    // Each group's exact delivery count, stamped where it was counted.
    const snapshot = async () => {
      for (const worker of workers) {
        worker.count = null;
        worker.post({ type: "count" });
      }
      await waitFor(() => workers.every((w) => w.count !== null), 10_000, "delivery counts");
      return { ...cpuSnapshot(o, pids), counts: workers.map((w) => w.count) };
    };
    const rates = (from, to) => {
      let perSecond = 0;
      for (let i = 0; i < workers.length; i++) {
        const [a, b] = [from.counts[i], to.counts[i]];
        perSecond += (b.delivered - a.delivered) / ((b.at - a.at) / 1e6);
      }
      return { deliveries_per_s: Math.round(perSecond), ...cpuRates(from, to) };
    };
    let seq = 0;
    const publish = () => {
      seq++;
      publisher.send(`42["publish","${publishedMessage(seq)}"]`);
    };
    const drain = async (what, seconds = o.drainTimeout) => {
      await waitFor(() => minDone() >= seq || lost() > 0, seconds * 1000, what);
      if (lost() > 0) throw new Error(`the server closed ${lost()} subscriber connections`);
    };

    // Peak: for each window, keep that many messages in flight to the slowest subscriber, publishing
    // the next one as soon as one has reached everyone. The windows grow while that pays (by at
    // least `gain`); the best window's rate is the peak.
    const sweep = [];
    let window = 0;
    const pump = () => {
      if (window === 0) return;
      const floor = minDone();
      while (seq - floor < window) publish();
    };
    for (const worker of workers) worker.onProgress = pump;
    for (const [index, size] of o.windows.entries()) {
      window = size;
      pump();
      await sleep((index === 0 ? o.warmup : o.resettle) * 1000); // warm first, then let the window settle
      const from = await snapshot();
      await sleep(o.measure * 1000);
      const to = await snapshot();
      window = 0;
      const result = { window: size, ...rates(from, to) };
      result.messages_per_s = Math.round(result.deliveries_per_s / connected);
      const best = Math.max(0, ...sweep.map((r) => r.deliveries_per_s));
      sweep.push(result);
      await drain(`the messages of window ${size} to arrive`);
      if (index > 0 && result.deliveries_per_s < best * (1 + o.gain)) break;
    }
    // No windows: no peak phase.
    const peak = sweep.length
      ? sweep.reduce((best, result) => (result.deliveries_per_s > best.deliveries_per_s ? result : best))
      : null;
    if (peak !== null && peak.deliveries_per_s <= 0) throw new Error("no deliveries in the peak phase");

    // A latency phase: open loop at `deliveries` per second, evenly spread, for `o.latency` seconds;
    // every delivery's latency recorded. At the equal-load rate a server slower than the reference may
    // not deliver it all within `behindTimeout` (`mayFallBehind`): then it has no percentiles, only the
    // messages still on their way (`behind_messages`).
    const latencyAt = async (deliveries, mayFallBehind = false) => {
      const rate = Math.max(1, deliveries / connected); // messages per second
      for (const worker of workers) {
        worker.histogram = null;
        worker.post({ type: "record", on: true });
      }
      await sleep(20); // a child applies "record" before the first message reaches it
      const latencyStart = await snapshot();
      const started = nowUs();
      let sent = 0;
      await new Promise((resolve) => {
        const tick = () => {
          const elapsed = (nowUs() - started) / 1e6;
          if (elapsed >= o.latency) return resolve();
          const due = Math.floor(elapsed * rate) + 1;
          while (sent < due) {
            publish();
            sent++;
          }
          setTimeout(tick, 1);
        };
        tick();
      });
      let behind = 0;
      try {
        await drain("the latency phase's messages to arrive", mayFallBehind ? o.behindTimeout : o.drainTimeout);
      } catch (error) {
        if (!mayFallBehind || lost() > 0) throw error;
        behind = seq - minDone();
      }
      const latencyEnd = await snapshot();
      for (const worker of workers) worker.post({ type: "histogram" });
      await waitFor(() => workers.every((w) => w.histogram !== null), 10_000, "latency histograms");
      const histogram = new Histogram();
      for (const worker of workers) histogram.merge(worker.histogram);
      const percentiles = behind ? { samples: histogram.n, p50_ms: null, p99_ms: null, behind_messages: behind } : histogram.summary();
      return {
        deliveries_per_s_asked: Math.round(deliveries),
        messages_per_s: round(rate, 1),
        messages: sent,
        ...rates(latencyStart, latencyEnd),
        ...percentiles,
      };
    };
    // At `load` of the peak (or at `latencyRate` deliveries/s when given); then, with `equalRate`
    // (deliveries/s) or `equalShare` (of the peak), at the rate every server of the run gets.
    const ownRate = o.latencyRate || (peak !== null ? o.load * peak.deliveries_per_s : 0);
    const latency = ownRate > 0 ? { load: o.latencyRate ? null : o.load, ...(await latencyAt(ownRate)) } : null;
    const equalRate = o.equalRate || (o.equalShare && peak !== null ? o.equalShare * peak.deliveries_per_s : 0);
    const equalLoad = equalRate > 0 ? await latencyAt(equalRate, true) : null;
    if (peak === null && latency === null && equalLoad === null) throw new Error("nothing to measure");
    publisher.terminate();
    return {
      mode: "fanout",
      transport: o.transport,
      subscribers: connected,
      processes: workers.length,
      peak,
      sweep,
      latency,
      equal_load: equalLoad,
    };
  } finally {
    await stopGroups(workers).catch(() => {});
  }
}

// -- scale -----------------------------------------------------------------------------------------
// N subscribers in one room, from several source addresses (bench/scale.py picks them). Prints
// {"event":"ready"} once all are in and waits for "go" on stdin (the server's RSS is read meanwhile).
// Then: `broadcasts` single messages, one at a time, each timed from its publish to its last delivery
// (the largest latency any subscriber recorded for it); then `measure` seconds of publishing with
// `window` messages in flight to the slowest subscriber: the steady rate every subscriber gets.
async function scale(o) {
  const workers = startGroups(o, o.subscribers, true);
  try {
    const connected = await groupsReady(workers, o.connectTimeout * 1000);
    emit({ event: "ready", connected, processes: workers.length });
    await waitForLine("go");
    const publisher = await connectClient(endpointOf(o.url));
    const lost = () => workers.reduce((sum, w) => sum + w.lost, 0);
    const minDone = () => Math.min(...workers.map((w) => w.done));
    let seq = 0;
    const publish = () => {
      seq++;
      publisher.send(`42["publish","${publishedMessage(seq)}"]`);
    };
    const arrived = async (what) => {
      await waitFor(() => minDone() >= seq || lost() > 0, o.drainTimeout * 1000, what);
      if (lost() > 0) throw new Error(`the server closed ${lost()} subscriber connections`);
    };

    const pids = generatorPids(workers);
    const single = [];
    for (let i = 0; i < o.broadcasts; i++) {
      for (const worker of workers) {
        worker.histogram = null;
        worker.post({ type: "record", on: true });
      }
      await sleep(20); // a child applies "record" before the message reaches it
      const before = cpuSnapshot(o, pids);
      publish();
      await arrived(`broadcast ${i + 1} to reach every subscriber`);
      const after = cpuSnapshot(o, pids); // the CPU it cost, which the machine's other load does not inflate
      for (const worker of workers) worker.post({ type: "histogram" });
      await waitFor(() => workers.every((w) => w.histogram !== null), 10_000, "latency histograms");
      const histogram = new Histogram();
      for (const worker of workers) histogram.merge(worker.histogram);
      single.push({
        first_ms: round(histogram.percentileMs(1 / histogram.n)),
        p50_ms: round(histogram.percentileMs(0.5)),
        last_ms: round(histogram.percentileMs(1)),
        server_cpu_ms: round((after.server - before.server) * 1000, 1),
        generator_cpu_ms: round((after.generator - before.generator) * 1000, 1),
      });
      await sleep(o.pause * 1000);
    }
    for (const worker of workers) worker.post({ type: "record", on: false });

    const counts = async () => {
      for (const worker of workers) {
        worker.count = null;
        worker.post({ type: "count" });
      }
      await waitFor(() => workers.every((w) => w.count !== null), 10_000, "delivery counts");
      return workers.reduce((sum, w) => sum + w.count.delivered, 0);
    };
    const pump = () => {
      const floor = minDone();
      while (seq - floor < o.window) publish();
    };
    for (const worker of workers) worker.onProgress = pump;
    pump();
    await sleep(o.warmup * 1000);
    const fromCount = await counts();
    const from = cpuSnapshot(o, pids);
    await sleep(o.measure * 1000);
    const to = cpuSnapshot(o, pids);
    const toCount = await counts();
    for (const worker of workers) worker.onProgress = () => {};
    await arrived("the steady phase's messages to arrive");
    const cpu = cpuRates(from, to);
    const deliveries = Math.round((toCount - fromCount) / cpu.seconds);
    publisher.terminate();
    const median = (key) => single.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(single.length / 2)];
    return {
      mode: "scale",
      subscribers: connected,
      processes: workers.length,
      source_addresses: o.sourceAddresses ?? [],
      broadcast: { runs: single, last_ms: median("last_ms"), p50_ms: median("p50_ms"), server_cpu_ms: median("server_cpu_ms") },
      steady: { window: o.window, deliveries_per_s: deliveries, messages_per_s: round(deliveries / connected, 1), ...cpu },
    };
  } finally {
    await stopGroups(workers).catch(() => {});
  }
}

async function waitForLine(expected) {
  const lines = createInterface({ input: process.stdin });
  try {
    await new Promise((resolve, reject) => {
      lines.on("line", (line) => line.trim() === expected && resolve());
      lines.on("close", () => reject(new Error(`stdin closed before "${expected}"`)));
    });
  } finally {
    lines.close();
  }
}

// -- idle ----------------------------------------------------------------------------------------
async function idle(o) {
  const workers = startGroups(o, o.connections, false);
  try {
    const connected = await groupsReady(workers, o.connectTimeout * 1000);
    emit({ event: "ready", connected, processes: workers.length });
    const lines = createInterface({ input: process.stdin });
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, o.hold * 1000);
      lines.on("line", (line) => {
        if (line.trim() === "stop") {
          clearTimeout(timer);
          resolve();
        }
      });
      lines.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    lines.close();
    const lost = workers.reduce((sum, w) => sum + w.lost, 0);
    return { mode: "idle", connected, lost, processes: workers.length };
  } finally {
    await stopGroups(workers).catch(() => {});
  }
}

// -- connrate ------------------------------------------------------------------------------------
async function connrate(o) {
  const port = Number(new URL(o.url).port);
  const histogram = new Histogram();
  let measuring = false;
  let stopping = false;
  let connected = 0;
  let failed = 0;
  let lastError = null;
  async function lane() {
    while (!stopping) {
      const begun = nowUs();
      try {
        const client = await rawConnect(port);
        if (measuring) {
          connected++;
          histogram.add(nowUs() - begun);
        }
        client.close();
      } catch (error) {
        failed++;
        lastError = String(error.message || error);
      }
    }
  }
  const lanes = Array.from({ length: o.concurrency }, lane);
  await sleep(o.warmup * 1000);
  const from = cpuSnapshot(o, [process.pid]);
  measuring = true;
  await sleep(o.measure * 1000);
  measuring = false;
  const cpu = cpuRates(from, cpuSnapshot(o, [process.pid]));
  stopping = true;
  await Promise.race([Promise.all(lanes), sleep(CONNECT_TIMEOUT_MS + 1000)]);
  if (connected === 0) throw new Error(`no connection completed; last error: ${lastError}`);
  const latency = histogram.summary();
  return {
    mode: "connrate",
    concurrency: o.concurrency,
    connections: connected,
    connections_per_s: Math.round(connected / cpu.seconds),
    failed,
    last_error: lastError,
    connect_p50_ms: latency.p50_ms,
    connect_p99_ms: latency.p99_ms,
    ...cpu,
  };
}

// -- echo ----------------------------------------------------------------------------------------
async function echo(o) {
  const endpoint = endpointOf(o.url);
  const payload = "x".repeat(PAYLOAD_BYTES);
  const histogram = new Histogram();
  let measuring = false;
  let running = true;
  let roundTrips = 0;
  let inFlight = 0;
  const clients = [];
  const { sockets, failed, lastError } = await connectMany(o.clients, o.concurrency, () => {
    const client = { ws: null, sentAt: 0, id: 0 };
    clients.push(client);
    return connectClient(endpoint, {
      onAck: () => {
        inFlight--;
        if (measuring) {
          roundTrips++;
          histogram.add(nowUs() - client.sentAt);
        }
        if (running) send(client);
      },
    }).then((ws) => {
      client.ws = ws;
      return ws;
    });
  });
  function send(client) {
    client.id++;
    client.sentAt = nowUs();
    inFlight++;
    client.ws.send(`42${client.id}["${o.event}","${payload}"]`);
  }
  try {
    if (failed > 0) throw new Error(`${failed} connections failed; last error: ${lastError}`);
    for (const client of clients) send(client);
    await sleep(o.warmup * 1000);
    const from = cpuSnapshot(o, [process.pid]);
    measuring = true;
    await sleep(o.measure * 1000);
    measuring = false;
    const cpu = cpuRates(from, cpuSnapshot(o, [process.pid]));
    running = false;
    await waitFor(() => inFlight === 0, 10_000, "the last acks");
    if (roundTrips === 0) throw new Error("no round trip completed");
    return {
      mode: "echo",
      clients: sockets.length,
      round_trips: roundTrips,
      round_trips_per_s: Math.round(roundTrips / cpu.seconds),
      ...histogram.summary(),
      ...cpu,
    };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

// -- entry ---------------------------------------------------------------------------------------
const DEFAULTS = {
  perProcess: 2500,
  concurrency: 100,
  connectTimeout: 120,
  drainTimeout: 60,
  behindTimeout: 60,
  warmup: 1,
  resettle: 0.3,
  gain: 0.05,
  measure: 3,
  latency: 3,
  load: 0.5,
  windows: [20],
  transport: "websocket",
  hold: 300,
  clients: 100,
  event: "echo",
  clockTicks: 100,
  deadline: 600,
  broadcasts: 5,
  pause: 0.2,
  window: 2,
};
const MODES = { fanout, idle, connrate, echo, scale };

const [mode, optionsJson] = process.argv.slice(2);
if (mode === "worker") {
  const group = new ClientGroup((message) => {
    if (process.connected) process.send(message);
  });
  process.on("message", (message) => {
    group.handle(message);
    if (message.type === "close") setTimeout(() => process.exit(0), 50);
  });
  process.on("disconnect", () => process.exit(0));
} else if (mode in MODES) {
  const options = { ...DEFAULTS, ...JSON.parse(optionsJson || "{}") };
  const watchdog = setTimeout(() => {
    emit({ error: `deadline of ${options.deadline}s passed` });
    process.exit(3);
  }, options.deadline * 1000);
  watchdog.unref();
  MODES[mode](options).then(
    (result) => {
      emit(result);
      process.exit(0);
    },
    (error) => {
      emit({ error: String(error.message || error) });
      process.exit(1);
    },
  );
} else {
  console.error("usage: node loadgen.mjs fanout|idle|connrate|echo|scale 'OPTIONS-JSON'");
  process.exit(2);
}
