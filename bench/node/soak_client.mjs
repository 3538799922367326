// Clients of the soak (bench/soak.py drives it): raw `ws` sockets speaking Engine.IO v4 / Socket.IO v5,
// each subscribed to one history channel, recording every message's sequence number. When its worker
// goes away a client reconnects (first to the other worker, then alternating) and subscribes again
// with {"since": {offset, epoch}} of the newest position it saw, as tidings.js does after a reconnect.
//
// Usage: node soak_client.mjs 'OPTIONS-JSON' with {ports, clients, channels, perProcess}.
// Prints JSON lines on stdout: {"event":"pids"}, {"event":"ready"} once every client is subscribed,
// then, after a line {"expected": [N per channel]} on stdin, {"event":"result"} with the counts.
import { fork } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const SELF = fileURLToPath(import.meta.url);
const WS_OPTIONS = { perMessageDeflate: false, handshakeTimeout: 20_000 };
const CONNECTING_AT_ONCE = 100;
const DRAIN_TIMEOUT_MS = 30_000;
const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Client {
  constructor(ports, home, channel) {
    this.ports = ports;
    this.attempt = home; // index into ports of the next connection
    this.channel = channel;
    this.next = 0; // the next sequence number expected
    this.lost = 0;
    this.duplicated = 0;
    this.position = null; // the newest {offset, epoch} seen
    this.reconnects = -1;
    this.unrecovered = {};
    this.subscribed = false;
    this.closed = false;
  }

  connect() {
    this.reconnects++;
    const port = this.ports[this.attempt++ % this.ports.length];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, WS_OPTIONS);
    this.ws = ws;
    ws.on("message", (data) => this.receive(data.toString()));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.closed) return;
      setTimeout(() => this.connect(), 200 + Math.random() * 1000); // spread the reconnects
    });
  }

  send(text) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  receive(text) {
    const kind = text[0];
    if (kind === "2") return this.send("3"); // ping
    if (kind === "0") return this.send("40"); // Engine.IO open: connect the namespace
    if (kind !== "4") return;
    const packet = text[1];
    if (packet === "0") {
      const args = this.position ? [this.channel, { since: this.position }] : [this.channel];
      return this.send("421" + JSON.stringify(["subscribe", ...args]));
    }
    if (packet === "3") return this.acked(JSON.parse(text.slice(3))[0]);
    if (packet === "2") {
      const [event, sequence, , position] = JSON.parse(text.slice(2));
      if (event === "message") this.record(sequence, position);
    }
  }

  acked(ack) {
    if (!ack.ok) throw new Error(`subscribe refused: ${JSON.stringify(ack)}`);
    if (ack.recovered === false) this.unrecovered[ack.reason] = (this.unrecovered[ack.reason] || 0) + 1;
    this.keep({ offset: ack.offset, epoch: ack.epoch });
    this.subscribed = true;
  }

  keep(position) {
    const newer =
      !this.position || position.epoch !== this.position.epoch || position.offset > this.position.offset;
    if (newer) this.position = position;
  }

  record(sequence, position) {
    if (sequence === this.next) this.next++;
    else if (sequence > this.next) {
      this.lost += sequence - this.next;
      this.next = sequence + 1;
    } else this.duplicated++; // an earlier number again: a duplicate, or one out of order
    this.keep(position);
  }
}

async function worker(options) {
  const clients = [];
  for (let i = 0; i < options.count; i++) {
    const index = options.first + i;
    const home = Math.floor(index / options.channels) % options.ports.length; // each channel on both workers
    clients.push(new Client(options.ports, home, `soak-${index % options.channels}`));
  }
  for (let i = 0; i < clients.length; i += CONNECTING_AT_ONCE) {
    const batch = clients.slice(i, i + CONNECTING_AT_ONCE);
    batch.forEach((client) => client.connect());
    while (!batch.every((client) => client.subscribed)) await sleep(10);
  }
  process.send({ event: "ready" });
  const expected = await new Promise((resolve) => process.once("message", resolve));
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  const done = (client) => client.next >= expected[client.channel.slice(5)];
  while (!clients.every(done) && Date.now() < deadline) await sleep(50);
  const result = { clients: clients.length, deliveries: 0, lost: 0, duplicated: 0, reconnects: 0, unrecovered: {} };
  for (const client of clients) {
    client.closed = true;
    client.ws.terminate();
    const tail = Math.max(0, expected[client.channel.slice(5)] - client.next); // never arrived
    result.lost += client.lost + tail;
    result.duplicated += client.duplicated;
    result.deliveries += client.next - client.lost + client.duplicated;
    result.reconnects += client.reconnects;
    for (const [reason, n] of Object.entries(client.unrecovered)) {
      result.unrecovered[reason] = (result.unrecovered[reason] || 0) + n;
    }
  }
  process.send({ event: "result", result });
  process.exit(0);
}

async function main(options) {
  const children = [];
  for (let first = 0; first < options.clients; first += options.perProcess) {
    const count = Math.min(options.perProcess, options.clients - first);
    const child = fork(SELF, ["worker"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    child.send({ ...options, first, count });
    children.push(child);
  }
  emit({ event: "pids", pids: children.map((child) => child.pid) });
  const messages = (event) =>
    Promise.all(children.map((child) => new Promise((resolve) => {
      child.on("message", (message) => message.event === event && resolve(message));
      child.on("exit", (code) => resolve({ event, failed: code }));
    })));
  const ready = await messages("ready");
  if (ready.some((message) => message.failed !== undefined)) throw new Error("a client process failed");
  emit({ event: "ready" });
  const input = createInterface({ input: process.stdin });
  input.once("close", () => process.exit(1)); // the script is gone
  const line = await new Promise((resolve) => input.once("line", resolve));
  const results = messages("result");
  children.forEach((child) => child.send(JSON.parse(line).expected));
  const total = { clients: 0, deliveries: 0, lost: 0, duplicated: 0, reconnects: 0, unrecovered: {} };
  for (const { result } of await results) {
    if (!result) throw new Error("a client process failed");
    for (const key of ["clients", "deliveries", "lost", "duplicated", "reconnects"]) total[key] += result[key];
    for (const [reason, n] of Object.entries(result.unrecovered)) {
      total.unrecovered[reason] = (total.unrecovered[reason] || 0) + n;
    }
  }
  emit({ event: "result", ...total });
  process.exit(0);
}

if (process.argv[2] === "worker") {
  process.once("disconnect", () => process.exit(1)); // the parent is gone
  process.once("message", worker);
}
else main(JSON.parse(process.argv[2]));
