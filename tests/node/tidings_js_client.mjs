// The browser client src/tidings/static/tidings.js, loaded in Node as the ES module tidings.mjs (the
// module face every bundler takes), with `ws` as globalThis.WebSocket and
// remote-controlled by the Python tests over stdin/stdout, one JSON object a line.
// Commands in: {"op": "connect", "url", "opts", "listen": [event, ...], "webSocket": "none" for a page
// without window.WebSocket, "reporting" for one that reports each text message tidings.js has handled},
// {"op": "emit", "event", "args", "ack": id|null}, {"op": "send", "message", "channel", "ack"},
// {"op": "subscribe"|"unsubscribe", "channel", "ack"}, {"op": "answer", "event", "reply"},
// {"op": "stream", "channel", "after"}, {"op": "inspect"}, {"op": "close"}, {"op": "exit"}.
// Reports out: {"type": "state"|"connect"|"disconnect"|"connect_error"|"upgrade"|"event"|"ack"|"streamed"|
// "ws-message"|"inspect", ...}; "connect", "upgrade" and "inspect" tell the transport.
// Bytes travel as {"$bin": "<base64>"}; {"$bin", "$view": "Uint16Array"|"DataView"|...} sends a view of
// them. A received ArrayBuffer is reported as {"$bin"}, any other binary type with its "$view" name.
import WebSocket from "ws";
import tidings from "../../src/tidings/static/tidings.mjs";
import { serve } from "./driver.mjs";

let socket = null;
const answers = new Map();

// A WebSocket whose own listener comes before tidings.js's onmessage, and reports on the next tick,
// when tidings.js has handled the message.
class ReportingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", ({ data }) => {
      if (typeof data === "string") setTimeout(() => report({ type: "ws-message", data }));
    });
  }
}
const WEBSOCKETS = { standard: WebSocket, reporting: ReportingWebSocket, none: undefined };

function toWire(value) {
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("base64") };
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $bin: bytes.toString("base64"), $view: value.constructor.name };
  }
  if (Array.isArray(value)) return value.map(toWire);
  if (value instanceof Error) return { error: value.message };
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]));
  }
  return value;
}

function fromWire(value) {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value && typeof value === "object") {
    if (typeof value.$bin === "string") {
      const bytes = Buffer.from(value.$bin, "base64");
      // Padded on both sides, so that a client sending the whole underlying buffer would be caught.
      const padded = new Uint8Array(bytes.length + 16);
      padded.set(bytes, 8);
      if (value.$view === "Uint8Array") return padded.subarray(8, 8 + bytes.length);
      if (value.$view === "DataView") return new DataView(padded.buffer, 8, bytes.length);
      if (value.$view === "Uint16Array") return new Uint16Array(padded.buffer, 8, bytes.length / 2);
      return padded.buffer.slice(8, 8 + bytes.length); // an ArrayBuffer
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromWire(v)]));
  }
  return value;
}

function report(message) {
  process.stdout.write(JSON.stringify(toWire(message)) + "\n");
}

function listen(event) {
  socket.on(event, (...args) => {
    const answer = answers.get(event);
    if (answer && typeof args[args.length - 1] === "function") args.pop()(...fromWire(answer));
    report({ type: "event", event, args: args.filter((arg) => typeof arg !== "function") });
  });
}

const commands = {
  connect({ url, opts, listen: events, webSocket }) {
    globalThis.WebSocket = WEBSOCKETS[webSocket ?? "standard"];
    socket = tidings.connect(url, opts ?? {});
    socket.on("state", (state) => report({ type: "state", state }));
    socket.on("connect", () =>
      report({ type: "connect", id: socket.id, state: socket.state, transport: socket.transport }),
    );
    socket.on("upgrade", (name) => report({ type: "upgrade", name, transport: socket.transport }));
    socket.on("disconnect", (reason) => report({ type: "disconnect", reason, state: socket.state }));
    socket.on("connect_error", (err) =>
      report({ type: "connect_error", message: err.message, data: err.data ?? null, kind: err.type }),
    );
    for (const event of events ?? ["message"]) listen(event);
  },
  emit({ event, args, ack }) {
    const wireArgs = fromWire(args ?? []);
    if (ack === null || ack === undefined) socket.emit(event, ...wireArgs);
    else socket.emit(event, ...wireArgs, (...reply) => report({ type: "ack", id: ack, args: reply }));
  },
  send({ message, channel, ack }) {
    const done = (...reply) => report({ type: "ack", id: ack, args: reply });
    socket.send(fromWire(message), channel ?? undefined, ack ? done : undefined);
  },
  subscribe({ channel, ack }) {
    settle(socket.subscribe(channel), ack);
  },
  unsubscribe({ channel, ack }) {
    settle(socket.unsubscribe(channel), ack);
  },
  answer({ event, reply }) {
    answers.set(event, reply);
  },
  // send(0, channel), send(1, channel) ... one per timer tick, on whatever transport is current, until
  // `after` more have gone since the socket was first seen on a WebSocket.
  stream({ channel, after }) {
    let sent = 0;
    let upgradedAt = null;
    const tick = () => {
      if (upgradedAt === null && socket.transport === "websocket") upgradedAt = sent;
      if (upgradedAt !== null && sent - upgradedAt >= after) {
        return report({ type: "streamed", sent, upgradedAt });
      }
      socket.send(sent++, channel);
      setTimeout(tick, 1);
    };
    tick();
  },
  inspect() {
    // Timers and sockets keeping the process alive: a client at rest after close() has none of its own.
    const resources = process.getActiveResourcesInfo();
    const { state, id, channels, transport } = socket;
    report({ type: "inspect", state, id, channels, transport, resources });
  },
  close() {
    socket.close();
  },
  exit() {
    socket?.close();
    process.exit(0);
  },
};

function settle(promise, ack) {
  promise.then(
    (reply) => report({ type: "ack", id: ack, args: [reply] }),
    (error) => report({ type: "ack", id: ack, error: error.message }),
  );
}

serve(commands, report);
