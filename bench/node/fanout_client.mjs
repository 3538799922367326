// Fan-out load generator: N raw Engine.IO WebSocket clients in one process, counting deliveries.
// Usage: node fanout_client.mjs URL CLIENTS MESSAGES
// Connects CLIENTS sockets to namespace "/", asks the server (over the first socket) to broadcast
// MESSAGES events, and prints one JSON line with the deliveries per second once all have arrived.
import WebSocket from "ws";

const [url, clientsArg, messagesArg] = process.argv.slice(2);
const clients = Number(clientsArg);
const messages = Number(messagesArg);
const expected = clients * messages;
const endpoint = url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";

let connected = 0;
let delivered = 0;
let started = 0;
const sockets = [];

function onMessage(ws, data) {
  const text = data.toString();
  if (text === "2") return ws.send("3");
  if (text.startsWith("0{")) return ws.send("40");
  if (text.startsWith("40")) {
    if (++connected === clients) publish();
    return;
  }
  if (text.startsWith("42")) {
    if (++delivered === expected) finish();
  }
}

function publish() {
  started = performance.now();
  sockets[0].send(`42["burst",${messages}]`);
}

function finish() {
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ clients, messages, delivered, seconds, per_second: Math.round(delivered / seconds) }));
  process.exit(0);
}

for (let i = 0; i < clients; i++) {
  const ws = new WebSocket(endpoint, { perMessageDeflate: false });
  ws.on("message", (data) => onMessage(ws, data));
  ws.on("error", (err) => {
    console.error(String(err));
    process.exit(1);
  });
  sockets.push(ws);
}
setTimeout(() => {
  console.error(JSON.stringify({ error: "timeout", connected, delivered, expected }));
  process.exit(1);
}, 120_000);
