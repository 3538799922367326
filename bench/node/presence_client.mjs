// Presence at scale: N raw Engine.IO WebSocket clients join one channel, then all leave at once.
// Usage: node presence_client.mjs URL CLIENTS CHANNEL BUDGET_SECONDS CONCURRENCY presence|plain
// A watcher socket joins CHANNEL first and stays. Then CLIENTS sockets connect and subscribe to it,
// CONCURRENCY at a time (each one: WebSocket open, Socket.IO connect, subscribe acked), for at most
// BUDGET_SECONDS. If all got in, the watcher waits to be told they are all here, then every other
// socket is dropped at once (terminate: the server sees the TCP connection end) and the watcher
// waits to be told they all left (each wait: BUDGET_SECONDS at most). A `plain` channel (no presence)
// ends once all got in. Prints one JSON line.
//
// What the watcher is told: either the `join`/`leave` events (one per member, the shape before
// coalescing) or the `presence` notice, (channel, {"joined", "left", "count"}) or (channel,
// {"count"}): both are read, so the same client measures either server.
import WebSocket from "ws";

const [url, clientsArg, channel, budgetArg, concurrencyArg, mode] = process.argv.slice(2);
const clients = Number(clientsArg);
const budget = Number(budgetArg) * 1000;
const concurrency = Number(concurrencyArg);
const endpoint = url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";

const sockets = [];
let acked = 0;
let started = 0;
let joinedAt = null; // every subscribe acked
let toldAllHereAt = null; // the watcher knows everyone is in
let leavingAt = null;
let toldAllGoneAt = null;
let present = 1; // what the watcher knows: itself at first
let notices = 0; // presence events the watcher got
const frames = { received: 0 };

function now() {
  return performance.now();
}

function result(extra) {
  const seconds = (at) => (at === null ? null : (at - started) / 1000);
  const joinSeconds = seconds(joinedAt ?? now());
  return {
    clients,
    joined: acked,
    join_seconds: joinSeconds,
    joins_per_second: Math.round(acked / joinSeconds),
    told_all_here_seconds: seconds(toldAllHereAt),
    clear_seconds: leavingAt !== null && toldAllGoneAt !== null ? (toldAllGoneAt - leavingAt) / 1000 : null,
    watcher_notices: notices,
    member_frames: frames.received,
    ...extra,
  };
}

function finish(extra = {}) {
  console.log(JSON.stringify(result(extra)));
  process.exit(0);
}

// The watcher's view of the channel, from either shape of notice.
function watch(event, args) {
  if (args[0] !== channel) return;
  if (event === "join") present += 1;
  else if (event === "leave") present -= 1;
  else if (event === "presence") present = args[1].count;
  else return;
  notices += 1;
  if (toldAllHereAt === null && present === clients + 1) {
    toldAllHereAt = now();
    if (joinedAt !== null) leaveAll();
  }
  if (leavingAt !== null && present === 1) {
    toldAllGoneAt = now();
    finish();
  }
}

function open(index, onJoined, onEvent) {
  const ws = new WebSocket(endpoint + `&name=u${index}`, { perMessageDeflate: false });
  ws.on("message", (data) => {
    const text = data.toString();
    if (text === "2") return ws.send("3");
    if (text.startsWith("0{")) return ws.send("40");
    if (text.startsWith("40")) return ws.send(`421${JSON.stringify(["subscribe", channel])}`);
    if (text.startsWith("431")) {
      const [answer] = JSON.parse(text.slice(3));
      if (!answer.ok) {
        console.error(JSON.stringify({ error: "refused", answer }));
        process.exit(1);
      }
      return onJoined();
    }
    if (text.startsWith("42")) {
      frames.received += 1;
      if (onEvent) {
        const [event, ...args] = JSON.parse(text.slice(2));
        onEvent(event, args);
      }
    }
  });
  ws.on("error", (err) => {
    if (leavingAt !== null) return;
    console.error(String(err));
    process.exit(1);
  });
  return ws;
}

let next = 0;
function openMore() {
  while (next < clients && next - acked < concurrency) {
    sockets.push(open(next++, joined));
  }
}

function joined() {
  acked += 1;
  if (acked === clients) {
    joinedAt = now();
    if (mode === "plain") finish();
    if (toldAllHereAt !== null) leaveAll();
    return;
  }
  openMore();
}

function leaveAll() {
  if (leavingAt !== null) return;
  leavingAt = now();
  clearTimeout(timer);
  timer = setTimeout(() => finish({ timed_out: true }), budget);
  for (const ws of sockets) ws.terminate();
}

const watcher = open("watcher", () => {
  started = now();
  openMore();
}, watch);

let timer = setTimeout(() => finish({ timed_out: true }), budget);
void watcher;
