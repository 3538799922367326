// Clients of the reconnect storm (bench/reconnect_storm.py drives it): real client libraries, each
// client subscribed to one channel, reconnecting on its own when the server goes away.
//
// Usage: node storm_client.mjs 'OPTIONS-JSON' with {url, library, clients, channels, perProcess,
// connectingAtOnce}. `library`:
//   "tidings.js"        src/tidings/static/tidings.mjs with `ws` as globalThis.WebSocket, its own backoff
//                       (reconnectDelay 500 ms doubling to 5 s, equal jitter); subscribe(channel) once:
//                       tidings.js subscribes again after every reconnect
//   "socket.io-client"  the official client (a Manager per client: forceNew), its own backoff
//                       (reconnectionDelay 1 s doubling to 5 s, randomization 0.5, unlimited attempts);
//                       emits "subscribe" with an ack on every connect, as its users do
// Both on the WebSocket transport only, so that what differs is the backoff.
// Prints JSON lines on stdout: {"event":"pids"}, {"event":"ready"} once every client is connected and
// subscribed, {"event":"progress"} every second, and {"event":"recovered"} once every client has lost its
// connection and is connected and subscribed again, with the time (CLOCK_MONOTONIC, seconds) each
// client's new subscription was acknowledged, the give-ups (must be 0) and the failed attempts.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const SELF = fileURLToPath(import.meta.url);
const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const nowS = () => Number(process.hrtime.bigint()) / 1e9; // CLOCK_MONOTONIC, as Python's time.monotonic()

// One client of either library: `subscribed(at)` each time its subscription is acknowledged (first and
// after every reconnect), `lost()` when the connection goes, `gaveUp(why)` when it stops trying.
async function tidingsClient(url, channel, { subscribed, lost, gaveUp, failed }) {
  const { default: tidings } = await import("../../src/tidings/static/tidings.mjs");
  const socket = tidings.connect(url, { transports: ["websocket"] });
  const subscribe = () =>
    socket.subscribe(channel).then(
      (ack) => (ack && ack.ok ? subscribed(nowS()) : gaveUp(`subscribe refused: ${JSON.stringify(ack)}`)),
      (error) => gaveUp(String(error.message || error)),
    );
  // While disconnected, subscribe() only waits for the ack of the subscription tidings.js makes again
  // when it reconnects: no second subscribe goes out.
  socket.on("disconnect", () => {
    lost();
    subscribe();
  });
  socket.on("connect_error", (error) => (error.type === "server" ? gaveUp("refused") : failed()));
  socket.on("state", (state) => state === "disconnected" && gaveUp("disconnected for good"));
  subscribe();
}

async function socketIoClient(url, channel, { subscribed, lost, gaveUp, failed }) {
  const { io } = await import("socket.io-client");
  const socket = io(url, { transports: ["websocket"], forceNew: true, reconnectionAttempts: Infinity });
  socket.on("connect", () => {
    socket.emit("subscribe", channel, (ack) =>
      ack && ack.ok ? subscribed(nowS()) : gaveUp(`subscribe refused: ${JSON.stringify(ack)}`),
    );
  });
  socket.on("disconnect", (reason) => {
    lost();
    if (!socket.active) gaveUp(`disconnected for good: ${reason}`); // e.g. "io server disconnect"
  });
  socket.io.on("reconnect_error", failed);
  socket.io.on("reconnect_failed", () => gaveUp("reconnect_failed"));
}

const LIBRARIES = { "tidings.js": tidingsClient, "socket.io-client": socketIoClient };

// -- a group of clients in one process -------------------------------------------------------------
async function group({ url, library, offset, count, channels, connectingAtOnce }, report) {
  globalThis.WebSocket = WebSocket;
  const open = LIBRARIES[library];
  const clients = [];
  let initial = 0;
  let giveups = 0;
  let failures = 0;
  let lastGiveUp = null;
  let back = 0; // clients subscribed again after losing their connection
  const times = [];
  // One client, resolved once first subscribed (or given up).
  const start = (index) =>
    new Promise((resolve) => {
      const client = { down: false, back: false, subscribed: false };
      clients.push(client);
      open(url, `storm-${(offset + index) % channels}`, {
        subscribed(at) {
          if (!client.subscribed) {
            client.subscribed = true;
            initial++;
            resolve();
          } else if (client.down && !client.back) {
            client.back = true;
            back++;
            times.push(at);
          }
        },
        lost() {
          client.down = true;
        },
        gaveUp(why) {
          giveups++;
          lastGiveUp = why;
          resolve();
        },
        failed() {
          failures++;
        },
      });
    });
  // At most `connectingAtOnce` first connections in flight: the listen backlog is finite.
  let next = 0;
  const lane = async () => {
    while (next < count) await start(next++);
  };
  await Promise.all(Array.from({ length: Math.min(connectingAtOnce, count) }, lane));
  report({ type: "ready", subscribed: initial, giveups, lastGiveUp });
  const progress = () => ({ back, down: clients.filter((c) => c.down).length, giveups, failures, lastGiveUp });
  const timer = setInterval(() => {
    report({ type: "progress", ...progress() });
    if (back === count) {
      clearInterval(timer);
      report({ type: "recovered", times, ...progress() });
    }
  }, 250);
}

// -- the coordinator: children of `perProcess` clients each ---------------------------------------
function coordinate(options) {
  const processes = Math.max(1, Math.ceil(options.clients / options.perProcess));
  const children = [];
  let offset = 0;
  for (let i = 0; i < processes; i++) {
    const count = Math.floor(options.clients / processes) + (i < options.clients % processes ? 1 : 0);
    const child = fork(SELF, ["worker"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const state = { ready: null, progress: null, recovered: null };
    child.on("message", (message) => {
      state[message.type] = message;
      if (message.type === "ready" && children.every((c) => c.state.ready)) {
        const sum = (key) => children.reduce((total, c) => total + c.state.ready[key], 0);
        emit({ event: "ready", subscribed: sum("subscribed"), giveups: sum("giveups") });
      }
      if (message.type === "recovered" && children.every((c) => c.state.recovered)) {
        const all = children.map((c) => c.state.recovered);
        emit({
          event: "recovered",
          times: all.flatMap((r) => r.times),
          giveups: all.reduce((total, r) => total + r.giveups, 0),
          failures: all.reduce((total, r) => total + r.failures, 0),
        });
      }
    });
    child.send({ ...options, offset, count });
    offset += count;
    children.push({ child, state });
  }
  emit({ event: "pids", pids: children.map((c) => c.child.pid) });
  setInterval(() => {
    const reports = children.map((c) => c.state.progress).filter(Boolean);
    const sum = (key) => reports.reduce((total, r) => total + r[key], 0);
    const lastGiveUp = reports.find((r) => r.lastGiveUp)?.lastGiveUp ?? null;
    emit({ event: "progress", back: sum("back"), down: sum("down"), giveups: sum("giveups"), failures: sum("failures"), lastGiveUp });
  }, 1000);
  process.stdin.on("end", () => process.exit(0)); // the driver went away
  process.stdin.resume();
}

const [mode, optionsJson] = process.argv.slice(2);
if (mode === "worker") {
  process.once("message", (options) => group(options, (message) => process.connected && process.send(message)));
  process.on("disconnect", () => process.exit(0));
} else {
  coordinate({ perProcess: 2500, connectingAtOnce: 100, channels: 100, ...JSON.parse(mode || "{}") });
}
