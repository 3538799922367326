// A Socket.IO client remote-controlled by the Python tests over stdin/stdout, one JSON object a line.
// Commands in: {"op": "connect", "url", "opts"}, {"op": "emit", "event", "args", "ack": id|null},
// {"op": "answer", "event", "reply"}, {"op": "disconnect"}, {"op": "exit"}; {"op": "drop"} closes the
// transport as a lost connection would (no namespace DISCONNECT) and does not reconnect by itself until
// {"op": "reconnect", "url"?}, which reconnects (to another server if given its url).
// Reports out: {"type": "connect"|"connect_error"|"disconnect"|"event"|"ack"|"upgrade"|"reconnect", ...};
// "connect" says whether the socket was recovered (connection state recovery).
// Bytes travel as {"$bin": "<base64>"} in both directions.
import { io } from "socket.io-client";
import { serve } from "./driver.mjs";

let socket = null;
const answers = new Map();

function toWire(value) {
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("base64") };
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  }
  if (Array.isArray(value)) return value.map(toWire);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]));
  }
  return value;
}

function fromWire(value) {
  if (Array.isArray(value)) return value.map(fromWire);
  if (value && typeof value === "object") {
    if (typeof value.$bin === "string") return Buffer.from(value.$bin, "base64");
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromWire(v)]));
  }
  return value;
}

function report(message) {
  process.stdout.write(JSON.stringify(toWire(message)) + "\n");
}

function transportName() {
  return socket?.io?.engine?.transport?.name ?? null;
}

function connect({ url, opts }) {
  socket = io(url, opts ?? {});
  socket.io.on("open", () => {
    report({ type: "open", transport: transportName() });
    socket.io.engine.once("upgrade", (transport) => report({ type: "upgrade", transport: transport.name }));
  });
  socket.on("connect", () =>
    report({ type: "connect", id: socket.id, recovered: socket.recovered ?? false, transport: transportName() }),
  );
  socket.on("connect_error", (err) => report({ type: "connect_error", message: err.message, data: err.data ?? null }));
  socket.on("disconnect", (reason) => report({ type: "disconnect", reason }));
  socket.io.on("reconnect", (attempt) => report({ type: "reconnect", attempt }));
  socket.onAny((event, ...args) => {
    const answer = answers.get(event);
    if (answer && typeof args[args.length - 1] === "function") {
      const ack = args.pop();
      ack(...fromWire(answer));
    }
    report({ type: "event", event, args });
  });
}

const commands = {
  connect,
  emit({ event, args, ack }) {
    const wireArgs = fromWire(args ?? []);
    if (ack === null || ack === undefined) socket.emit(event, ...wireArgs);
    else socket.emit(event, ...wireArgs, (...reply) => report({ type: "ack", id: ack, args: reply }));
  },
  answer({ event, reply }) {
    answers.set(event, reply);
  },
  disconnect() {
    socket.disconnect();
  },
  drop() {
    socket.io.reconnection(false);
    socket.io.engine.close();
  },
  reconnect({ url }) {
    if (url) socket.io.uri = url;
    socket.io.reconnection(true);
    socket.connect();
  },
  exit() {
    socket?.disconnect();
    process.exit(0);
  },
};

serve(commands, report);
